"""``avbench score``: external per-video scores recorded as a run, checked and verified."""

from __future__ import annotations

import pytest

from avbench.engine.external import ExternalOptions, ScoreFileError, record_external
from avbench.metrics import metrics_from_frame
from avbench.plugins import get_plugins
from avbench.protocols import all_protocols, build_splits, get_protocol
from avbench.results import read_run
from avbench.tables.verify import verify_folder

DATA = ["fakeavceleb=synthetic"]


@pytest.fixture(scope="module")
def test_ids():
    from avbench.commands.protocols import resolve_indexes

    plugins = get_plugins()
    p = get_protocol("intra", plugins)
    split = build_splits(p, None, resolve_indexes(p, DATA, plugins, required=True))["test"]
    return [(r.id, r.label) for r in split.records]


def _record(tmp_path, text):
    f = tmp_path / "ext.csv"
    f.write_text(text)
    opts = ExternalOptions(protocol="intra", scores=f, name="ext", data=DATA,
                           out=tmp_path / "out")
    return record_external(opts, get_plugins())


def _good(ids):
    return "id,score\n" + "".join(f"{i},{0.3 + 0.4 * lab + 0.001 * n:.4f}\n"
                                  for n, (i, lab) in enumerate(ids))


def test_a_good_file_is_a_verified_external_run_with_its_metrics(tmp_path, test_ids):
    run_dir = _record(tmp_path, _good(test_ids))
    _info, reason = verify_folder(run_dir, all_protocols(get_plugins()))
    assert reason is None
    rec = read_run(run_dir)
    assert rec.identity.plugin == "external" and len(rec.identity.config_hash) == 64
    got = metrics_from_frame(rec.scores(), n_boot=0)
    assert got["auc"].value == pytest.approx(1.0)


def test_an_edited_scores_csv_is_rejected(tmp_path, test_ids):
    run_dir = _record(tmp_path, _good(test_ids))
    f = run_dir / "scores.csv"
    lines = f.read_text().splitlines()
    head, sep, _ = lines[1].rpartition(",")
    f.write_text("\n".join([lines[0], head + sep + "0.99", *lines[2:]]) + "\n")
    _, reason = verify_folder(run_dir, all_protocols(get_plugins()))
    assert reason and "edited" in reason


@pytest.mark.parametrize("edit, expected", [
    (lambda lines: lines[:-1], "no row for test video"),
    (lambda lines: [*lines, "nope.mp4,0.5"], "line {n}: id 'nope.mp4' is not a test video"),
    (lambda lines: [*lines, lines[1]], "again (first on line 2)"),
    (lambda lines: [*lines[:-1], lines[-1].split(",")[0] + ",nan"], "line {m}: score of"),
    (lambda lines: [*lines[:-1], lines[-1].split(",")[0] + ",1.5"], "finite numbers in [0, 1]"),
    (lambda lines: ["id,prob", *lines[1:]], "line 1: unknown column 'prob'"),
    (lambda lines: lines[:1], "no rows below the header; expected one per test video"),
])
def test_each_problem_is_one_line_naming_the_file_and_line(tmp_path, test_ids, edit, expected):
    lines = edit(_good(test_ids).splitlines())
    n, m = len(test_ids) + 2, len(test_ids) + 1
    with pytest.raises(ScoreFileError) as e:
        _record(tmp_path, "\n".join(lines) + "\n")
    assert e.value.exit_code == 2
    assert any(str(tmp_path / "ext.csv") in p and expected.format(n=n, m=m) in p
               for p in e.value.problems), e.value.problems
    if len(lines) == 1:  # a header alone is one problem, not one per test video
        assert len(e.value.problems) == 1
    assert not (tmp_path / "out").exists()


def test_every_problem_of_a_file_comes_in_one_pass(tmp_path, test_ids):
    """Malformed lines and rows that are not the test split are reported together, so a
    user fixes the file once (the split's problems used to appear only on a second try)."""
    lines = _good(test_ids).splitlines()
    first = lines[1].split(",")[0]
    lines = [*lines[:1], f"{first},1.5", *lines[2:-1], "nope.mp4,0.5"]
    with pytest.raises(ScoreFileError) as e:
        _record(tmp_path, "\n".join(lines) + "\n")
    said = " | ".join(e.value.problems)
    assert "line 2: score of" in said and "finite numbers in [0, 1]" in said, said
    assert "id 'nope.mp4' is not a test video" in said, said
    assert f"no row for test video {test_ids[-1][0]!r}" in said, said
    assert len(e.value.problems) == 3, said


@pytest.mark.slow
def test_the_cli_records_scores_that_table_3_shows_as_external_with_their_modality(tmp_path):
    """As a user would: ``avbench score`` then ``avbench table``; the row is marked external,
    carries the given modality, and the footnote says where its numbers come from."""
    from avbench.commands.protocols import resolve_indexes
    from avbench.testing import run_cli

    data = ["fakeavceleb=synthetic", "kodf=synthetic-kodf"]
    plugins = get_plugins()
    p = get_protocol("cross-dataset", plugins)
    split = build_splits(p, None, resolve_indexes(p, data, plugins, required=True))["test"]
    f = tmp_path / "outside.csv"
    f.write_text(_good([(r.id, r.label) for r in split.records]))
    out = tmp_path / "results"
    data_args = [a for d in data for a in ("--data", d)]
    got = run_cli(["score", "-p", "cross-dataset", "--scores", str(f), "--name", "outside",
                   "--modality", "V", *data_args, "--out", str(out)])
    assert got.exit_code == 0, got.stderr
    table = run_cli(["table", "--table", "3", "--format", "csv", "--results", str(out)])
    assert table.exit_code == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("outside,"))
    assert ",V," in row and ",external," in row
    md = run_cli(["table", "--table", "3", "--format", "markdown", "--results", str(out)])
    assert "recorded with `avbench score`" in md.stdout

    bad = run_cli(["score", "-p", "cross-dataset", "--scores", str(f), "--name", "o2",
                   "--modality", "AVX", *data_args, "--out", str(out)])
    assert bad.exit_code == 2 and "--modality 'AVX'" in bad.stderr
