"""Build the paper's tables from a results folder.

Rules:

- metrics are always recomputed from ``scores.csv``; ``metrics.json`` is never read;
- runs whose ``run.json`` status is not ``complete`` are left out unless
  ``include_incomplete`` (their cells are then marked with a dagger and the row's source says
  ``computed (incomplete)``); a complete run is always preferred over an incomplete one;
- a row is one (detector, config hash): runs of a detector under another config than its
  default are a row of their own, labelled with the config keys that differ from the
  default (``sync-corr [max_lag=0]``, :func:`row_labels`), and AVG columns average that
  row's own cells only; rows of the default config keep the detector's name;
- a cell that scored fewer test videos than its split (some unusable, ``skipped_media``)
  gets a note saying how many and why;
- several runs of one (detector, config, protocol, fold): ``aggregate="latest"`` shows the most
  recent (by ``finished``, then ``created``, then run-id), ``aggregate="mean"`` the mean and
  standard deviation over them; a footnote says how many there were;
- protocol versions are never mixed: per protocol the newest version found is used and the
  runs of older versions are named in a footnote (``mixed_versions="error"`` raises instead);
- every run is checked against its own record and the protocols registered now
  (:mod:`avbench.tables.verify`) before it is used; a run that fails, or whose ``run.json``
  or ``scores.csv`` cannot be read, is left out and named, with the reason, in one footnote
  line (``Runs.problems``).
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avbench.engine.external import EXTERNAL_PLUGIN
from avbench.errors import ConfigError, ResultsError
from avbench.results import ALL_FOLDS, RunIdentity, RunRecord, run_in_progress
from avbench.tables import published as pub
from avbench.tables.model import (
    COMPUTED,
    COMPUTED_INCOMPLETE,
    EXTERNAL,
    SOURCE_COLUMN,
    Cell,
    Column,
    Row,
    Table,
)
from avbench.tables.specs import TableSpec, all_table_specs

AVG_FV = "AVG-FV"
AGGREGATES = ("latest", "mean")
N_BOOT = 1000
BOOT_SEED = 0
METRIC_NAMES = {"acc": "Acc", "auc": "AUC", "ap": "AP", "acc_v": "Acc_v", "auc_v": "AUC_v",
                "acc_a": "Acc_a", "auc_a": "AUC_a"}
_BEST = " The best value of each column is in bold, the second best underlined."


def table_specs(protocols: Mapping[str, Any] | None = None) -> dict[int, TableSpec]:
    """The tables registered now (the core's and plugins'), by number."""
    from avbench.plugins import get_plugins

    return all_table_specs(get_plugins(), protocols or registered_protocols())


def table_for_protocol(name: str, specs: Mapping[int, TableSpec] | None = None) -> int:
    """The table whose only protocol is ``name``."""
    specs = table_specs() if specs is None else specs
    for n, spec in specs.items():
        if spec.protocols == [name]:
            return n
    known = ", ".join(f"{s.protocols[0]} ({n})" for n, s in specs.items()
                      if len(s.protocols) == 1)
    raise ConfigError(f"no table for protocol {name!r}; tables exist for {known}")


# --------------------------------------------------------------------------------------------
# Collecting runs


class Runs(list):
    """The run records found under a results folder (a list of :class:`RunRecord`).

    ``problems`` has one line per run folder left out as unreadable or failing its checks
    (naming the folder and the reason); ``left_out`` holds the
    incomplete runs that were left out (``include_incomplete=False``); ``root`` is the folder.
    """

    def __init__(self, runs: Iterable[RunRecord] = (), *, root: Path | None = None,
                 problems: list[str] | None = None, left_out: list[RunRecord] | None = None):
        super().__init__(runs)
        self.root = root
        self.problems = list(problems or [])
        self.left_out = list(left_out or [])


def _rel(text: str, root: Path) -> str:
    """Strip the results folder from paths in a message (footnotes name runs relative to it)."""
    for prefix in (str(root) + os.sep, root.as_posix() + "/"):
        text = text.replace(prefix, "")
    return text


def registered_protocols() -> dict[str, Any]:
    """The protocols registered now (built-in and plugins'), by name."""
    from avbench.plugins import get_plugins
    from avbench.protocols import all_protocols

    return all_protocols(get_plugins())


def collect(results_root: str | Path, *, include_incomplete: bool = False,
            protocols: Mapping[str, Any] | None = None) -> Runs:
    """Every usable run below ``results_root``: complete ones, and incomplete ones too when
    ``include_incomplete``. Each is checked first (:func:`avbench.tables.verify.verify_run`)
    against ``protocols``, the registered protocols by name (default: those registered now);
    a run that fails or cannot be read is listed in ``.problems`` as one line naming its
    folder and the reason (never raised).

    Raises :class:`ResultsError` when the folder does not exist.
    """
    from avbench.tables.verify import verify_folder

    root = Path(results_root)
    if not root.is_dir():
        raise ResultsError(f"results folder not found: {root}")
    if protocols is None:
        protocols = registered_protocols()
    runs, problems, left_out = [], [], []
    for f in sorted(root.rglob("run.json")):
        run_dir = f.parent
        item = None
        try:
            info, reason = verify_folder(run_dir, protocols,
                                         include_incomplete=include_incomplete)
            if info is not None:  # the dict verify_folder read: run.json is read once
                item = RunRecord.from_dict(info, run_dir)
        except ResultsError as e:  # the record's own schema checks
            reason = str(e).replace(f"{run_dir / 'run.json'}: ", "run.json: ")
        except Exception as e:  # one bad run never aborts a table
            reason = f"cannot be checked ({type(e).__name__}: {e})"
        if item is None:
            where = run_dir.relative_to(root).as_posix() if run_dir != root else root.name
            problems.append(" ".join(_rel(f"left out {where}: {reason}", root).split()))
            continue
        if item.complete or include_incomplete:
            runs.append(item)
        else:
            left_out.append(item)
    return Runs(runs, root=root, problems=problems, left_out=left_out)


# --------------------------------------------------------------------------------------------
# Selecting and evaluating runs


def _version_key(v: str) -> tuple:
    """Orders versions numerically per part; spellings of one version ("1.0", "1-0") are
    ordered by their text, not by the set they were collected in (that order depends on
    PYTHONHASHSEED)."""
    return (tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                  for p in re.split(r"[.\-_+]", v) if p), v)


