"""Scores computed elsewhere, recorded as a run (``avbench score``).

A method trained outside avbench enters the tables through a per-video score file: a CSV
with the columns ``id`` and ``score`` (and optionally ``score_v``, ``score_a``), one row per
video of the protocol's test split, ids as in a run's ``scores.csv``. The file is checked
against the test split (every test video present, no other and none twice, every score a
finite number in [0, 1]); each problem is one line naming the file, the line and what is
wrong, and nothing is written unless the whole file is right.

The record is a run folder like any other (``scores.csv``, ``metrics.json``, ``run.json``,
written atomically, ``run.json`` last), with ``plugin`` ``external`` and the score file's
sha256 as config hash, so its identity says where the numbers come from. Like every run's,
its ``run.json`` holds the sha256 of the ``scores.csv`` written (``scores_sha256``), which the
tables' verifier checks: an edited score gives no cell.
"""

from __future__ import annotations

import csv
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbench.errors import AvbenchError
from avbench.results import sha256_bytes as sha256_bytes  # the one sha256 of results

EXTERNAL_PLUGIN = "external"
COLUMNS = ("id", "score", "score_v", "score_a")
MODALITIES = ("AV", "A", "V")  # as a registered detector's (Table 3's Modality column)
_SHOWN = 20  # problem lines printed; a summary line says how many more


