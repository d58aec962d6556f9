"""Tables built from hand-written results folders."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from avbench import significance
from avbench.config import config_hash
from avbench.errors import ConfigError, ResultsError
from avbench.protocols import split_hash
from avbench.records import VideoRecord
from avbench.results import (
    SCHEMA_VERSION,
    SCORE_COLUMNS,
    RunRecord,
    atomic_write_json,
    read_run,
    run_folder,
    write_scores,
)
from avbench.tables import (
    Runs,
    build_and_render,
    build_table,
    collect,
    render,
    table_for_protocol,
)
from avbench.tables.build import registered_protocols
from avbench.testing import run_cli

FOLDS = ("RVFA", "FVRA-WL", "FVFA-FS", "FVFA-GAN", "FVFA-WL")  # cross-manip's, as in the paper
FV_FOLDS = FOLDS[1:]

# detectors that protocols/tables/table4.toml and table5.toml name, with their modality
ABLATIONS = {"avprompt": "AV", "avprompt-visual-only": "V", "avprompt-no-la": "AV"}
_IDS = itertools.count()


def make_scores(seed: int, n: int = 40, *, sep: float = 0.5, only: int | None = None,
                modalities: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.full(n, only) if only is not None else np.arange(n) % 2
    kinds = rng.integers(0, 3, size=n)
    label_v = np.where(label == 1, (kinds != 1).astype(int), 0)
    label_a = np.where(label == 1, (kinds != 0).astype(int), 0)

    def noisy(y: np.ndarray) -> np.ndarray:
        return np.clip(0.25 + sep * y + rng.normal(0, 0.2, n), 0, 1)

    df = pd.DataFrame({
        "id": [f"v{seed}/{i:03d}.mp4" for i in range(n)],
        "dataset": "synthetic", "label": label, "label_v": label_v, "label_a": label_a,
        "type": "", "method": "", "category": "", "group": "",
        "score": noisy(label),
        "score_v": noisy(label_v) if modalities else np.nan,
        "score_a": noisy(label_a) if modalities else np.nan,
        "n_segments": 3, "padded_frames": 0,
    })
    assert list(df.columns) == list(SCORE_COLUMNS)
    return df


def split_record(scores: pd.DataFrame) -> dict:
    """``splits.test`` of run.json for a test split of exactly these videos."""
    recs = [VideoRecord(id=i, dataset=d, label=0, label_v=0, label_a=0)
            for i, d in zip(scores["id"], scores["dataset"], strict=True)]
    return {"dataset": str(scores["dataset"].iloc[0]), "n": len(recs), "hash": split_hash(recs)}


def write_run(root: Path, detector: str, protocol: str, fold: str | None = None, *,
              scores: pd.DataFrame, version: str | None = None, status: str = "complete",
              finished: str = "2025-01-01T00:00:00Z", modality: str = "AV",
              run_id: str | None = None, seed: int = 0, config: dict | None = None,
              changes: dict | None = None, skipped: Iterable[tuple[str, str]] = ()) -> Path:
    """A run folder as ``avbench run`` writes it (the fields a table checks), of the
    protocol registered now (``version`` other than its own makes it a run of another
    protocol file). ``config``: the resolved config run.json records (and its hash);
    ``changes``: what --set changed from the detector's default (``config_changes``);
    ``skipped``: (id, kind) of test videos the run could not use (in the split, not
    scored)."""
    run_id = run_id or f"{finished[:10]}-{detector}-{next(_IDS):04d}"
    path = run_folder(root, protocol, fold, detector, run_id)
    registered = registered_protocols()[protocol]
    path.mkdir(parents=True, exist_ok=True)
    sha = write_scores(path / "scores.csv", scores)
    det: dict = {"name": detector, "modality": modality}
    if config is not None:
        det.update(config=config, config_hash=config_hash(config))
    if changes is not None:
        det["config_changes"] = changes
    skipped = list(skipped)
    items = [{"split": "test", "id": i, "kind": k, "reason": f"file is {k}"} for i, k in skipped]
    everything = pd.concat([scores[["id", "dataset"]], pd.DataFrame(
        {"id": [i for i, _ in skipped], "dataset": scores["dataset"].iloc[0]})])
    RunRecord(
        run_id=run_id, status=status, created=finished,
        finished=finished if status == "complete" else None,
        detector_info=det,
        protocol_info={"name": protocol, "version": version or registered.version,
                       "fold": fold, "file_hash": registered.file_hash},
        splits={"test": split_record(everything)}, seed=seed, n_test_videos=len(scores),
        skipped_media={"count": len(items), "by_kind": {}, "items": items},
        scores_sha256=sha,
    ).write(path)
    # a stale metrics file with numbers that must never show up in a table
    stale = {k: {"value": 0.123456, "ci95": [0.1, 0.2]} for k in ("acc", "ap", "auc")}
    atomic_write_json(path / "metrics.json", stale)
    return path


@pytest.fixture(scope="module")
def base_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Two detectors on every protocol (every cross-manip fold), one more on intra only, and
    three that Tables 4 and 5 name on intra and cross-dataset."""
    root = tmp_path_factory.mktemp("base") / "results"
    frames: dict = {}
    seed = 1
    for det, modality in (("alpha", "AV"), ("beta", "V")):
        for protocol, folds in (("intra", [None]), ("cross-dataset", [None]),
                                ("cross-manip", list(FOLDS))):
            for fold in folds:
                seed += 1
                df = make_scores(seed)
                frames[(det, protocol, fold or "all")] = df
                write_run(root, det, protocol, fold, scores=df, modality=modality)
    for det, modality in ABLATIONS.items():
        for protocol in ("intra", "cross-dataset"):
            seed += 1
            df = make_scores(seed)
            frames[(det, protocol, "all")] = df
            write_run(root, det, protocol, scores=df, modality=modality)
    df = make_scores(99, sep=0.1)
    frames[("gamma", "intra", "all")] = df
    write_run(root, "gamma", "intra", scores=df)
    return root, frames