def _recency(r: RunRecord) -> tuple:
    return (r.complete, r.when, r.path.name if r.path is not None else r.run_id)


def _canonical_fold(allowed: list[str] | None, fold: str) -> str | None:
    if allowed is None:
        return fold
    for f in allowed:
        if f.lower() == fold.lower():
            return f
    return None


def _where(protocol: str, fold: str) -> str:
    return protocol if fold == ALL_FOLDS else f"{protocol} {fold}"


@dataclass
class _Evaluated:
    run: RunRecord
    metrics: dict[str, Any]


RowKey = tuple[str, str]  # (detector, config hash)
CellKey = tuple[str, str, str, str]  # (detector, config hash, protocol, fold)


def _value_text(v: Any) -> str:
    import json

    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def row_labels(changes: Mapping[RowKey, Mapping[str, Any] | None]) -> dict[RowKey, str]:
    """The label of each row (detector, config hash), from the ``config_changes`` its runs
    record (what ``--set`` changed from the detector's default, ``None`` where a run records
    none): the detector's name for its default config, else the name and the changes,
    ``sync-corr [max_lag=0]``. Rows whose runs record no changes are told apart by their
    config hash's first 8 hex digits where a detector has several; two rows that would read
    alike (the same changes of two plugin versions' defaults) get the hash too."""
    by_det: dict[str, int] = defaultdict(int)
    for det, _ in changes:
        by_det[det] += 1
    labels: dict[RowKey, str] = {}
    for (det, cfg), changed in changes.items():
        if changed is None:
            labels[(det, cfg)] = det if by_det[det] == 1 else f"{det} [{cfg[:8] or '?'}]"
        elif not changed:
            labels[(det, cfg)] = det
        else:
            text = ", ".join(f"{k}={_value_text(v)}" for k, v in sorted(changed.items()))
            labels[(det, cfg)] = f"{det} [{text}]"
    seen: dict[str, int] = defaultdict(int)
    for label in labels.values():
        seen[label] += 1
    return {row: f"{label} {row[1][:8]}" if seen[label] > 1 and row[1] else label
            for row, label in labels.items()}


