"""Check a run folder against its own record before a table uses it.

A table shows only numbers it can vouch for. Before a run's ``scores.csv`` reaches a cell,
:func:`verify_run` checks that

- ``run.json`` has the fields a table relies on, with the right types;
- the protocol, fold and detector it names are those of the folder it lies in
  (``<protocol>/<fold or all>/<detector>/<run-id>/``), so a record cannot fill another
  table's cell;
- the protocol it names is registered now, with the same version and the same file hash
  (a protocol file edited since the run, even under the same name and version, gives no cell);
- ``scores.csv`` has unique ids that are exactly the recorded test split: their
  :func:`~avbench.protocols.split_hash`, together with the test videos the run skipped as
  undecodable, equals ``splits.test.hash``; its row count equals ``n_test_videos``;
- ``scores.csv`` is byte for byte the file the run wrote: its sha256 is the one ``run.json``
  records (``scores_sha256``); a run without it (an older avbench's) is left out too. This
  catches an edited or damaged file, not someone who also rewrites ``run.json``;
- labels are 0 or 1, and every score (``score``, and ``score_v`` / ``score_a`` where the
  run wrote them) is a finite number in [0, 1]; an empty or NaN score is a reason, never a
  row dropped in silence.

Every check answers with ``None`` (fine) or one line saying why the run cannot be used;
nothing here raises on a bad run. :func:`read_run_json` and :func:`read_scores` read the two
files without coercing anything, so that what is checked is what is on disk.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avbench.results import ALL_FOLDS

if TYPE_CHECKING:
    from pandas import DataFrame

    from avbench.protocols import Protocol

LABEL_COLUMNS = ("label", "label_v", "label_a")
SCORE_COLUMNS = ("score", "score_v", "score_a")
_REQUIRED_COLUMNS = ("id", "label", "score")


def _q(value: Any, limit: int = 60) -> str:
    """A value quoted for a one-line message (long values cut, line breaks escaped)."""
    text = repr(value) if isinstance(value, str) else str(value)  # numpy: 'nan', not np.float64
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------------------------
# Reading


def read_run_json(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``run.json`` of ``run_dir`` as a dict, or ``(None, reason)``. Never raises for a file
    that is missing, unreadable, not UTF-8, not JSON, or not a JSON object."""
    f = Path(run_dir) / "run.json"
    try:
        text = f.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None, "no run.json"
    except UnicodeDecodeError as e:
        return None, f"run.json is not UTF-8 text (byte {e.start})"
    except OSError as e:
        return None, f"run.json cannot be read ({e.strerror or type(e).__name__})"
    try:
        info = json.loads(text)
    except json.JSONDecodeError as e:
        from avbench.results import json_problem

        return None, f"run.json is not valid JSON ({json_problem(e)})"
    except RecursionError:
        return None, "run.json is not valid JSON (nested too deeply)"
    if not isinstance(info, dict):
        return None, f"run.json holds a JSON {type(info).__name__}, not an object"
    return info, None


def read_scores(run_dir: Path) -> tuple[DataFrame | None, str | None]:
    """``scores.csv`` of ``run_dir`` with every column as text (nothing coerced, nothing
    dropped: an empty field is ``""``), or ``(None, reason)``."""
    import pandas as pd

    f = Path(run_dir) / "scores.csv"
    try:
        df = pd.read_csv(f, dtype=str, keep_default_na=False, na_filter=False,
                         encoding="utf-8")
    except FileNotFoundError:
        return None, "no scores.csv"
    except pd.errors.EmptyDataError:
        return None, "scores.csv is empty"
    except UnicodeDecodeError as e:
        return None, f"scores.csv is not UTF-8 text (byte {e.start})"
    except OSError as e:
        return None, f"scores.csv cannot be read ({e.strerror or type(e).__name__})"
    except Exception as e:  # pandas raises many kinds for malformed files
        return None, f"scores.csv is unreadable ({_one_line(str(e))})"
    # rows with fewer fields than the header leave NaN even with na_filter off
    return df.fillna(""), None


# --------------------------------------------------------------------------------------------
# Checks