@pytest.fixture
def results(base_results: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict]:
    """A private copy of the base results, for tests that add runs."""
    root, frames = base_results
    shutil.copytree(root, tmp_path / "results")
    return tmp_path / "results", dict(frames)


def row_of(table, detector: str):
    rows = [r for r in table.rows if r.detector == detector]
    assert len(rows) == 1, [r.detector for r in table.rows]
    return rows[0]


def sk(df: pd.DataFrame, metric: str) -> float:
    s, y = {"acc": ("score", "label"), "ap": ("score", "label"), "auc": ("score", "label"),
            "acc_v": ("score_v", "label_v"), "auc_v": ("score_v", "label_v"),
            "acc_a": ("score_a", "label_a"), "auc_a": ("score_a", "label_a")}[metric]
    if metric.startswith("acc"):
        return 100 * accuracy_score(df[y], (df[s] >= 0.5).astype(int))
    if metric == "ap":
        return 100 * average_precision_score(df[y], df[s])
    return 100 * roc_auc_score(df[y], df[s])


def md_rows(md: str) -> dict[str, list[str]]:
    """Markdown table body rows keyed by the first cell that names a method."""
    out = {}
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        out[cells[header.index("Method")]] = cells
    out["__header__"] = header
    return out


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("fmt", ["rich", "markdown", "latex", "csv"])
def test_every_table_renders_in_every_format(base_results, number, fmt) -> None:
    root, _ = base_results
    out = build_and_render(root, number, fmt)
    if fmt == "rich":
        from rich.console import Console
        from rich.table import Table as RichTable

        assert isinstance(out, RichTable)
        console = Console(record=True, width=400)
        console.print(out)
        text = console.export_text()
    else:
        assert isinstance(out, str)
        text = out
    assert ("alpha" if number <= 3 else "avprompt") in text
    assert "reported" in text and "computed" in text
    assert ("gamma" in text) == (number == 1)
    if fmt == "latex":
        assert r"\toprule" in text and r"\bottomrule" in text
        if number in (2, 4, 5):
            assert r"\multicolumn{2}{c}" in text