class _Pool:
    """The runs of some protocols, one protocol version each, grouped by
    (detector, protocol, fold) and evaluated on demand."""

    def __init__(self, runs: Runs, protocols: Iterable[str], *, aggregate: str, ci: bool,
                 mixed_versions: str, notes: list[str],
                 folds: Mapping[str, list[str]] | None = None):
        self.aggregate = aggregate
        self.ci = ci
        self.notes = notes
        self.root = runs.root
        self.groups: dict[CellKey, list[RunRecord]] = defaultdict(list)
        self._cache: dict[CellKey, list[_Evaluated]] = {}
        # the identity (up to the seed) each evaluated cell shows
        self.shown: dict[CellKey, RunIdentity] = {}
        for proto in protocols:
            mine = [r for r in runs if r.protocol == proto]
            if not mine:
                continue
            versions = sorted({r.protocol_version for r in mine}, key=_version_key)
            newest = versions[-1]
            if len(versions) > 1:
                older = [r for r in mine if r.protocol_version != newest]
                listing = ", ".join(repr(v) for v in versions[:-1])
                if mixed_versions == "error":
                    raise ResultsError(
                        f"results of protocol {proto!r} mix versions {listing} and {newest!r}; "
                        f"move the old runs away or build with mixed_versions='newest'")
                notes.append(f"{proto}: {len(older)} run(s) of older protocol version(s) "
                             f"{listing} left out; computed rows use version {newest!r} only.")
                mine = [r for r in mine if r.protocol_version == newest]
            notes.append(f"Computed rows of {proto}: protocol version {newest!r}.")
            unknown: dict[str, int] = defaultdict(int)
            for r in mine:
                fold = _canonical_fold((folds or {}).get(proto), r.fold)
                if fold is None:
                    unknown[r.fold] += 1
                    continue
                self.groups[(r.detector, r.config_hash, proto, fold)].append(r)
            for fold, n in sorted(unknown.items()):
                notes.append(f"{proto}: {n} run(s) of fold {fold!r} left out (no such column).")
        for group in self.groups.values():
            group.sort(key=_recency, reverse=True)
        changes: dict[RowKey, dict[str, Any] | None] = {}
        for (det, cfg, _, _), group in sorted(self.groups.items()):
            changed = max(group, key=_recency).detector_info.get("config_changes")
            changes.setdefault((det, cfg), changed if isinstance(changed, dict) else None)
        self.labels = row_labels(changes)

    def rows(self, protocols: Iterable[str] | None = None) -> list[RowKey]:
        """The (detector, config hash) of each row with runs of ``protocols``, ordered by
        detector, then label."""
        ps = set(protocols) if protocols is not None else None
        keys = {(d, c) for d, c, p, _ in self.groups if ps is None or p in ps}
        return sorted(keys, key=lambda k: (k[0], self.labels[k], k[1]))

    def label(self, row: RowKey) -> str:
        return self.labels.get(row, row[0])

    def detector_info(self, row: RowKey) -> dict[str, Any]:
        """``run.json``'s ``detector`` object merged over the row's runs, oldest first, so
        the most recent run wins per field, while a run that lacks a field does not erase
        it."""
        runs = [r for (d, c, _, _), rs in self.groups.items() if (d, c) == row for r in rs]
        runs.sort(key=_recency)
        merged: dict[str, Any] = {}
        for r in runs:
            info = r.detector_info
            if isinstance(info, dict):
                merged.update({k: v for k, v in info.items() if v not in (None, "")})
        return merged

    def evaluate(self, key: CellKey) -> list[_Evaluated]:
        if key in self._cache:
            return self._cache[key]
        from avbench.metrics import metrics_from_frame

        candidates = self.groups.get(key, [])
        complete = [r for r in candidates if r.complete]
        pool = complete or candidates
        used: list[_Evaluated] = []
        # A cell shows one identity: that of the newest usable run. "mean" averages the runs
        # that differ from it in the seed alone, the newest run of each seed.
        shown: RunIdentity | None = None
        other_identity, repeats = 0, 0
        seeds: set[int] = set()
        for r in pool:
            ident = r.identity.without_seed()
            if shown is not None and ident != shown:
                other_identity += 1
                continue
            if shown is not None and (self.aggregate == "latest" or r.seed in seeds):
                repeats += 1
                continue
            try:
                df = r.scores()
            except ResultsError as e:
                msg = _rel(str(e), self.root) if self.root else str(e)
                self.notes.append(f"skipped run with unreadable scores: {msg}")
                continue
            metrics = metrics_from_frame(df, n_boot=N_BOOT if self.ci else 0, seed=BOOT_SEED)
            used.append(_Evaluated(r, metrics))
            shown = ident
            seeds.add(r.seed)
        det, cfg, proto, fold = key
        detector = self.label((det, cfg))
        where = _where(proto, fold)
        if shown is not None:
            self.shown[key] = shown
        if self.aggregate == "latest" and len(complete) > 1 and used:
            self.notes.append(
                f"{detector} on {where}: {len(complete)} complete runs available; the latest "
                f"({used[0].run.path.name if used[0].run.path else used[0].run.run_id}) is "
                f"shown.")
        elif self.aggregate == "mean" and len(used) > 1:
            seed_list = ", ".join(str(e.run.seed) for e in sorted(used, key=lambda e: e.run.seed))
            self.notes.append(f"{detector} on {where}: mean ± std over {len(used)} runs "
                              f"(seeds {seed_list}).")
        if self.aggregate == "mean" and repeats:
            self.notes.append(f"{detector} on {where}: {repeats} older run(s) repeating a seed "
                              f"left out (the newest run of each seed is used).")
        if self.aggregate == "mean" and other_identity and shown is not None:
            self.notes.append(
                f"{detector} on {where}: {other_identity} run(s) of another identity (config, "
                f"datasets or versions) left out; the newest identity is shown "
                f"({shown.label()}).")
        self._cache[key] = used
        return used

    def identity_note(self, row: RowKey) -> str | None:
        """Which identity the cells of ``row`` show: its config hash (short) and the
        protocol versions, e.g. ``alpha: config 1a2b3c4d; protocol intra v1``."""
        mine = {k: v for k, v in self.shown.items() if k[:2] == row}
        if not mine:
            return None
        detector = self.label(row)
        configs: dict[str, list[str]] = defaultdict(list)
        for (_, _, proto, fold), ident in sorted(mine.items()):
            configs[ident.config_hash[:8] or "?"].append(_where(proto, fold))
        protos = sorted({(i.protocol, i.protocol_version) for i in mine.values()})
        if len(configs) == 1:
            cfg = f"config {next(iter(configs))}"
        else:
            cfg = "; ".join(f"config {h} ({', '.join(w)})" for h, w in configs.items())
        trained = sorted({i.trained_on.split()[0] for i in mine.values() if i.trained_on})
        evaluated = (f"; scored by avbench eval from a run trained under {', '.join(trained)}"
                     if trained else "")
        return (f"{detector}: {cfg}; protocol "
                + ", ".join(f"{p} v{v}" for p, v in protos) + evaluated + ".")

    def coverage_notes(self, row: RowKey, col: Column) -> list[str]:
        """One note per run of the cell that scored fewer test videos than its split (the
        rest unusable, listed in ``run.json``'s ``skipped_media``), e.g. ``RVFA avprompt: 61
        of 64 test videos scored; 3 unusable (empty 1, truncated 1, unreadable 1), listed in
        run.json``."""
        assert col.protocol is not None
        used = self.evaluate((*row, col.protocol, col.fold))
        where = col.protocol if col.fold == ALL_FOLDS else col.fold
        out = []
        for e in used:
            note = _coverage(e.run)
            if note:
                run = f" (run {e.run.path.name if e.run.path else e.run.run_id})" \
                    if len(used) > 1 else ""
                out.append(f"{where} {self.label(row)}{run}: {note}")
        return out

    def cell(self, row: RowKey, col: Column) -> Cell:
        assert col.protocol is not None
        detector = self.label(row)
        used = self.evaluate((*row, col.protocol, col.fold))
        if not used:
            return Cell()
        incomplete = any(not e.run.complete for e in used)
        ms = [e.metrics[col.metric] for e in used if col.metric in e.metrics]
        if not ms:
            return Cell(incomplete=incomplete)
        defined = [m for m in ms if m.value is not None]
        if not defined:
            return Cell(undefined=ms[0].undefined or "undefined", incomplete=incomplete,
                        n_runs=len(ms))
        if self.aggregate == "latest":
            m = defined[0]
            return Cell(value=100 * m.value,
                        lo=None if m.lo is None else 100 * m.lo,
                        hi=None if m.hi is None else 100 * m.hi,
                        n_runs=1, incomplete=incomplete)
        import numpy as np

        vals = np.array([100 * m.value for m in defined])
        if len(defined) < len(ms):
            self.notes.append(
                f"{detector} on {_where(col.protocol, col.fold)}: {METRIC_NAMES[col.metric]} is "
                f"undefined in {len(ms) - len(defined)} of {len(ms)} runs; the mean is over "
                f"the others.")
        return Cell(value=float(vals.mean()),
                    std=float(vals.std(ddof=1)) if len(vals) > 1 else None,
                    n_runs=len(vals), incomplete=incomplete)


