"""Assemble the report page from a results folder (see :mod:`avbench.report`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbench.engine.external import EXTERNAL_PLUGIN
from avbench.report import page as P
from avbench.report.select import FoldRuns, Selection, Shown, select
from avbench.report.stats import METRIC_LABELS, METRIC_ORDER, comparisons, run_metrics

ALPHA = 0.05


@dataclass
class Figure:
    """A figure a caller adds to the report (Fig. 3): where it belongs and its PNG."""

    title: str
    png: bytes
    caption: str
    anchor: str = ""


@dataclass
class Extra:
    """A section a caller adds (Fig. 3 per run): figures and notes."""

    title: str
    anchor: str
    intro: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_page(runs: Any, protocols: Mapping[str, Any], *,
               extras: Callable[[Selection], list[Extra]] | None = None) -> str:
    """The report's HTML for runs collected by :func:`avbench.tables.collect`."""
    import avbench
    from avbench.tables import build_table, table_specs

    sel = select(runs, protocols)
    specs = table_specs(protocols)
    root_name = runs.root.name if runs.root is not None else "results"
    n_shown = sum(len(f.runs) for f in sel.folds)
    extra_sections = extras(sel) if extras is not None else []

    body = [f"<h1>avbench report: <code>{P.esc(root_name)}</code></h1>",
            f"<p>{n_shown} run(s) shown over {len(sel.folds)} fold(s); "
            f"{len(sel.all_runs)} usable run(s) found, {len(sel.left_out)} run folder(s) left "
            f"out (<a href=\"#left-out\">listed below</a>). Every number is recomputed from "
            f"each run's <code>scores.csv</code> after the run folder is checked against its "
            f"<code>run.json</code> and the protocols registered now, as "
            f"<code>avbench table</code> does. Written by avbench {P.esc(avbench.__version__)}."
            f"</p>"]
    nav = ["<li><a href=\"#tables\">Tables</a><ul>"
           + "".join(f"<li><a href=\"#table-{n}\">{P.esc(s.title)}</a></li>"
                     for n, s in specs.items()) + "</ul></li>"]
    if sel.folds:
        nav.append("<li><a href=\"#folds\">Runs by fold: ROC curves, score histograms, "
                   "metrics, significance</a><ul>"
                   + "".join(f"<li><a href=\"#{f.anchor}\">{P.esc(f.title)}</a></li>"
                             for f in sel.folds) + "</ul></li>")
    nav += [f"<li><a href=\"#{P.esc(x.anchor)}\">{P.esc(x.title)}</a></li>"
            for x in extra_sections]
    nav.append("<li><a href=\"#provenance\">Runs: identity and provenance</a></li>")
    nav.append("<li><a href=\"#left-out\">Runs left out</a></li>")
    body.append("<nav><h2>Contents</h2><ul>" + "".join(nav) + "</ul></nav>")

    body.append("<section id=\"tables\"><h2>Tables</h2><p>As <code>avbench table</code> "
                "builds them (latest run per cell, the paper's reported rows beside the "
                "computed ones).</p>")
    for n in specs:
        t = build_table(n, runs, protocols=protocols)
        body.append(P.results_table(t, f"table-{n}"))
    body.append("</section>")

    if sel.folds:
        body.append("<section id=\"folds\"><h2>Runs by fold</h2><p>One run per detector and "
                    "fold: the most recent complete run of the newest protocol version (the "
                    "run a table cell shows). Metrics are percentages with 95% bootstrap "
                    "intervals over videos (1000 resamples, seed 0); _v and _a are the "
                    "visual and audio streams' metrics where a detector scores them.</p>")
        for fr in sel.folds:
            body.append(_fold_section(fr))
        body.append("</section>")

    for x in extra_sections:
        body.append(_extra_section(x))
    body.append(_provenance(sel))
    body.append(_left_out(sel))
    return P.page(f"avbench report: {root_name}", body)


def _fold_section(fr: FoldRuns) -> str:
    from avbench.report.plots import categories, histogram_figure, roc_figure

    out = [f"<h3 id=\"{P.esc(fr.anchor)}\">{P.esc(fr.title)} "
           f"<span class=\"muted\">(protocol version {P.esc(fr.version)})</span></h3>"]
    curves = [(s.detector, s.scores["label"], s.scores["score"]) for s in fr.runs]
    roc = roc_figure(fr.title, curves)
    if roc is not None:
        out.append(P.image(roc, f"ROC curves on {fr.title}",
                           f"ROC curves on {fr.title}, one per detector (video-level scores)."))
    else:
        out.append("<p class=\"muted\">No ROC curve: the test videos are of one class.</p>")
    panels = [(s.detector, s.scores["score"], categories(s.scores)) for s in fr.runs]
    hist = histogram_figure(f"Scores per category: {fr.title}", panels)
    if hist is not None:
        out.append(P.image(hist, f"score histograms per category on {fr.title}",
                           "Video-level scores per category, one panel per detector; each "
                           "category's bars sum to 1."))
    for key, what in (("score_v", "visual"), ("score_a", "audio")):
        branch = [(s.detector, s.scores[key].dropna(),
                   categories(s.scores)[s.scores[key].notna()])
                  for s in fr.runs if key in s.scores and s.scores[key].notna().any()]
        fig = histogram_figure(f"{what.capitalize()} scores ({key}) per category: {fr.title}",
                               branch, xlabel=f"{key} P({what} stream fake)")
        if fig is not None:
            out.append(P.image(fig, f"{key} histograms per category on {fr.title}",
                               f"The {what} stream's scores ({key}) per category, for the "
                               f"detectors that give them."))
    out.append(_metrics_table(fr.runs))
    out.append(_significance(fr))
    return "\n".join(out)