def test_values_equal_sklearn(base_results) -> None:
    root, frames = base_results
    runs = collect(root)
    t1 = build_table(1, runs)
    for det in ("alpha", "beta", "gamma"):
        for m in ("acc", "auc"):
            assert row_of(t1, det).cells[m].value == pytest.approx(
                sk(frames[(det, "intra", "all")], m), abs=1e-7)
    t2 = build_table(2, runs)
    for fold in FOLDS:
        for m in ("ap", "auc"):
            assert row_of(t2, "alpha").cells[f"{fold}.{m}"].value == pytest.approx(
                sk(frames[("alpha", "cross-manip", fold)], m), abs=1e-7)
    t3 = build_table(3, runs)
    for m in ("ap", "auc"):
        assert row_of(t3, "beta").cells[m].value == pytest.approx(
            sk(frames[("beta", "cross-dataset", "all")], m), abs=1e-7)
    assert row_of(t3, "beta").text["Modality"] == "V"
    assert row_of(t3, "alpha").text["Modality"] == "AV"
    t4 = build_table(4, runs)
    for m in ("acc", "auc", "acc_v", "auc_v", "acc_a", "auc_a"):
        assert row_of(t4, "avprompt").cells[f"FakeAVCeleb.{m}"].value == pytest.approx(
            sk(frames[("avprompt", "intra", "all")], m), abs=1e-7)
    for m in ("acc", "auc"):
        assert row_of(t4, "avprompt").cells[f"KoDF.{m}"].value == pytest.approx(
            sk(frames[("avprompt", "cross-dataset", "all")], m), abs=1e-7)
    t5 = build_table(5, runs)
    assert row_of(t5, "avprompt-no-la").cells["KoDF.auc"].value == pytest.approx(
        sk(frames[("avprompt-no-la", "cross-dataset", "all")], "auc"), abs=1e-7)
    # the DataFrame carries the same numbers
    df = t1.frame()
    alpha = df[df[("Method", "")] == "alpha"]
    assert float(alpha[("", "AUC")].iloc[0]) == pytest.approx(
        sk(frames[("alpha", "intra", "all")], "auc"), abs=1e-7)


def test_stale_metrics_json_is_ignored(base_results) -> None:
    root, _ = base_results
    for n in range(1, 6):
        out = build_and_render(root, n, "csv")
        assert "12.3456" not in out and "12.35" not in out
    md = build_and_render(root, 1, "markdown")
    assert "12.35" not in md


def test_ablation_rows_are_the_detectors_the_table_files_name(base_results) -> None:
    root, _ = base_results
    runs = collect(root)
    t4 = build_table(4, runs)
    # alpha and beta have runs of both protocols, but no table file names them
    assert [r.detector for r in t4.rows if r.detector] == ["avprompt-visual-only", "avprompt"]
    vis = row_of(t4, "avprompt-visual-only")
    assert (vis.text["Audio Branch"], vis.text["Visual Branch"], vis.text["L_CMFM"]) == (
        False, True, False)
    t5 = build_table(5, runs)
    assert [r.detector for r in t5.rows if r.detector] == ["avprompt", "avprompt-no-la"]
    assert row_of(t5, "avprompt-no-la").text["Variant"] == "w/o L_a"
    assert row_of(t5, "avprompt").text["Variant"] == "Ours"
    rows = list(csv.DictReader(io.StringIO(render(t4, "csv"))))
    full = next(r for r in rows if r["Method"] == "avprompt" and r["Source"] == "computed")
    assert (full["Audio Branch"], full["L_CMFM"]) == ("true", "true")


def test_avg_fv_is_the_mean_of_the_fv_folds(base_results, tmp_path) -> None:
    root, frames = base_results
    t2 = build_table(2, collect(root))
    for det in ("alpha", "beta"):
        for m in ("ap", "auc"):
            expected = np.mean([sk(frames[(det, "cross-manip", f)], m) for f in FV_FOLDS])
            assert row_of(t2, det).cells[f"AVG-FV.{m}"].value == pytest.approx(expected,
                                                                               abs=1e-7)
    # a method with some folds missing: blanks, and no AVG-FV
    partial = tmp_path / "partial"
    write_run(partial, "delta", "cross-manip", "RVFA", scores=make_scores(5))
    write_run(partial, "delta", "cross-manip", "FVFA-WL", scores=make_scores(6))
    t = build_table(2, collect(partial), published=False)
    row = row_of(t, "delta")
    assert row.cells["RVFA.ap"].present and row.cells["FVFA-WL.auc"].present
    assert not row.cells["FVRA-WL.ap"].present and not row.cells["AVG-FV.ap"].present
    cells = md_rows(render(t, "markdown"))["delta"]
    header = md_rows(render(t, "markdown"))["__header__"]
    assert cells[header.index("FVRA-WL AP")] == "" and cells[header.index("AVG-FV AUC")] == ""