class ScoreFileError(AvbenchError):
    """A score file that does not fit the test split; one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = self.problems[:_SHOWN]
        if len(self.problems) > _SHOWN:
            shown.append(f"... and {len(self.problems) - _SHOWN} more problem(s)")
        super().__init__("\nerror: ".join(shown))  # the CLI prefixes the first line


@dataclass
class ExternalOptions:
    protocol: str
    scores: Path
    name: str
    fold: str | None = None
    modality: str = "AV"
    data: list[str] = field(default_factory=list)
    out: Path = Path("results")
    n_boot: int = 1000
    seed: int = 0
    command: list[str] = field(default_factory=list)


def _header(path: Path, header: list[str]) -> list[str]:
    cols = [c.strip() for c in header]
    expected = "expected id,score[,score_v][,score_a]"
    for c in cols:
        if c not in COLUMNS:
            raise ScoreFileError([f"{path}, line 1: unknown column {c!r}; {expected}"])
        if cols.count(c) > 1:
            raise ScoreFileError([f"{path}, line 1: column {c!r} appears twice; {expected}"])
    for c in ("id", "score"):
        if c not in cols:
            raise ScoreFileError([f"{path}, line 1: no {c!r} column; {expected}"])
    return cols


def _value(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) and 0.0 <= v <= 1.0 else None


def read_score_file(path: Path) -> tuple[bytes, list[str], dict[str, tuple[int, dict]],
                                         list[str]]:
    """``(file bytes, columns, {id: (line, {column: score})}, problems)``: ``problems`` names
    every malformed line (wrong field count, empty or repeated id, a score that is not a
    finite number in [0, 1]); a file that cannot be read as a table at all (no header, a bad
    one, not UTF-8) raises :class:`ScoreFileError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AvbenchError(f"--scores {path}: cannot be read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ScoreFileError([f"{path}: not UTF-8 text (byte {e.start})"]) from None
    lines = [(n, row) for n, row in enumerate(csv.reader(text.splitlines()), start=1) if row]
    if not lines:
        raise ScoreFileError([f"{path}: empty; expected a header id,score"])
    cols = _header(path, lines[0][1])
    rows: dict[str, tuple[int, dict]] = {}
    problems: list[str] = []
    for n, row in lines[1:]:
        if len(row) != len(cols):
            problems.append(f"{path}, line {n}: {len(row)} field(s), the header has {len(cols)}")
            continue
        rec = dict(zip(cols, (v.strip() for v in row), strict=True))
        vid = rec.pop("id")
        if not vid:
            problems.append(f"{path}, line {n}: no id")
            continue
        if vid in rows:
            problems.append(f"{path}, line {n}: id {vid!r} again (first on line {rows[vid][0]})")
            continue
        values = {c: _value(v) for c, v in rec.items()}
        bad = [c for c, v in values.items() if v is None]
        for c in bad:
            problems.append(f"{path}, line {n}: {c} of {vid!r} is {rec[c] or 'empty'!r}; "
                            f"scores must be finite numbers in [0, 1]")
        rows[vid] = (n, values)
    return data, cols, rows, problems


def check_against_split(path: Path, rows: dict[str, tuple[int, dict]], split: Any,
                        where: str) -> list[str]:
    """What keeps the rows from being the test split: ids that are no test video, test
    videos without a row."""
    test_ids = [r.id for r in split.records]
    if not rows:
        return [f"{path}: no rows below the header; expected one per test video of {where} "
                f"({len(test_ids)})"]
    known = set(test_ids)
    problems = [f"{path}, line {n}: id {vid!r} is not a test video of {where}"
                for vid, (n, _) in rows.items() if vid not in known]
    missing = [i for i in test_ids if i not in rows]
    return problems + [f"{path}: no row for test video {i!r} of {where}" for i in missing]


def score_frame(split: Any, rows: dict[str, tuple[int, dict]], cols: list[str]) -> Any:
    """The run's ``scores.csv`` frame: the test split's records in split order, with the
    file's scores."""
    import pandas as pd

    recs = split.records
    frame: dict[str, list[Any]] = {k: [getattr(r, k) for r in recs] for k in (
        "id", "dataset", "label", "label_v", "label_a", "type", "method", "category", "group")}
    for c in cols:
        if c != "id":
            frame[c] = [rows[r.id][1][c] for r in recs]
    return pd.DataFrame(frame)


def record_external(opts: ExternalOptions, plugins: Any) -> Path:
    """Check ``opts.scores`` against the protocol's test split and write it as a run folder
    under ``opts.out``; returns the folder."""
    from avbench.commands.protocols import resolve_indexes
    from avbench.protocols import build_splits, check_vocabulary, get_protocol

    if opts.name in plugins.detectors:
        raise AvbenchError(f"--name {opts.name!r} is a registered detector; external scores "
                           f"need a name of their own")
    if opts.modality not in MODALITIES:
        raise AvbenchError(f"--modality {opts.modality!r}: expected one of "
                           f"{', '.join(MODALITIES)} (what the scores look at)")
    protocol = get_protocol(opts.protocol, plugins)
    protocol.check_fold(opts.fold)
    if protocol.fold_names and opts.fold is None:
        raise AvbenchError(f"--fold: protocol {protocol.name} has folds "
                           f"({', '.join(protocol.fold_names)}); give the fold these scores "
                           f"are of")
    data, cols, rows, problems = read_score_file(opts.scores)
    indexes = resolve_indexes(protocol, opts.data, plugins, required=True)
    check_vocabulary(protocol, opts.fold, {n: plugins.dataset(n).load()
                                           for n in protocol.datasets})
    splits = build_splits(protocol, opts.fold, indexes)
    where = protocol.name + (f" fold {opts.fold}" if opts.fold else "")
    problems += check_against_split(opts.scores, rows, splits["test"], where)
    if problems:  # every problem of the file at once, malformed lines first
        raise ScoreFileError(problems)
    df = score_frame(splits["test"], rows, cols)
    return _write(opts, protocol, splits["test"], indexes, df, sha256_bytes(data))


def _record(opts: ExternalOptions, protocol: Any, test: Any, indexes: dict, n: int,
            file_sha: str) -> Any:
    import avbench
    from avbench.engine.run import (
        _git_commit,
        _now,
        datasets_entry,
        portable_command,
        protocol_entry,
    )
    from avbench.results import RunRecord

    now = _now()
    return RunRecord(
        status="incomplete", created=now, finished=now,
        command=portable_command(opts.command),
        detector_info={"name": opts.name, "plugin": EXTERNAL_PLUGIN,
                       "description": "scores computed outside avbench",
                       "modality": opts.modality,
                       "config": {}, "config_hash": file_sha,
                       "external": {"scores_file": Path(opts.scores).name, "sha256": file_sha}},
        protocol_info=protocol_entry(protocol, opts.fold),
        splits={"test": {**test.summary(), "spec": test.spec.to_dict(), "n_used": n}},
        datasets=datasets_entry(indexes),
        seed=opts.seed, device=EXTERNAL_PLUGIN, git_commit=_git_commit(),
        versions={"avbench": avbench.__version__, "python": platform.python_version(),
                  "plugin": {"name": EXTERNAL_PLUGIN}},
        n_test_videos=n,
    )


def _write(opts: ExternalOptions, protocol: Any, test: Any, indexes: dict, df: Any,
           file_sha: str) -> Path:
    from avbench.engine.run import write_results
    from avbench.results import RunLock, new_run_id, run_folder

    record = _record(opts, protocol, test, indexes, len(df), file_sha)
    run_dir = run_folder(opts.out, protocol.name, opts.fold, opts.name, new_run_id())
    record.run_id, record.path = run_dir.name, run_dir
    with RunLock(run_dir):
        write_results(run_dir, df, n_boot=opts.n_boot, seed=opts.seed, record=record)
        record.status = "complete"
        record.write(run_dir)
    return run_dir
