"""`avbench table` checks every run against its record before using it (issue 13, point 3).

Each test writes a good run and a tampered one of the same protocol, builds the table, and
checks that the tampered run is left out with one line naming its folder and the reason,
while the good run still fills its row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from avbench.protocols import load_protocol, split_hash
from avbench.records import VideoRecord
from avbench.results import RunRecord, read_run, run_folder, write_scores
from avbench.tables import build_table, collect
from avbench.tables.build import registered_protocols
from avbench.tables.verify import read_run_json, read_scores, verify_run
from avbench.testing import run_cli


def make_scores(seed: int, n: int = 40, *, branches: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 2
    noisy = np.clip(0.25 + 0.5 * label + rng.normal(0, 0.2, n), 0, 1)
    return pd.DataFrame({
        "id": [f"v{seed}/{i:03d}.mp4" for i in range(n)], "dataset": "synthetic",
        "label": label, "label_v": label, "label_a": 0,
        "type": "", "method": "", "category": "", "group": "",
        "score": noisy, "score_v": noisy if branches else np.nan,
        "score_a": np.clip(noisy - 0.1, 0, 1) if branches else np.nan,
        "n_segments": 3, "padded_frames": 0,
    })


def split_of(ids: list[str], dataset: str = "synthetic") -> dict:
    recs = [VideoRecord(id=i, dataset=dataset, label=0, label_v=0, label_a=0) for i in ids]
    return {"dataset": dataset, "n": len(ids), "hash": split_hash(recs)}


def write_run(root: Path, detector: str, protocol: str = "intra", fold: str | None = None, *,
              seed: int = 1, scores: pd.DataFrame | None = None,
              skipped: list[str] = ()) -> Path:
    """A run folder as ``avbench run`` writes it, for the protocol registered now.
    ``skipped``: ids of test videos the run could not decode (in the split, not scored)."""
    df = make_scores(seed) if scores is None else scores
    reg = registered_protocols()[protocol]
    path = run_folder(root, protocol, fold, detector, f"r{seed}")
    items = [{"split": "test", "id": i, "kind": "decode", "reason": "truncated"}
             for i in skipped]
    path.mkdir(parents=True, exist_ok=True)
    sha = write_scores(path / "scores.csv", df)
    RunRecord(
        run_id=path.name, status="complete", created="2025-01-01T00:00:00Z",
        finished="2025-01-01T00:00:00Z",
        detector_info={"name": detector, "modality": "AV", "tables": {}},
        protocol_info={"name": protocol, "version": reg.version, "fold": fold,
                       "file_hash": reg.file_hash},
        splits={"test": {**split_of([*df["id"], *skipped]), "n_used": len(df)}},
        skipped_media={"count": len(items), "by_kind": {}, "items": items},
        seed=seed, n_test_videos=len(df), scores_sha256=sha,
    ).write(path)
    return path


def retouch(path: Path, change: Callable[[RunRecord], None]) -> None:
    """Change a run's record through the typed record (so its identity block stays
    consistent and only the check under test can catch the change)."""
    rec = read_run(path)
    change(rec)
    rec.write(path)


def edit_scores(path: Path, change: Callable[[list[dict]], None], *,
                rehash: bool = True) -> None:
    """Edit scores.csv as text rows (values written exactly as given). With ``rehash`` the
    new file's sha256 goes into run.json, as if the run itself had written these values (so
    the content checks are what the test sees); without it run.json is left as it was, as a
    hand edit leaves it."""
    f = path / "scores.csv"
    rows = list(csv.DictReader(io.StringIO(f.read_text())))
    fields = list(rows[0])
    change(rows)
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    f.write_text(out.getvalue())
    if rehash:
        rehash_scores(path)


def rehash_scores(path: Path) -> None:
    """Record the sha256 of the scores.csv now in ``path`` in its run.json."""
    data = (path / "scores.csv").read_bytes()
    retouch(path, lambda rec: setattr(rec, "scores_sha256", hashlib.sha256(data).hexdigest()))


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def left_out(root: Path, number: int = 1, **kw) -> tuple[object, str]:
    """Table ``number`` of ``root`` with a good run ``good`` in it; returns the table and the
    single left-out line (asserting there is exactly one, and the good row is shown)."""
    runs = collect(root, **kw)
    t = build_table(number, runs, published=False)
    assert "good" in {r.detector for r in t.rows}, t.footnotes
    assert len(runs.problems) == 1, runs.problems
    line = runs.problems[0]
    assert "\n" not in line and line in t.footnotes
    return t, line


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_run(root, "good", seed=1)
    return root


def good_auc(t) -> float:
    row = next(r for r in t.rows if r.detector == "good")
    return row.cells["auc"].value


# --------------------------------------------------------------------------------------------


def test_well_formed_runs_pass_and_give_their_numbers(root: Path) -> None:
    write_run(root, "also", seed=2, scores=make_scores(2, branches=False))
    runs = collect(root)
    assert runs.problems == []
    t = build_table(1, runs, published=False)
    assert {r.detector for r in t.rows} == {"good", "also"}
    df = make_scores(1)
    assert good_auc(t) == pytest.approx(100 * roc_auc_score(df["label"], df["score"]))
    path = root / "intra" / "all" / "good" / "r1"
    info, reason = read_run_json(path)
    scores, reason2 = read_scores(path)
    assert reason is None and reason2 is None
    assert verify_run(path, info, scores, registered_protocols()["intra"]) is None


@pytest.mark.parametrize("value, shown", [("nan", "'nan'"), ("", "empty"), ("inf", "'inf'"),
                                          ("-inf", "'-inf'"), ("1.5", "'1.5'"),
                                          ("-0.2", "'-0.2'"), ("high", "'high'")])
def test_a_score_that_is_not_a_finite_number_in_0_1_leaves_the_run_out(root, value, shown):
    bad = write_run(root, "bad", seed=2)

    def change(rows):
        rows[3]["score"] = value
    edit_scores(bad, change)
    t, line = left_out(root)
    assert line == (f"left out {rel(root, bad)}: scores.csv: score of 'v2/003.mp4' is {shown}; "
                    f"scores must be finite numbers in [0, 1]")
    assert "bad" not in {r.detector for r in t.rows}


def test_nan_scores_are_never_dropped_in_silence(root: Path) -> None:
    """Half the scores NaN (written by pandas as empty fields): the run is left out, the
    count of bad rows is said, and no cell is computed from the other half."""
    df = make_scores(2)
    df.loc[df.index % 2 == 0, "score"] = np.nan
    bad = write_run(root, "bad", seed=2, scores=df)
    _, line = left_out(root)
    assert line.startswith(f"left out {rel(root, bad)}: scores.csv: score of 'v2/000.mp4' is "
                           f"empty") and "(20 rows in all)" in line


@pytest.mark.parametrize("column", ["score_v", "score_a"])
def test_branch_scores_are_checked_where_present(root: Path, column: str) -> None:
    bad = write_run(root, "bad", seed=2)

    def change(rows):
        rows[5][column] = "nan"
    edit_scores(bad, change)
    _, line = left_out(root)
    assert f"scores.csv: {column} of 'v2/005.mp4' is 'nan'" in line


def test_a_label_that_is_not_0_or_1_leaves_the_run_out(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)
    other = write_run(root, "bad2", seed=3)

    def fake(rows):
        rows[1]["label"] = "fake"

    def two(rows):
        rows[2]["label_v"] = "2"
    edit_scores(bad, fake)
    edit_scores(other, two)
    runs = collect(root)
    t = build_table(1, runs, published=False)
    assert {r.detector for r in t.rows} == {"good"}
    assert runs.problems == [
        f"left out {rel(root, bad)}: scores.csv: label of 'v2/001.mp4' is 'fake'; labels "
        f"must be 0 or 1",
        f"left out {rel(root, other)}: scores.csv: label_v of 'v3/002.mp4' is '2'; labels "
        f"must be 0 or 1",
    ]


def test_a_duplicated_id_leaves_the_run_out(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)

    def dup(rows):
        rows[7]["id"] = rows[6]["id"]
    edit_scores(bad, dup)
    _, line = left_out(root)
    assert line == (f"left out {rel(root, bad)}: scores.csv: id 'v2/006.mp4' appears 2 times "
                    f"(1 duplicated id(s) in all)")


EDITED = "scores.csv was edited or damaged since the run wrote it (sha256 differs from run.json)"
UNHASHED = ("run.json records no sha256 of scores.csv (made by an older avbench): run it "
            "again")


@pytest.mark.parametrize("how", ["flip labels", "perfect scores", "one digit", "truncated"])
def test_a_scores_csv_edited_or_damaged_since_the_run_leaves_it_out(root: Path, how) -> None:
    """Valid values, so no content check can tell: flipping every label (AUC 82.8 -> 17.2 in
    the review), scores set to 0.99/0.01 (-> 100.0), one digit changed, or the file cut
    after a row. Only the sha256 recorded in run.json catches them."""
    bad = write_run(root, "bad", seed=2)
    if how == "flip labels":
        edit_scores(bad, lambda rows: [r.update(label=str(1 - int(r["label"]))) for r in rows],
                    rehash=False)
    elif how == "perfect scores":
        edit_scores(bad, lambda rows: [r.update(score="0.99" if r["label"] == "1" else "0.01")
                                       for r in rows], rehash=False)
    elif how == "one digit":
        f = bad / "scores.csv"
        text = f.read_text()
        i = text.index("0.", text.index("\n") + 1) + 2
        f.write_text(text[:i] + ("1" if text[i] != "1" else "2") + text[i + 1:])
    else:
        f = bad / "scores.csv"
        f.write_bytes(f.read_bytes()[:-1])  # the last newline gone: same rows, same values
    t, line = left_out(root)
    assert line == f"left out {rel(root, bad)}: {EDITED}"
    assert "bad" not in {r.detector for r in t.rows}


def test_a_run_json_without_the_scores_sha256_leaves_it_out(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)
    retouch(bad, lambda rec: setattr(rec, "scores_sha256", None))
    _, line = left_out(root)
    assert line == f"left out {rel(root, bad)}: {UNHASHED}"
    info = json.loads((bad / "run.json").read_text())
    info.pop("scores_sha256")  # a run.json written before the field existed
    (bad / "run.json").write_text(json.dumps(info))
    _, line = left_out(root)
    assert line == f"left out {rel(root, bad)}: {UNHASHED}"


def test_a_scores_sha256_that_is_not_a_sha256_leaves_it_out(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)
    retouch(bad, lambda rec: setattr(rec, "scores_sha256", "abc"))
    _, line = left_out(root)
    assert line == f"left out {rel(root, bad)}: run.json's scores_sha256 'abc' is not a sha256"


def _hash_line(line: str, root: Path, bad: Path) -> None:
    assert re.fullmatch(rf"left out {re.escape(rel(root, bad))}: scores.csv's ids are not the "
                        r"recorded test split \(split hash [0-9a-f]{16}, run.json records "
                        r"[0-9a-f]{16}\)", line), line


def test_a_missing_id_leaves_the_run_out(root: Path) -> None:
    """A row removed, and the count in run.json changed to match: only the split hash can
    tell."""
    bad = write_run(root, "bad", seed=2)
    edit_scores(bad, lambda rows: rows.pop(4))

    def count(rec):
        rec.n_test_videos = 39
    retouch(bad, count)
    _, line = left_out(root)
    _hash_line(line, root, bad)


def test_an_extra_id_leaves_the_run_out(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)
    edit_scores(bad, lambda rows: rows.append({**rows[0], "id": "v2/intruder.mp4"}))

    def count(rec):
        rec.n_test_videos = 41
    retouch(bad, count)
    _, line = left_out(root)
    _hash_line(line, root, bad)


def test_an_id_of_another_split_leaves_the_run_out(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)

    def swap(rows):
        rows[0]["id"] = "v2/from-train.mp4"
    edit_scores(bad, swap)
    _, line = left_out(root)
    _hash_line(line, root, bad)


def test_skipped_test_videos_are_part_of_the_recorded_split(root: Path) -> None:
    """A test video the run could not decode is in the recorded split but not in
    scores.csv: the run is fine. Listed as skipped but scored anyway, it is not."""
    write_run(root, "skips", seed=2, skipped=["v2/broken.mp4"])
    assert collect(root).problems == []
    bad = write_run(root, "bad", seed=3, skipped=["v3/broken.mp4"])
    edit_scores(bad, lambda rows: rows.append({**rows[0], "id": "v3/broken.mp4"}))

    def count(rec):
        rec.n_test_videos = 41
    retouch(bad, count)
    runs = collect(root)
    assert len(runs.problems) == 1
    assert "scores.csv's ids with the 1 skipped test video(s) are not the recorded test split" \
        in runs.problems[0]


def test_a_count_other_than_the_record_leaves_the_run_out(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)

    def count(rec):
        rec.n_test_videos = 41
    retouch(bad, count)
    _, line = left_out(root)
    assert line == (f"left out {rel(root, bad)}: scores.csv has 40 rows, run.json records 41 "
                    f"test videos")


def test_a_run_json_of_another_protocol_fills_no_cell(root: Path) -> None:
    """A run.json under intra/ that claims cross-dataset: neither table 1 nor table 3 uses
    it."""
    bad = write_run(root, "bad", seed=2)
    other = registered_protocols()["cross-dataset"]

    def claim(rec):
        rec.protocol_info.update(name=other.name, version=other.version,
                                 file_hash=other.file_hash)
    retouch(bad, claim)
    _, line = left_out(root)
    assert line == (f"left out {rel(root, bad)}: run.json names protocol 'cross-dataset' but "
                    f"the folder is under 'intra'")
    t3 = build_table(3, collect(root), published=False)
    assert not t3.rows and line in t3.footnotes


def test_a_fold_or_detector_other_than_the_folder_fills_no_cell(root: Path) -> None:
    write_run(root, "good", "cross-manip", "RVFA", seed=5)
    bad = write_run(root, "bad", "cross-manip", "RVFA", seed=2)
    renamed = write_run(root, "bad2", "cross-manip", "RVFA", seed=3)

    def fold(rec):
        rec.protocol_info["fold"] = "FVRA-WL"

    def detector(rec):
        rec.detector_info["name"] = "good"
    retouch(bad, fold)
    retouch(renamed, detector)
    runs = collect(root)
    t = build_table(2, runs, published=False)
    assert {r.detector for r in t.rows} == {"good"}
    row = t.rows[0]
    assert row.cells["RVFA.auc"].present and not row.cells["FVRA-WL.auc"].present
    assert runs.problems == [
        f"left out {rel(root, bad)}: run.json names fold 'FVRA-WL' but the folder is under "
        f"'RVFA'",
        f"left out {rel(root, renamed)}: run.json names detector 'good' but the folder is "
        f"under 'bad2'",
    ]


def test_a_run_id_other_than_the_folder_is_named(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)
    retouch(bad, lambda rec: setattr(rec, "run_id", "r1"))
    _, line = left_out(root)
    assert line == f"left out {rel(root, bad)}: run.json names run id 'r1' but the folder is 'r2'"


def test_a_protocol_file_edited_since_the_run_gives_no_cell(root: Path, tmp_path: Path) -> None:
    """The registered intra.toml edited, keeping its name and version: its file hash is not
    the one the runs record, so none of them gives a cell."""
    src = registered_protocols()["intra"].path
    edited = tmp_path / "intra.toml"
    edited.write_text(src.read_text() + "\n# edited\n")
    proto = load_protocol(edited)
    assert (proto.name, proto.version) == ("intra", registered_protocols()["intra"].version)
    runs = collect(root, protocols={"intra": proto})
    t = build_table(1, runs, published=False)
    assert not t.rows
    recorded = registered_protocols()["intra"].file_hash
    assert runs.problems == [
        f"left out intra/all/good/r1: run.json records protocol file hash {recorded}, but the "
        f"registered intra {proto.version} has file hash {proto.file_hash} (the file was "
        f"edited since the run)"]
    assert runs.problems[0] in t.footnotes


def test_a_recorded_protocol_hash_or_version_other_than_the_registered_leaves_it_out(
        root: Path) -> None:
    bad = write_run(root, "bad", seed=2)
    old = write_run(root, "bad2", seed=3)
    unhashed = write_run(root, "bad3", seed=4)

    def rehash(rec):
        rec.protocol_info["file_hash"] = "0123456789abcdef"

    def version(rec):
        rec.protocol_info["version"] = "0.9"

    def nohash(rec):
        rec.protocol_info.pop("file_hash")
    retouch(bad, rehash)
    retouch(old, version)
    retouch(unhashed, nohash)
    runs = collect(root)
    t = build_table(1, runs, published=False)
    assert {r.detector for r in t.rows} == {"good"}
    reg = registered_protocols()["intra"]
    assert runs.problems == [
        f"left out {rel(root, bad)}: run.json records protocol file hash 0123456789abcdef, "
        f"but the registered intra {reg.version} has file hash {reg.file_hash} (the file was "
        f"edited since the run)",
        f"left out {rel(root, old)}: run.json records protocol intra version '0.9', but the "
        f"registered intra is version '{reg.version}'",
        f"left out {rel(root, unhashed)}: run.json records no file hash of protocol intra",
    ]


def test_a_run_of_an_unregistered_protocol_is_named(root: Path) -> None:
    made = write_run(root, "bad", seed=2)
    rec = read_run(made)
    rec.protocol_info.update(name="mine")
    path = run_folder(root, "mine", None, "bad", made.name)
    rec.write(path)
    write_scores(path / "scores.csv", make_scores(2))
    shutil.rmtree(made)
    _, line = left_out(root)
    assert line == ("left out mine/all/bad/r2: protocol 'mine' is not registered now, so the "
                    "run cannot be checked")


@pytest.mark.parametrize("content, reason", [
    (b"\xff\xfe{\x00", "run.json is not UTF-8 text (byte 0)"),
    (b"{not json", "run.json is not valid JSON (Expecting property name enclosed in double "
                   "quotes at line 1, column 2)"),
    (b'{"status": "complete', "run.json is not valid JSON (Unterminated string starting at "
                             "line 1, column 12)"),
    (b"[1, 2]", "run.json holds a JSON list, not an object"),
    (b'{"status": "complete", "detector": "good", "protocol": "intra"}',
     "run.json has no 'detector' object"),
    (b'{"status": "complete", "detector": {"name": "bad"}, "protocol": {"name": "intra", '
     b'"version": 3}}', "run.json has no protocol version"),
    (b"[" * 100000, "run.json is not valid JSON"),
])
def test_an_undecodable_run_json_never_aborts_the_table(root, content, reason) -> None:
    bad = write_run(root, "bad", seed=2)
    (bad / "run.json").write_bytes(content)
    _, line = left_out(root)
    assert line.startswith(f"left out {rel(root, bad)}: {reason}"), line


@pytest.mark.parametrize("content, reason", [
    (None, "no scores.csv"),
    (b"", "scores.csv is empty"),
    (b"id,label\nv2/000.mp4,0\n", "scores.csv has no column(s) score"),
    (b"id,label,score\n\xff,0,0.5\n", "scores.csv is not UTF-8 text"),
])
def test_an_unreadable_scores_csv_is_named(root, content, reason) -> None:
    bad = write_run(root, "bad", seed=2)
    if content is None:
        (bad / "scores.csv").unlink()
    else:
        (bad / "scores.csv").write_bytes(content)
        rehash_scores(bad)  # as if written so by the run: the content is what is under test
    _, line = left_out(root)
    assert line.startswith(f"left out {rel(root, bad)}: {reason}"), line


def test_every_bad_run_at_once_one_line_each(root: Path) -> None:
    """Many kinds of bad run in one folder: the table is built, the good run's numbers are
    unchanged, and each bad run has exactly one line."""
    expected = good_auc(build_table(1, collect(root), published=False))
    bads = []
    for seed, tamper in enumerate([
        lambda p: edit_scores(p, lambda rows: rows[0].update(score="nan")),
        lambda p: edit_scores(p, lambda rows: rows[0].update(label="fake")),
        lambda p: edit_scores(p, lambda rows: rows[1].update(id=rows[0]["id"])),
        lambda p: (p / "run.json").write_bytes(b"\x80"),
        lambda p: retouch(p, lambda r: setattr(r, "n_test_videos", 3)),
    ], start=10):
        path = write_run(root, f"bad{seed}", seed=seed)
        tamper(path)
        bads.append(path)
    runs = collect(root)
    t = build_table(1, runs, published=False)
    assert {r.detector for r in t.rows} == {"good"}
    assert good_auc(t) == expected
    assert len(runs.problems) == len(bads)
    for path in bads:
        mine = [p for p in runs.problems if rel(root, path) in p]
        assert len(mine) == 1 and mine[0] in t.footnotes
    assert not any(math.isnan(c.value) for r in t.rows for c in r.cells.values()
                   if c.value is not None)


def test_the_command_prints_one_line_per_run_left_out_on_stderr(root: Path) -> None:
    bad = write_run(root, "bad", seed=2)
    edit_scores(bad, lambda rows: rows[0].update(score="inf"))
    (write_run(root, "broken", seed=3) / "run.json").write_bytes(b"\xff")
    r = run_cli(["table", "--table", "1", "--results", str(root), "--format", "markdown",
                 "--no-published"], env={"COLUMNS": "40"})  # one line each, never wrapped
    assert r.exit_code == 0, r.output
    assert "good" in r.stdout and "| bad" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert lines == [
        f"left out {rel(root, bad)}: scores.csv: score of 'v2/000.mp4' is 'inf'; scores must "
        f"be finite numbers in [0, 1]",
        "left out intra/all/broken/r3: run.json is not UTF-8 text (byte 0)",
    ]
    assert all(line in r.stdout for line in lines)  # also in the footnotes
    assert str(root) not in r.stderr


def test_verify_run_takes_the_raw_record_and_a_typed_frame(root: Path) -> None:
    """``verify_run`` works on run.json's dict and on a frame with numeric columns too (as
    ``results.load_scores`` gives): NaN there is a reason, not a dropped row."""
    path = root / "intra" / "all" / "good" / "r1"
    info = json.loads((path / "run.json").read_text())
    df = make_scores(1)
    reg = registered_protocols()["intra"]
    assert verify_run(path, info, df, reg) is None
    df.loc[3, "score"] = np.nan
    assert verify_run(path, info, df, reg) == (
        "scores.csv: score of 'v1/003.mp4' is nan; scores must be finite numbers in [0, 1]")
    assert verify_run(path, info, make_scores(1), None) == (
        "protocol 'intra' is not registered now, so the run cannot be checked")


def test_a_real_run_with_skipped_test_videos_passes_and_a_tampered_copy_does_not(
        synthetic_root: Path, tmp_path: Path) -> None:
    """What ``avbench run`` writes passes every check, also with a test video it could not
    decode (in the recorded split, not in scores.csv); one NaN in a copy leaves the copy
    out."""
    data = tmp_path / "FakeAVCeleb_v1.2"
    shutil.copytree(synthetic_root, data)
    rows = [line.split(",") for line in (data / "meta_data.csv").read_text().splitlines()[1:]]
    victim = next("/".join(r[9].split("/")[1:]) + "/" + r[8] for r in rows
                  if r[6] == "Caucasian (European)" and r[3] == "wav2lip")
    (data / victim).write_bytes(b"")
    out = tmp_path / "res"
    r = run_cli(["run", "-d", "sync-corr", "-p", "intra", "--data", f"fakeavceleb={data}",
                 "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    (run_dir,) = [p.parent for p in out.rglob("run.json")]
    assert [x["id"] for x in read_run(run_dir).skipped_media["items"]] == [victim]
    copy = run_dir.parent.parent / "sync-corr-copy" / run_dir.name
    shutil.copytree(run_dir, copy)
    retouch(copy, lambda rec: rec.detector_info.update(name="sync-corr-copy"))
    edit_scores(copy, lambda rows: rows[0].update(score="nan"))
    # the engine records the sha256 of what it wrote; a hand edit of a copy is caught by it
    rec = read_run(run_dir)
    assert rec.scores_sha256 == hashlib.sha256((run_dir / "scores.csv").read_bytes()).hexdigest()
    flipped = run_dir.parent.parent / "sync-corr-flipped" / run_dir.name
    shutil.copytree(run_dir, flipped)
    retouch(flipped, lambda rec: rec.detector_info.update(name="sync-corr-flipped"))
    edit_scores(flipped, lambda rows: [r.update(label=str(1 - int(r["label"]))) for r in rows],
                rehash=False)
    runs = collect(out)
    t = build_table(1, runs, published=False)
    assert {r.detector for r in t.rows} == {"sync-corr"}
    assert len(runs.problems) == 2
    assert runs.problems[0].startswith(f"left out {rel(out, copy)}: scores.csv: score of ")
    assert runs.problems[1] == f"left out {rel(out, flipped)}: {EDITED}"


def test_an_unhashed_incomplete_run_is_not_called_an_older_avbench(tmp_path):
    from avbench.tables.verify import SCORES_UNHASHED, check_scores_file

    assert check_scores_file(tmp_path, {"status": "complete"}) == SCORES_UNHASHED
    reason = check_scores_file(tmp_path, {"status": "incomplete"})
    assert reason and "stopped before" in reason and "older" not in reason