def test_incomplete_runs_left_out_unless_asked(results) -> None:
    root, frames = results
    newer = make_scores(200)
    write_run(root, "alpha", "intra", scores=newer, status="incomplete",
              finished="2025-06-01T00:00:00Z")
    write_run(root, "epsilon", "intra", scores=make_scores(201), status="incomplete")
    write_run(root, "zeta", "intra", scores=make_scores(202), status="failed")
    t = build_table(1, collect(root))
    assert "epsilon" not in {r.detector for r in t.rows}
    assert ("3 run(s) not complete left out (1 failed, 2 incomplete; `avbench table "
            "--include-incomplete` shows them).") in t.footnotes, t.footnotes
    # a run that a live process is writing is said to be running
    from avbench.results import RunLock

    with RunLock(write_run(root, "eta", "intra", scores=make_scores(203),
                           status="incomplete")):
        t = build_table(1, collect(root))
    assert ("4 run(s) not complete left out (1 failed, 2 incomplete, 1 running; `avbench "
            "table --include-incomplete` shows them).") in t.footnotes, t.footnotes
    t = build_table(1, collect(root))
    assert "4 run(s) not complete left out (1 failed, 3 incomplete;" in " ".join(t.footnotes)
    t = build_table(1, collect(root, include_incomplete=True))
    eps = row_of(t, "epsilon")
    assert eps.source == "computed (incomplete)" and eps.cells["auc"].incomplete
    assert eps.text["Source"] == "computed (incomplete)"
    # a complete run is preferred over a newer incomplete one
    alpha = row_of(t, "alpha")
    assert alpha.source == "computed"
    assert alpha.cells["auc"].value == pytest.approx(sk(frames[("alpha", "intra", "all")],
                                                        "auc"), abs=1e-7)
    md = render(t, "markdown")
    assert "†" in md_rows(md)["epsilon"][-1]
    assert any(f.startswith("†") for f in t.footnotes)


def test_latest_run_is_used_and_counted(results) -> None:
    root, frames = results
    old = frames[("alpha", "intra", "all")]
    new = make_scores(300)
    write_run(root, "alpha", "intra", scores=new, finished="2025-03-01T00:00:00Z", seed=1)
    t = build_table(1, collect(root))
    assert row_of(t, "alpha").cells["auc"].value == pytest.approx(sk(new, "auc"), abs=1e-7)
    assert any("alpha on intra: 2 complete runs available" in f for f in t.footnotes)
    # mean aggregation: mean and std over the runs (of one identity, seeds 0 and 1)
    t = build_table(1, collect(root), aggregate="mean")
    cell = row_of(t, "alpha").cells["auc"]
    vals = [sk(old, "auc"), sk(new, "auc")]
    assert cell.value == pytest.approx(np.mean(vals), abs=1e-7)
    assert cell.std == pytest.approx(np.std(vals, ddof=1), abs=1e-7)
    assert cell.n_runs == 2
    md = render(t, "markdown")
    assert f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1):.2f}" in md_rows(md)["alpha"][-1]
    assert "alpha,computed" in render(t, "csv")
    with pytest.raises(ConfigError):
        build_table(1, collect(root), aggregate="median")


def test_protocol_versions_are_not_mixed(tmp_path) -> None:
    root = tmp_path / "r"
    v9 = make_scores(1)
    v10 = make_scores(2)
    write_run(root, "alpha", "intra", scores=v9, version="9", finished="2025-05-01T00:00:00Z")
    write_run(root, "beta", "intra", scores=make_scores(3), version="9")
    write_run(root, "alpha", "intra", scores=v10, version="10",
              finished="2025-01-01T00:00:00Z")
    # collect() leaves out every run of a protocol file other than the registered one, so
    # versions can only mix in runs handed to build_table directly
    checked = collect(root)
    assert not checked and len(checked.problems) == 3
    assert all("the registered intra is version" in p for p in checked.problems)
    runs = Runs([read_run(p.parent) for p in sorted(root.rglob("run.json"))], root=root)
    t = build_table(1, runs, published=False)
    # the newest version wins (10 > 9 numerically), even over a more recent run of version 9
    assert {r.detector for r in t.rows} == {"alpha"}
    assert row_of(t, "alpha").cells["auc"].value == pytest.approx(sk(v10, "auc"), abs=1e-7)
    assert any("2 run(s) of older protocol version(s) '9' left out" in f for f in t.footnotes)
    assert any("version '10'" in f for f in t.footnotes)
    with pytest.raises(ResultsError, match="mix versions"):
        build_table(1, runs, mixed_versions="error")


