"""table --compare (paired tests against one detector), and LaTeX / ranking details."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

import numpy as np
import pytest

from avbench import significance
from avbench.errors import ConfigError
from avbench.tables import build_table, collect, render
from avbench.testing import run_cli
from tests.test_tables import make_scores, md_rows, row_of, write_run


@pytest.fixture
def three(tmp_path):
    """On intra's same 200 test videos: ref, a clearly worse detector and a near-copy of ref."""
    root = tmp_path / "results"
    ref = make_scores(1, n=200, sep=0.6)
    worse = ref.copy()
    rng = np.random.default_rng(7)
    worse["score"] = np.clip(0.25 + 0.1 * worse["label"] + rng.normal(0, 0.2, 200), 0, 1)
    same = ref.copy()
    same["score"] = np.clip(ref["score"] + rng.normal(0, 0.01, 200), 0, 1)
    for det, df in (("ref", ref), ("worse", worse), ("same", same)):
        write_run(root, det, "intra", scores=df)
    return root, {"ref": ref, "worse": worse, "same": same}


def test_compare_marks_what_differs_and_only_that(three):
    root, frames = three
    t = build_table(1, collect(root), published=False, compare="ref")
    worse, same, ref = (row_of(t, d) for d in ("worse", "same", "ref"))
    expect = significance.delong(frames["ref"]["label"], frames["worse"]["score"],
                                 frames["ref"]["score"]).p
    assert worse.cells["auc"].p == pytest.approx(expect)
    assert worse.cells["auc"].significant and worse.cells["acc"].p is not None
    assert not same.cells["auc"].significant and same.cells["auc"].p > 0.05
    assert all(c.p is None and not c.significant for c in ref.cells.values())
    md = md_rows(render(t, "markdown"))
    col = md["__header__"].index("AUC")
    assert "\\*" in md["worse"][col]
    assert "\\*" not in md["same"][col]
    assert any("differs from ref's value" in n and "DeLong" in n for n in t.footnotes)
    rows = {r["Method"]: r for r in csv.DictReader(io.StringIO(render(t, "csv")))}
    assert float(rows["worse"]["AUC p"]) == pytest.approx(expect)
    assert rows["ref"]["AUC p"] == ""


def test_compare_needs_the_same_test_videos(tmp_path):
    root = tmp_path / "results"
    write_run(root, "ref", "intra", scores=make_scores(1, n=60))
    write_run(root, "other", "intra", scores=make_scores(2, n=60))  # other ids
    t = build_table(1, collect(root), published=False, compare="ref")
    assert row_of(t, "other").cells["auc"].p is None
    assert any("not tested against ref: the two runs scored different test videos" in n
               for n in t.footnotes)


def test_compare_refuses_what_it_cannot_do(three):
    root, _ = three
    with pytest.raises(ConfigError, match="no computed row of nobody in Table 1"):
        build_table(1, collect(root), compare="nobody")
    with pytest.raises(ConfigError, match="--aggregate latest"):
        build_table(1, collect(root), compare="ref", aggregate="mean")


def test_compare_on_the_command_line(three):
    root, _ = three
    r = run_cli(["table", "-t", "1", "--results", str(root), "--compare", "ref",
                 "--format", "markdown", "--no-published"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "\\*" in r.stdout and "paired DeLong test" in r.stdout
    r = run_cli(["table", "-t", "1", "--results", str(root), "--compare", "nobody"])
    assert r.exit_code == 2 and "no computed row of nobody" in r.stderr


def test_a_single_computed_row_is_not_all_bold(tmp_path):
    root = tmp_path / "results"
    write_run(root, "only", "intra", scores=make_scores(1, n=60))
    t = build_table(1, collect(root), published=False)
    assert all(c.rank == 0 for c in row_of(t, "only").cells.values())
    assert "textbf" not in render(t, "latex")


def latex_of(root, ci=True):
    return render(build_table(3, collect(root), ci=ci), "latex")


def test_latex_notes_are_paragraphs_not_line_breaks(tmp_path):
    root = tmp_path / "results"
    write_run(root, "a_b", "cross-dataset", scores=make_scores(1, n=60))
    tex = latex_of(root)
    notes = tex.split(r"\footnotesize", 1)[1]
    assert "[lo, hi]" in notes
    # no note may follow a \\ : "\\ [lo, hi]" would be read as \\[length]
    assert "\\\\" not in notes
    assert r"a\_b" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX engine installed")
def test_latex_compiles(tmp_path):
    root = tmp_path / "results"
    write_run(root, "a_b", "cross-dataset", scores=make_scores(1, n=60))
    doc = ("\\documentclass{article}\\usepackage{booktabs}\\usepackage{amssymb}"
           "\\usepackage[T1]{fontenc}\\usepackage[utf8]{inputenc}\\begin{document}\n"
           + latex_of(root) + "\\end{document}\n")
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]


@pytest.mark.parametrize("ci", [False, True])
def test_a_wide_table_is_split_to_fit_the_terminal(tmp_path, ci):
    from rich.console import Console

    from avbench.tables import build_and_render
    from tests.test_tables import FOLDS

    root = tmp_path / "results"
    for i, fold in enumerate(FOLDS):
        write_run(root, "a-long-detector-name", "cross-manip", fold, scores=make_scores(i))
    out = build_and_render(root, 2, "rich", ci=ci, width=100)
    console = Console(record=True, width=100)
    console.print(out)
    text = console.export_text()
    assert max(len(ln) for ln in text.splitlines()) <= 100
    assert "Table 2 (continued)" in text
    for group in (*FOLDS, "AVG-FV"):
        assert group in text
    # every row appears in each part, and the notes come once, after the parts
    parts = text.count("Method")
    assert parts >= 2
    assert text.count("│ avprompt (paper)") == text.count("│ a-long-detector-name") == parts
    assert text.count("Rows marked 'reported'") == 1