def _metrics_table(runs: list[Shown]) -> str:
    rows = []
    used: set[str] = set()
    per_run = []
    for s in runs:
        m = run_metrics(s.scores)
        per_run.append(m)
        used.update(m)
    cols = [k for k in METRIC_ORDER if k in used]
    for s, m in zip(runs, per_run, strict=True):
        ext = " (external)" if s.run.detector_info.get("plugin") == EXTERNAL_PLUGIN else ""
        row = [P.esc(s.detector + ext), str(len(s.scores))]
        for k in cols:
            v = m.get(k)
            if v is None:
                row.append("<span class=\"muted\">–</span>")
            elif v.value is None:
                row.append(f"<span class=\"muted\">n/a: {P.esc(v.undefined or '')}</span>")
            else:
                ci = (f" [{P.fmt_pct(v.lo)}, {P.fmt_pct(v.hi)}]" if v.lo is not None
                      else "")
                row.append(P.esc(P.fmt_pct(v.value) + ci))
        rows.append(row)
    header = ["detector", "videos", *[METRIC_LABELS[k] for k in cols]]
    return ("<h4>Metrics with 95% bootstrap intervals</h4>"
            + P.simple_table(header, rows, numeric=[False] + [True] * (len(header) - 1),
                             raw=True)
            + P.notes(["–: the detector gives no score of that stream."]
                      if any(m.get(k) is None for m in per_run for k in cols) else []))


def _significance(fr: FoldRuns) -> str:
    if len(fr.runs) < 2:
        return ("<p class=\"muted\">Significance: one detector on this fold, nothing to "
                "compare.</p>")
    rows, reasons = [], []
    for c in comparisons(fr.runs):
        if c.reason:
            reasons.append(f"{c.a} vs {c.b}: not compared, {c.reason}.")
            continue
        sig_auc = c.auc_p is not None and c.auc_p < ALPHA
        sig_ap = c.ap_p is not None and c.ap_p < ALPHA

        def mark(text: str, sig: bool) -> str:
            return f"<span class=\"significant\">{P.esc(text)}</span>" if sig else P.esc(text)

        rows.append([P.esc(f"{c.a} − {c.b}"), str(c.n), P.fmt_pct(c.auc_a, 2),
                     P.fmt_pct(c.auc_b, 2), mark(_signed(c.auc_diff), sig_auc),
                     P.fmt_pct(c.auc_se, 2), "" if c.auc_z is None else f"{c.auc_z:.2f}",
                     mark(P.fmt_p(c.auc_p), sig_auc),
                     mark(f"{_signed(c.ap_diff)} [{_signed(c.ap_lo)}, {_signed(c.ap_hi)}]",
                          sig_ap),
                     mark(P.fmt_p(c.ap_p), sig_ap)])
    out = ["<h4>Paired significance (same test videos)</h4>"]
    if rows:
        header = ["pair (a − b)", "videos", "AUC a", "AUC b", "ΔAUC", "SE", "z",
                  "p (DeLong)", "ΔAP [95% CI]", "p (bootstrap)"]
        out.append(P.simple_table(header, rows, numeric=[False] + [True] * 9, raw=True))
        out.append(P.notes([
            "ΔAUC: DeLong's test for two correlated ROC AUCs on the same videos (two-sided). "
            "ΔAP: paired bootstrap over videos, fakes and reals resampled separately "
            "(1000 resamples, seed 0), with its 95% percentile interval and two-sided p. "
            f"Differences in percentage points; bold where p < {ALPHA} (not adjusted for "
            f"multiple comparisons).",
            "Runs are paired by (dataset, id) when their recorded test-split hashes are "
            "equal."]))
    out.append(P.notes(reasons))
    return "\n".join(out)


def _signed(v: float | None) -> str:
    return "" if v is None else f"{100 * v:+.2f}"


def _extra_section(x: Extra) -> str:
    out = [f"<section id=\"{P.esc(x.anchor)}\"><h2>{P.esc(x.title)}</h2><p>{P.esc(x.intro)}</p>"]
    for f in x.figures:
        out.append(f"<h3 id=\"{P.esc(f.anchor)}\">{P.esc(f.title)}</h3>" if f.anchor
                   else f"<h3>{P.esc(f.title)}</h3>")
        out.append(P.image(f.png, f.title, f.caption))
    out.append(P.notes(x.notes))
    out.append("</section>")
    return "\n".join(out)