def _coverage(run: RunRecord) -> str | None:
    """``61 of 64 test videos scored; 3 unusable (truncated 2, empty 1), listed in run.json``
    for a run that skipped test videos; ``None`` for one that scored its whole split."""
    items = (run.skipped_media or {}).get("items") or []
    test = [i for i in items if isinstance(i, dict) and i.get("split") == "test"]
    if not test:
        return None
    scored = run.n_test_videos
    if scored is None:
        return None
    kinds: dict[str, int] = defaultdict(int)
    for i in test:
        kinds[str(i.get("kind") or "unknown")] += 1
    split = run.splits.get("test") if isinstance(run.splits, dict) else None
    total = split.get("n") if isinstance(split, dict) else None
    if not isinstance(total, int) or isinstance(total, bool):
        total = scored + len(test)
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items(), key=lambda x: (-x[1], x[0])))
    return (f"{scored} of {total} test videos scored; {len(test)} unusable ({by_kind}), "
            f"listed in run.json")


# --------------------------------------------------------------------------------------------
# Table specifications


def _published_text(spec: TableSpec) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def text(e: dict[str, Any]) -> dict[str, Any]:
        return {col: e[key] for col, key in spec.published_text.items()}
    return text


def _row_text(spec: TableSpec, det: str, label: str,
              info: dict[str, Any]) -> tuple[tuple, dict] | None:
    """A computed row's sort key and text (``label`` in the Method column), or None when the
    table has no row for ``det``."""
    text: dict[str, Any] = {"Method": label}
    text.update({col: str(info.get(key, "")) for col, key in spec.detector_text.items()})
    if spec.rows is None:
        return (det,), text
    for i, (name, extra) in enumerate(spec.rows):
        if name == det:
            return (i, det), {**text, **extra}
    return None