def check_record(run_dir: Path, info: Mapping[str, Any]) -> str | None:
    """The fields of ``run.json`` every table reads, and agreement with the folder path;
    ``None`` when fine. Needs no other file (used for runs that are left out anyway)."""
    det = info.get("detector")
    if not isinstance(det, Mapping):
        return "run.json has no 'detector' object"
    if not isinstance(det.get("name"), str) or not det["name"]:
        return "run.json has no detector name"
    proto = info.get("protocol")
    if not isinstance(proto, Mapping):
        return "run.json has no 'protocol' object"
    for key in ("name", "version"):
        if not isinstance(proto.get(key), str) or not proto[key]:
            return f"run.json has no protocol {key}"
    fold = proto.get("fold")
    if fold is not None and (not isinstance(fold, str) or not fold):
        return f"run.json's protocol fold {_q(fold)} is not a fold name"
    status = info.get("status", "incomplete")
    if not isinstance(status, str):
        return f"run.json's status {_q(status)} is not a string"
    for key in ("created", "finished"):
        if info.get(key) is not None and not isinstance(info[key], str):
            return f"run.json's {key!r} {_q(info[key])} is not a string"

    parts = Path(run_dir).parts
    if len(parts) < 4:
        return "the folder is not <protocol>/<fold or all>/<detector>/<run-id>"
    p_dir, f_dir, d_dir, r_dir = parts[-4:]
    if proto["name"] != p_dir:
        return f"run.json names protocol {_q(proto['name'])} but the folder is under {_q(p_dir)}"
    if (fold or ALL_FOLDS) != f_dir:
        return f"run.json names fold {_q(fold or ALL_FOLDS)} but the folder is under {_q(f_dir)}"
    if det["name"] != d_dir:
        return f"run.json names detector {_q(det['name'])} but the folder is under {_q(d_dir)}"
    run_id = info.get("run_id")
    if run_id not in (None, "") and run_id != r_dir:
        return f"run.json names run id {_q(run_id)} but the folder is {_q(r_dir)}"
    return None


def check_protocol(info: Mapping[str, Any], protocol: Protocol | None) -> str | None:
    """The run's protocol is the one registered now: same name, version and file hash, and
    a fold it has. ``protocol`` is the registered protocol of the name the run records
    (``None`` when none is registered by that name)."""
    proto = info["protocol"]
    name, version, fold = proto["name"], proto["version"], proto.get("fold")
    if protocol is None:
        return f"protocol {_q(name)} is not registered now, so the run cannot be checked"
    if protocol.name != name:
        return f"run.json names protocol {_q(name)}, checked against {_q(protocol.name)}"
    if version != protocol.version:
        return (f"run.json records protocol {name} version {_q(version)}, but the registered "
                f"{name} is version {_q(protocol.version)}")
    recorded = proto.get("file_hash")
    if not isinstance(recorded, str) or not recorded:
        return f"run.json records no file hash of protocol {name}"
    if recorded != protocol.file_hash:
        return (f"run.json records protocol file hash {recorded}, but the registered {name} "
                f"{version} has file hash {protocol.file_hash} (the file was edited since "
                f"the run)")
    if protocol.folds:
        if fold is None:
            return f"run.json names no fold, but protocol {name} has folds"
        if fold not in protocol.folds:
            return f"protocol {name} has no fold {_q(fold)}"
    elif fold is not None:
        return f"run.json names fold {_q(fold)}, but protocol {name} has no folds"
    return None


def _numbers(column: Any) -> Any:
    """A column as floats (NaN where a value is empty or not a number)."""
    import pandas as pd

    return pd.to_numeric(column.map(lambda v: v.strip() if isinstance(v, str) else v),
                         errors="coerce").astype(float)


def _first_bad(df: DataFrame, column: str, bad: Any, what: str) -> str:
    i = int(bad.to_numpy().nonzero()[0][0])
    n = int(bad.sum())
    raw = df[column].iloc[i]
    shown = "empty" if isinstance(raw, str) and not raw.strip() else _q(raw)
    more = f" ({n} rows in all)" if n > 1 else ""
    return f"scores.csv: {column} of {_q(str(df['id'].iloc[i]), 200)} is {shown}; {what}{more}"