def test_undefined_metrics_show_as_na(tmp_path) -> None:
    root = tmp_path / "r"
    write_run(root, "alpha", "cross-dataset", scores=make_scores(1, only=1))
    t = build_table(3, collect(root), published=False)
    cell = row_of(t, "alpha").cells["auc"]
    assert cell.value is None and "one class only" in cell.undefined
    md = render(t, "markdown")
    assert md_rows(md)["alpha"][-2:] == ["n/a", "n/a"]
    assert any(f.startswith("n/a: AUC of alpha on cross-dataset") for f in t.footnotes)
    rows = list(csv.DictReader(io.StringIO(render(t, "csv"))))
    assert rows[0]["AUC"] == "n/a" and rows[0]["AP"] == "n/a"
    latex = render(t, "latex")
    assert "n/a & n/a" in latex
    for text in (md, latex):
        assert "50.0" not in text and " 0.0 " not in text


def test_published_rows_follow_the_flag(base_results) -> None:
    root, _ = base_results
    runs = collect(root)
    for n in range(1, 6):
        with_pub = build_table(n, runs)
        without = build_table(n, runs, published=False)
        assert any(r.source == "reported" for r in with_pub.rows)
        assert all(r.source != "reported" for r in without.rows)
        assert any(r.text["Method"] == "avprompt (paper)" for r in with_pub.rows)
        assert not any("avprompt (paper)" in str(r.text) for r in without.rows)
        assert any("copied from" in f for f in with_pub.footnotes)
        rows = list(csv.DictReader(io.StringIO(render(with_pub, "csv"))))
        assert {r["Source"] for r in rows} == {"reported", "computed"}


def test_best_bold_second_underlined(tmp_path) -> None:
    root = tmp_path / "r"
    for det, seed, sep in (("top", 1, 0.9), ("mid", 2, 0.4), ("low", 3, 0.1)):
        write_run(root, det, "intra", scores=make_scores(seed, sep=sep, n=60))
    runs = collect(root)
    t = build_table(1, runs, published=False)
    aucs = {r.detector: round(r.cells["auc"].value, 2) for r in t.rows}
    order = sorted(aucs, key=aucs.get, reverse=True)
    assert len(set(aucs.values())) == 3
    md = md_rows(render(t, "markdown"))
    col = md["__header__"].index("AUC")
    assert md[order[0]][col].startswith("**") and md[order[0]][col].endswith("**")
    assert md[order[1]][col].startswith("<u>")
    assert "**" not in md[order[2]][col] and "<u>" not in md[order[2]][col]
    latex = render(t, "latex")
    rows = {ln.split(" & ")[0]: ln.split(" & ") for ln in latex.splitlines() if " & " in ln}
    assert rows[order[0]][-1].startswith(r"\textbf{")
    assert rows[order[1]][-1].startswith(r"\underline{")
    assert "textbf" not in rows[order[2]][-1] and "underline" not in rows[order[2]][-1]
    # over all rows shown: a perfect computed row beats the paper, whose best becomes second
    perfect = make_scores(4, sep=0.9)
    perfect["score"] = perfect["label"] * 0.8 + 0.1
    write_run(root, "perfect", "cross-dataset", scores=perfect)
    t3 = build_table(3, collect(root))
    md = md_rows(render(t3, "markdown"))
    col = md["__header__"].index("AUC")
    assert md["perfect"][col] == "**100.0**"
    assert md["AVFF"][col] == "<u>95.5</u>"
    assert md["avprompt (paper)"][col] == "94.5"


def test_confidence_intervals(base_results) -> None:
    root, _ = base_results
    t = build_table(3, collect(root), ci=True, published=False)
    cell = row_of(t, "alpha").cells["auc"]
    assert cell.lo is not None and cell.lo <= cell.value <= cell.hi
    md = md_rows(render(t, "markdown"))["alpha"][-1]
    assert md.strip("*<u>/") == f"{cell.value:.1f} [{cell.lo:.1f}, {cell.hi:.1f}]"
    rows = list(csv.DictReader(io.StringIO(render(t, "csv"))))
    assert float(rows[0]["AUC lo"]) == pytest.approx(cell.lo)
    # rich shows the brackets literally (not as markup)
    from rich.console import Console

    console = Console(record=True, width=300)
    console.print(render(t, "rich"))
    text = console.export_text()
    assert f"{cell.value:.1f} [{cell.lo:.1f}, {cell.hi:.1f}]" in text
    assert "[lo, hi]: 95% bootstrap interval" in text