def _computed_rows(spec: TableSpec, pool: _Pool, notes: list[str]) -> list[Row]:
    columns = spec.columns
    rows: list[tuple[tuple, Row]] = []
    for key in pool.rows(spec.protocols):
        det, label = key[0], pool.label(key)
        found = _row_text(spec, det, label, pool.detector_info(key))
        if found is None:
            continue
        order, text = found
        cells = {c.key: pool.cell(key, c) for c in columns if c.protocol}
        if not any(pool.evaluate((*key, c.protocol, c.fold)) for c in columns if c.protocol):
            continue  # every run of this row was unreadable (named in a footnote)
        for avg in spec.averages:
            _add_average(cells, avg)
        incomplete = any(c.incomplete for c in cells.values())
        source = COMPUTED_INCOMPLETE if incomplete else COMPUTED
        if pool.detector_info(key).get("plugin") == EXTERNAL_PLUGIN:
            source = EXTERNAL
        text[SOURCE_COLUMN] = source
        row = Row(text=text, cells={c.key: cells[c.key] for c in columns}, source=source,
                  detector=det, config_hash=key[1], label=label)
        seen: set[tuple[str | None, str]] = set()
        for c in columns:
            if c.protocol and (c.protocol, c.fold) not in seen:
                seen.add((c.protocol, c.fold))
                row.notes.extend(pool.coverage_notes(key, c))
        avg_protocol = {a.name: a.protocol for a in spec.averages}
        for c in columns:
            cell = row.cells[c.key]
            if cell.undefined:
                where = c.protocol or avg_protocol.get(c.group, "")
                if c.fold != ALL_FOLDS:
                    where += f" {c.fold}"
                elif c.group in avg_protocol:
                    where += f" {c.group}"
                notes.append(f"n/a: {METRIC_NAMES[c.metric]} of {label} on {where} is "
                             f"undefined: {cell.undefined}.")
        rows.append(((*order, label, key[1]), row))
    if spec.rows is not None and not rows and pool.groups:
        notes.append(f"No run is of a detector this table names ({spec.path.name}), so no "
                     f"computed rows.")
    rows.sort(key=lambda x: x[0])
    return [r for _, r in rows]