def check_scores(info: Mapping[str, Any], scores: DataFrame) -> str | None:
    """``scores.csv`` (as read by :func:`read_scores`, or any frame with its columns)
    against the record: ids, labels, scores, row count and test-split hash."""
    missing = [c for c in _REQUIRED_COLUMNS if c not in scores.columns]
    if missing:
        return f"scores.csv has no column(s) {', '.join(missing)}"
    ids = scores["id"].map(lambda v: v if isinstance(v, str) else "" if v is None
                           or (isinstance(v, float) and math.isnan(v)) else str(v))
    return _check_ids(ids) or _check_values(scores) or _check_count(info, scores) \
        or _check_split(info, scores, ids)


def _check_ids(ids: Any) -> str | None:
    """Every row has an id, and no id appears twice."""
    if (ids == "").any():
        row = int((ids == "").to_numpy().nonzero()[0][0])
        return f"scores.csv: row {row + 1} has no id"
    dup = ids[ids.duplicated()]
    if len(dup):
        first = dup.iloc[0]
        return (f"scores.csv: id {_q(first, 200)} appears {int((ids == first).sum())} times "
                f"({dup.nunique()} duplicated id(s) in all)")
    return None


def _check_values(scores: DataFrame) -> str | None:
    """Labels are 0 or 1; scores finite numbers in [0, 1] (a branch's column may be empty)."""
    for col in LABEL_COLUMNS:
        if col in scores.columns:
            bad = ~_numbers(scores[col]).isin((0.0, 1.0))
            if bad.any():
                return _first_bad(scores, col, bad, "labels must be 0 or 1")
    for col in SCORE_COLUMNS:
        if col not in scores.columns:
            continue
        raw = scores[col]
        empty = raw.map(lambda v: (isinstance(v, str) and not v.strip()) or v is None
                        or (isinstance(v, float) and math.isnan(v)))
        if col != "score" and empty.all():
            continue  # the run wrote no scores of this branch
        bad = ~_numbers(raw).between(0.0, 1.0)  # False for NaN and ±inf too
        if bad.any():
            return _first_bad(scores, col, bad, "scores must be finite numbers in [0, 1]")
    return None