def test_missing_and_bad_results_folders(tmp_path) -> None:
    with pytest.raises(ResultsError, match="results folder not found"):
        collect(tmp_path / "nope")
    with pytest.raises(ResultsError, match="results folder not found"):
        build_and_render(tmp_path / "nope", 1, "markdown", published=False)
    root = tmp_path / "r"
    good = make_scores(1)
    write_run(root, "alpha", "intra", scores=good)
    bad_json = run_folder(root, "intra", None, "broken", "x1")
    bad_json.mkdir(parents=True)
    (bad_json / "run.json").write_text("{not json")
    no_scores = write_run(root, "noscores", "intra", scores=make_scores(2))
    (no_scores / "scores.csv").unlink()
    t = build_table(1, collect(root), published=False)
    assert {r.detector for r in t.rows} == {"alpha"}
    notes = "\n".join(t.footnotes)
    assert "left out intra/all/broken/x1: run.json is not valid JSON" in notes
    assert re.search(r"left out intra/all/noscores/[^:]+: no scores.csv", notes)
    assert str(tmp_path) not in notes


def test_protocol_mapping_and_bad_arguments(tmp_path) -> None:
    assert [table_for_protocol(p) for p in ("intra", "cross-manip", "cross-dataset")] == [1, 2, 3]
    with pytest.raises(ConfigError):
        table_for_protocol("nope")
    (tmp_path / "r").mkdir()
    with pytest.raises(ConfigError):
        build_and_render(tmp_path / "r", 6, "markdown")
    with pytest.raises(ConfigError):
        build_and_render(tmp_path / "r", 1, "html")
    # an empty results folder still gives the paper's rows and says why none are computed
    md = build_and_render(tmp_path / "r", 1, "markdown")
    assert "avprompt (paper)" in md and "No computed rows" in md


def test_import_is_cheap() -> None:
    code = ("import sys, avbench.tables; "
            "print(','.join(m for m in ('torch', 'pandas', 'sklearn') if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True)
    assert out.stdout.strip() == ""


def test_run_json_fields_read(tmp_path) -> None:
    """Exactly the fields the lead must write: a minimal run.json is enough."""
    root = tmp_path / "r"
    path = run_folder(root, "intra", None, "mini", "r1")
    path.mkdir(parents=True)
    intra, scores = registered_protocols()["intra"], make_scores(7)
    info = {
        "schema": SCHEMA_VERSION,
        "status": "complete",
        "detector": {"name": "mini", "modality": "AV"},
        "protocol": {"name": "intra", "version": intra.version, "fold": None,
                     "file_hash": intra.file_hash},
        "splits": {"test": split_record(scores)},
        "n_test_videos": len(scores),
        "scores_sha256": write_scores(path / "scores.csv", scores),
        "finished": "2025-01-01T00:00:00Z",
    }
    identity = RunRecord(detector_info=info["detector"], protocol_info=info["protocol"]).identity
    (path / "run.json").write_text(json.dumps({**info, "identity": identity.to_dict()}))
    t = build_table(1, collect(root), published=False)
    assert row_of(t, "mini").cells["auc"].value == pytest.approx(sk(scores, "auc"))


def test_a_plugin_adds_a_protocol_and_its_table_without_touching_the_core(tmp_path) -> None:
    from avbench import hookimpl
    from avbench.testing import temporary_plugin

    text = (Path(registered_protocols()["cross-manip"].path).read_text("utf-8")
            .replace('name = "cross-manip"', 'name = "two-folds"').replace("table = 2", ""))
    text = text[:text.index("[folds.FVFA-FS]")]  # keeps RVFA and FVRA-WL
    (tmp_path / "two-folds.toml").write_text(text, "utf-8")
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "t.toml").write_text(
        'number = 7\ntitle = "Table 7: two folds."\ntext = ["Method"]\n'
        '[[groups]]\nprotocol = "two-folds"\nper_fold = true\nmetrics = ["auc"]\n'
        '[[averages]]\nname = "AVG"\nprotocol = "two-folds"\nfold_prefix = ""\n'
        'metrics = ["auc"]\n', "utf-8")

    class Plugin:
        @hookimpl
        def avbench_register_protocols(self, register) -> None:
            register.directory(tmp_path)

    with temporary_plugin(Plugin(), "two-folds-plugin"):
        assert table_for_protocol("two-folds") == 7
        table = build_table(7, Runs([]), published=False)
    assert table.title.startswith("Table 7: two folds.")
    assert [c.key for c in table.columns] == ["RVFA.auc", "FVRA-WL.auc", "AVG.auc"]
    assert "No computed rows: no usable run of two-folds." in table.footnotes