def _add_average(cells: dict[str, Cell], avg: Any) -> None:
    for m in avg.metrics:
        parts = [cells[f"{f}.{m}"] for f in avg.folds]
        incomplete = any(p.incomplete for p in parts)
        key = f"{avg.name}.{m}"
        if parts and all(p.present for p in parts):
            value = sum(p.value for p in parts) / len(parts)  # type: ignore[misc]
            cells[key] = Cell(value=value, incomplete=incomplete)
        elif any(p.undefined for p in parts) and all(p.present or p.undefined for p in parts):
            cells[key] = Cell(undefined=f"undefined in at least one {avg.prefix} fold",
                              incomplete=incomplete)
        else:
            cells[key] = Cell()


def build_table(
    number: int,
    runs: Runs | Iterable[RunRecord],
    *,
    published: bool = True,
    ci: bool = False,
    aggregate: str = "latest",
    mixed_versions: str = "newest",
    protocols: Mapping[str, Any] | None = None,
    compare: str | None = None,
) -> Table:
    """Table ``number`` from collected runs, as its table file describes it
    (:mod:`avbench.tables.specs`), with the paper's rows unless ``published=False``. Fold
    columns are read from ``protocols`` (default: those registered now). See the module
    docstring for the rules. ``compare`` names a detector whose cells the others' are tested
    against (:mod:`avbench.tables.compare`)."""
    protocols = registered_protocols() if protocols is None else protocols
    specs = table_specs(protocols)
    if number not in specs:
        raise ConfigError(f"no table {number}; tables exist: {', '.join(map(str, specs))}")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate must be one of {', '.join(AGGREGATES)}, not {aggregate!r}")
    if mixed_versions not in ("newest", "error"):
        raise ConfigError(f"mixed_versions must be 'newest' or 'error', not {mixed_versions!r}")
    if not isinstance(runs, Runs):
        runs = Runs(runs)
    spec = specs[number]
    protos = spec.protocols
    notes: list[str] = []
    folds = {p: list(protocols[p].fold_names) or [ALL_FOLDS] for p in protos if p in protocols}
    pool = _Pool(runs, protos, aggregate=aggregate, ci=ci, mixed_versions=mixed_versions,
                 notes=notes, folds=folds)
    computed = _computed_rows(spec, pool, notes)
    if compare is not None:
        from avbench.tables.compare import mark_cells

        mark_cells(number, computed, spec.columns, pool, compare, notes)
    table = Table(number=number, title=spec.title + _BEST,
                  text_columns=[*spec.text, SOURCE_COLUMN], columns=spec.columns,
                  decimals=spec.decimals, ci=ci and aggregate == "latest",
                  aggregate=aggregate, check_columns=spec.check_columns, compare=compare)
    footnotes: list[str] = []
    if published and spec.published is not None:
        reported = pub.published_rows(spec.published, _published_text(spec))
        table.rows.extend(reported)
        footnotes.append(pub.published_footnote(spec.published))
        if any(c.reported_missing for r in reported for c in r.cells.values()):
            footnotes.append("'-': not given in the paper.")
    table.rows.extend(computed)
    table.footnotes = footnotes + _footnotes(spec, computed, pool, runs, aggregate, ci)
    table.footnotes.extend(dict.fromkeys(notes))
    table.footnotes.extend(runs.problems)
    table.rank()
    return table