def _identity_rows(rec: Any, folder: str, role: str) -> list[tuple[str, str]]:
    ident = rec.identity
    det = rec.detector_info
    rows = [("run folder", folder), ("shown", role), ("status", rec.status),
            ("detector", ident.detector),
            ("plugin", f"{ident.plugin} {ident.plugin_version}".strip()),
            ("config hash", ident.config_hash),
            ("protocol", f"{ident.protocol} version {ident.protocol_version}"),
            ("protocol file hash", ident.protocol_file_hash), ("fold", ident.fold),
            ("seed", str(ident.seed))]
    for name, fp in ident.datasets:
        rows.append((f"dataset {name} fingerprint", fp))
    test = rec.splits.get("test") if isinstance(rec.splits, dict) else None
    if isinstance(test, dict):
        rows.append(("test split", f"{test.get('dataset', '')}: {test.get('n_used', test.get('n', ''))} "
                     f"video(s), hash {test.get('hash', '')}"))
    if rec.extra.get("evaluation_only"):  # avbench eval: scores of another run's state
        src = rec.extra.get("source_run")
        src = src if isinstance(src, dict) else {}
        state = src.get("state") if isinstance(src.get("state"), dict) else {}
        rows.append(("evaluation only", f"the saved state of run {src.get('folder', '?')} "
                     f"({state.get('file', '?')}, sha256 {state.get('sha256', '?')}), not "
                     f"trained on this protocol"))
    ext = det.get("external")
    if isinstance(ext, dict):
        rows.append(("external scores", f"sha256 {ext.get('sha256', '')}"))
    versions = ", ".join(f"{k} {v.get('version', '') if isinstance(v, dict) else v}"
                         for k, v in sorted(rec.versions.items()) if k != "platform")
    rows += [("versions", versions), ("platform", str(rec.versions.get("platform", ""))),
             ("git commit", rec.git_commit or "unknown"), ("device", rec.device),
             ("created", rec.created), ("finished", rec.finished or "")]
    cp = rec.checkpoint
    if isinstance(cp, dict):
        rows.append(("checkpoint", f"{cp.get('checkpoint', '')}"
                     + (f" (epoch {cp['epoch']})" if cp.get("epoch") is not None else "")
                     + (f": {cp['selection']}" if cp.get("selection") else "")))
    skipped = rec.skipped_media
    if isinstance(skipped, dict) and skipped.get("count"):
        rows.append(("skipped media", f"{skipped['count']} video(s): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(
                         (skipped.get('by_kind') or {}).items()))))
    if rec.command:
        rows.append(("command", " ".join(map(str, rec.command))))
    return rows


def _provenance(sel: Selection) -> str:
    out = ["<section id=\"provenance\"><h2>Runs: identity and provenance</h2>",
           "<p>Each usable run's identity (what makes two runs the same experiment: detector, "
           "config hash, protocol name, version and file hash, fold, seed, dataset "
           "fingerprints) and what produced it, from its <code>run.json</code>.</p>"]
    summary = [(folder, rec.detector, rec.config_hash, f"{rec.protocol} {rec.protocol_version}",
                rec.fold, rec.seed, role) for rec, folder, role in sel.all_runs]
    out.append(P.simple_table(["run folder", "detector", "config hash", "protocol", "fold",
                               "seed", "shown"], summary))
    for rec, folder, role in sel.all_runs:
        rows = _identity_rows(rec, folder, role)
        out.append(f"<h3>{P.esc(folder)}</h3>")
        out.append(P.simple_table(["field", "value"],
                                  [(k, f"<code>{P.esc(v)}</code>") for k, v in rows], raw=True))
        config = rec.detector_info.get("config")
        if isinstance(config, dict):
            out.append(P.details("resolved config", config))
    out.append("</section>")
    return "\n".join(out)


def _left_out(sel: Selection) -> str:
    if not sel.left_out:
        return ("<section id=\"left-out\"><h2>Runs left out</h2><p>None: every run folder "
                "passed its checks.</p></section>")
    return ("<section id=\"left-out\"><h2>Runs left out</h2><p>Run folders that are not "
            "complete, cannot be read, or fail the checks of <code>avbench table</code>, "
            "each with the reason:</p>" + P.notes(sel.left_out) + "</section>")


def write_report(results: str | Path, out: str | Path, *,
                 protocols: Mapping[str, Any] | None = None,
                 extras: Callable[[Selection], list[Extra]] | None = None) -> Path:
    """Write ``out/index.html`` from the runs below ``results``; returns the file."""
    from avbench.io import atomic_write_text
    from avbench.tables import collect
    from avbench.tables.build import registered_protocols

    protocols = registered_protocols() if protocols is None else protocols
    runs = collect(results, protocols=protocols)
    html = build_page(runs, protocols, extras=extras)
    f = Path(out) / "index.html"
    atomic_write_text(f, html)
    f.chmod(0o644)  # a page to share: readable by others (atomic writes create it 0600)
    return f