# --------------------------------------------------------------------------------------------
# A cell that scored part of its split says so


def _export(renderable, width: int = 400) -> str:
    from rich.console import Console

    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_a_cell_that_scored_fewer_test_videos_than_the_split_says_so(tmp_path) -> None:
    """61 of 64 scored, 3 unusable: a note in every format (rich and plain text, markdown,
    LaTeX, and a Notes column in CSV); a cell that scored its whole split has none."""
    root = tmp_path / "results"
    scores = make_scores(3, n=61)
    skipped = [("v3/t.mp4", "truncated"), ("v3/e.mp4", "empty"), ("v3/u.mp4", "unreadable"),]
    write_run(root, "avprompt", "cross-manip", "RVFA", scores=scores, skipped=skipped)
    write_run(root, "avprompt", "cross-manip", "FVRA-WL", scores=make_scores(4, n=64))
    want = ("RVFA avprompt: 61 of 64 test videos scored; 3 unusable (empty 1, truncated 1, "
            "unreadable 1), listed in run.json")
    runs = collect(root)
    assert runs.problems == []
    t = build_table(2, runs, published=False)
    (row,) = t.rows
    assert row.notes == [want]
    notes = "\n".join(t.footnotes)
    assert notes.count("test videos scored") == 1 and want in notes
    plain = _export(render(t, "rich"))
    assert " ".join(plain.split()).count(want) == 1, plain
    assert " ".join(_export(render(t, "rich", width=100), 100).split()).count(want) == 1
    assert want.replace("_", "\\_") in render(t, "markdown")
    assert want.replace("_", r"\_") in render(t, "latex")
    (csv_row,) = csv.DictReader(io.StringIO(render(t, "csv")))
    assert csv_row["Notes"] == want
    r = run_cli(["table", "-t", "2", "--results", str(root), "--no-published"],
                env={"COLUMNS": "300"})
    assert r.exit_code == 0 and want in " ".join(r.stdout.split()), r.stdout


def test_no_skipped_test_video_no_note_and_no_notes_column(tmp_path) -> None:
    root = tmp_path / "results"
    write_run(root, "avprompt", "cross-manip", "RVFA", scores=make_scores(3, n=20))
    t = build_table(2, collect(root), published=False)
    assert t.rows[0].notes == []
    assert not any("test videos scored" in n for n in t.footnotes)
    assert "Notes" not in render(t, "csv").splitlines()[0]


# --------------------------------------------------------------------------------------------
# One row per (detector, config)


def _sync_corr_default() -> dict:
    from avbench.config import config_to_dict
    from avbench.engine.run import portable
    from avbench.plugins import get_plugins

    return portable(config_to_dict(get_plugins().detectors["sync-corr"].make_config()))