def _state(run: RunRecord) -> str:
    """A run's status for the left-out note: ``running`` while a process writes it."""
    status = str(getattr(run, "status", "") or "incomplete")
    path = getattr(run, "path", None)
    if status == "incomplete" and path is not None and run_in_progress(Path(path)):
        return "running"
    return status


def _footnotes(spec: TableSpec, computed: list[Row], pool: _Pool, runs: Runs, aggregate: str,
               ci: bool) -> list[str]:
    """What a table's footnotes say about its computed rows: where they come from, which
    identity a cell shows, runs left out, aggregation, intervals, undefined cells, coverage."""
    protos = spec.protocols
    footnotes: list[str] = []
    if computed:
        if any(r.source != EXTERNAL for r in computed):
            footnotes.append("Rows marked 'computed' were computed by avbench from each run's "
                             "scores.csv (metrics.json is not read); a blank cell has no run.")
        if any(r.source == EXTERNAL for r in computed):
            footnotes.append("Rows marked 'external' hold scores computed outside avbench, "
                             "recorded with `avbench score` and checked against the test split.")
        shown = [n for n in (pool.identity_note((r.detector, r.config_hash)) for r in computed
                             if r.detector) if n]
        if shown:
            footnotes.append("A cell shows the runs of one identity (config hash, protocol "
                             "version, datasets, versions): " + " ".join(shown))
    elif not pool.groups:
        where = f" in {runs.root.name or runs.root}" if runs.root is not None else ""
        footnotes.append(f"No computed rows: no usable run of {' or '.join(protos)}{where}.")
    footnotes.extend(a.footnote for a in spec.averages if a.footnote)
    if any(c.incomplete for r in computed for c in r.cells.values()):
        footnotes.append("†: from an incomplete run (status is not 'complete').")
    left = [r for r in runs.left_out if r.protocol in protos]
    if left:
        states = Counter(_state(r) for r in left)
        listing = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        footnotes.append(f"{len(left)} run(s) not complete left out ({listing}; "
                         f"`avbench table --include-incomplete` shows them).")
    if aggregate == "mean":
        footnotes.append("Computed values are the mean ± standard deviation over the runs of "
                         "each (detector, protocol, fold) that differ in the seed alone (one "
                         "identity, the newest run of each seed).")
        if ci:
            footnotes.append("Bootstrap intervals are not shown with mean aggregation.")
    elif ci:
        footnotes.append(f"[lo, hi]: 95% bootstrap interval over videos ({N_BOOT} resamples, "
                         f"seed {BOOT_SEED})"
                         + "".join(f"; {a.name} has none" for a in spec.averages) + ".")
    if any(c.undefined for r in computed for c in r.cells.values()):
        footnotes.append("n/a: the metric is undefined on the test set (details below).")
    coverage = [n for r in computed for n in r.notes]
    if coverage:
        footnotes.append("Cells that scored fewer test videos than the protocol's split (the "
                         "others could not be used; their ids, kinds and reasons are in the "
                         "run's run.json, skipped_media): " + "; ".join(coverage) + ".")
    return footnotes