def _test_split(info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    splits = info.get("splits")
    test = splits.get("test") if isinstance(splits, Mapping) else None
    return test if isinstance(test, Mapping) else None


def _check_count(info: Mapping[str, Any], scores: DataFrame) -> str | None:
    """One row per test video that run.json counts."""
    expected, test = info.get("n_test_videos"), _test_split(info)
    if expected is None and info.get("status") != "complete" and test is not None:
        expected = test.get("n_used")  # an incomplete run may stop before the count
    if expected is None:
        return "run.json records no n_test_videos"
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
        return f"run.json's n_test_videos {_q(expected)} is not a count"
    if len(scores) != expected:
        return f"scores.csv has {len(scores)} rows, run.json records {expected} test videos"
    return None


def _check_split(info: Mapping[str, Any], scores: DataFrame, ids: Any) -> str | None:
    """The scored ids, with the test videos run.json lists as skipped, hash to the recorded
    test split."""
    from avbench.protocols import split_hash
    from avbench.records import VideoRecord

    test = _test_split(info)
    if test is None:
        return "run.json records no test split"
    recorded = test.get("hash")
    if not isinstance(recorded, str) or not recorded:
        return "run.json records no test split hash"
    dataset = test.get("dataset")
    if "dataset" in scores.columns:
        datasets = scores["dataset"].map(str)
    elif isinstance(dataset, str):
        datasets = [dataset] * len(ids)
    else:
        return "scores.csv has no dataset column and run.json no test split dataset"
    keys = list(zip(datasets, ids, strict=True))
    skipped = info.get("skipped_media")
    items = skipped.get("items", []) if isinstance(skipped, Mapping) else []
    if not isinstance(items, list):
        return "run.json's skipped_media items are not a list"
    for item in items:
        if isinstance(item, Mapping) and item.get("split") == "test":
            if not isinstance(item.get("id"), str) or not isinstance(dataset, str):
                return "run.json lists a skipped test video without id or test split dataset"
            keys.append((dataset, item["id"]))
    records = [VideoRecord(id=i, dataset=d, label=0, label_v=0, label_a=0) for d, i in keys]
    found = split_hash(records)  # reads only each record's dataset and id
    if found != recorded:
        n_skipped = len(keys) - len(ids)
        extra = f" with the {n_skipped} skipped test video(s)" if n_skipped else ""
        return (f"scores.csv's ids{extra} are not the recorded test split (split hash "
                f"{found}, run.json records {recorded})")
    return None


SCORES_EDITED = ("scores.csv was edited or damaged since the run wrote it (sha256 differs "
                 "from run.json)")
SCORES_UNHASHED = ("run.json records no sha256 of scores.csv (made by an older avbench): run "
                   "it again")


def check_scores_file(run_dir: Path, info: Mapping[str, Any]) -> str | None:
    """``scores.csv`` is the file the run wrote: its sha256 is the ``scores_sha256`` that
    ``run.json`` records (every writer of a run records it, external scores included). This
    catches an edited or damaged file, not one whose ``run.json`` was rewritten to match."""
    from avbench.results import sha256_bytes

    recorded = info.get("scores_sha256")
    if recorded is None:
        if info.get("status") != "complete":  # (tables read it with --include-incomplete)
            return "run.json records no sha256 of scores.csv (the run stopped before it did)"
        return SCORES_UNHASHED
    if not isinstance(recorded, str) or len(recorded) != 64:
        return f"run.json's scores_sha256 {_q(recorded)} is not a sha256"
    if sha256_bytes((Path(run_dir) / "scores.csv").read_bytes()) != recorded:
        return SCORES_EDITED
    return None


def check_external(run_dir: Path, info: Mapping[str, Any]) -> str | None:
    """A record of external scores (``avbench score``): its config hash is the score file's
    sha256 (its ``scores.csv`` is checked like every run's, :func:`check_scores_file`)."""
    from avbench.engine.external import EXTERNAL_PLUGIN

    det = info["detector"]
    if det.get("plugin") != EXTERNAL_PLUGIN:
        return None
    ext = det.get("external")
    if not isinstance(ext, Mapping) or ext.get("sha256") != det.get("config_hash"):
        return "run.json's external score-file sha256 is not its config hash"
    return None


def verify_run(run_dir: Path, info: Mapping[str, Any], scores: DataFrame,
               protocol: Protocol | None) -> str | None:
    """Every check of this module on one run: ``None`` when the run may fill a cell, else
    the reason (one line) it may not.

    ``info`` is ``run.json`` as a dict, ``scores`` ``scores.csv`` (preferably as read by
    :func:`read_scores`), ``protocol`` the protocol registered now under the name the run
    records (``None`` when there is none)."""
    for check in (lambda: check_record(run_dir, info),
                  lambda: check_protocol(info, protocol),
                  lambda: check_scores_file(run_dir, info),
                  lambda: check_scores(info, scores),
                  lambda: check_external(run_dir, info)):
        try:
            reason = check()
        except Exception as e:  # a check must never abort a table; say what broke
            reason = f"cannot be checked ({type(e).__name__}: {_one_line(str(e))})"
        if reason:
            return _one_line(reason)
    return None


def verify_folder(run_dir: Path, protocols: Mapping[str, Protocol], *,
                  include_incomplete: bool = False) -> tuple[dict[str, Any] | None, str | None]:
    """Read and check the run in ``run_dir``: ``(info, None)`` when it may be used,
    ``(None, reason)`` when not. ``protocols`` are the registered protocols by name.

    A run whose status is not ``complete`` is a run a table leaves out unless
    ``include_incomplete``; without it, only its ``run.json`` is checked (so that what a table
    says about it is safe to read)."""
    info, reason = read_run_json(run_dir)
    if info is None:
        return None, reason
    reason = check_record(run_dir, info)
    if reason:
        return None, _one_line(reason)
    if info.get("status") != "complete" and not include_incomplete:
        return info, None
    scores, reason = read_scores(run_dir)
    if scores is None:
        return None, reason
    reason = verify_run(run_dir, info, scores, protocols.get(info["protocol"]["name"]))
    return (None, reason) if reason else (info, None)