def test_another_config_of_a_detector_is_a_row_of_its_own_and_averages_its_own_cells(
        tmp_path) -> None:
    """`--fold FVFA-WL --set max_lag=0` after a default run of every fold: the default row
    keeps its numbers (AVG-FV over its own four FV cells), the other config is a row of its
    own labelled with what differs, and AVG-FV of a row with one FV cell is blank."""
    root = tmp_path / "results"
    default = _sync_corr_default()
    assert default["max_lag"] != 0
    other = {**default, "max_lag": 0}
    frames = {fold: make_scores(10 + i) for i, fold in enumerate(FOLDS)}
    for fold in FOLDS:
        write_run(root, "sync-corr", "cross-manip", fold, scores=frames[fold], config=default,
                  changes={})
    worse = frames["FVFA-WL"].copy()  # the same test videos, other scores
    worse["score"] = np.random.default_rng(30).uniform(0, 1, len(worse))
    write_run(root, "sync-corr", "cross-manip", "FVFA-WL", scores=worse, config=other,
              changes={"max_lag": 0}, finished="2025-02-01T00:00:00Z")  # newer: it used to replace the default's cell
    t = build_table(2, collect(root), published=False)
    assert [r.text["Method"] for r in t.rows] == ["sync-corr", "sync-corr [max_lag=0]"]
    base, lag0 = t.rows
    fv = [f for f in FOLDS if f.startswith("FV")]
    assert base.cells["FVFA-WL.auc"].value == pytest.approx(sk(frames["FVFA-WL"], "auc"))
    assert base.cells["AVG-FV.auc"].value == pytest.approx(
        np.mean([sk(frames[f], "auc") for f in fv]))
    assert lag0.cells["FVFA-WL.auc"].value == pytest.approx(sk(worse, "auc"))
    assert not lag0.cells["AVG-FV.auc"].present and not lag0.cells["RVFA.auc"].present
    assert (base.config_hash, lag0.config_hash) == (config_hash(default), config_hash(other))
    notes = "\n".join(t.footnotes)
    assert f"sync-corr [max_lag=0]: config {config_hash(other)[:8]}; protocol" in notes
    assert f"sync-corr: config {config_hash(default)[:8]}; protocol" in notes
    md = render(t, "markdown")
    assert "| sync-corr [max\\_lag=0] |" in md, md
    # --compare sync-corr is against the default-config row; the other row is tested
    t = build_table(2, collect(root), published=False, compare="sync-corr")
    base, lag0 = t.rows
    assert all(c.p is None for c in base.cells.values())
    assert lag0.cells["FVFA-WL.auc"].p is not None
    assert lag0.cells["FVFA-WL.auc"].p == pytest.approx(significance.delong(
        frames["FVFA-WL"]["label"], worse["score"], frames["FVFA-WL"]["score"]).p)


def test_labels_of_detectors_not_installed_and_the_order_of_rows(tmp_path) -> None:
    """A detector that is not installed: one config keeps its name; several are labelled
    with their config hash's first 8 hex digits, ordered by detector then label."""
    root = tmp_path / "results"
    write_run(root, "zeta", "intra", scores=make_scores(1), config={"k": 2})
    write_run(root, "alpha", "intra", scores=make_scores(2), config={"k": 1})
    write_run(root, "alpha", "intra", scores=make_scores(3), config={"k": 2})
    t = build_table(1, collect(root), published=False)
    h1, h2 = config_hash({"k": 1})[:8], config_hash({"k": 2})[:8]
    assert [r.text["Method"] for r in t.rows] == [*sorted([f"alpha [{h1}]", f"alpha [{h2}]"]),
                                                  "zeta"]
    with pytest.raises(ConfigError, match="no computed row of alpha's default config"):
        build_table(1, collect(root), published=False, compare="alpha")
    t = build_table(1, collect(root), published=False, compare=f"alpha [{h1}]")  # by label
    assert any(n.startswith(f"--compare: alpha [{h2}] on AUC not tested against alpha "
                            f"[{h1}]: the two runs scored different test videos") for n in
               t.footnotes), t.footnotes


def test_the_title_is_wrapped_to_the_terminal_not_to_a_narrow_table(results) -> None:
    """Table 1 is narrow; its title (about 130 characters) stays one line on a 160-column
    terminal instead of wrapping at the table's width."""
    root, _ = results
    t = build_table(1, collect(root))
    assert 100 < len(t.title) < 160
    text = _export(render(t, "rich", width=160), 160)
    assert t.title in text.splitlines(), text[:600]


def test_latex_footnotes_set_commands_in_typewriter_type() -> None:
    """A footnote's `command` reads as code in LaTeX, not with Markdown's backticks."""
    from avbench.tables.model import Table
    from avbench.tables.render import render

    t = Table(number=2, title="Table 2: x", text_columns=[], columns=[],
              footnotes=["shown by `avbench table --include-incomplete`.", "a lone ` stays"])
    latex = render(t, "latex")
    assert r"shown by \texttt{avbench table --include-incomplete}." in latex
    assert "a lone ` stays" in latex and "`avbench" not in latex
