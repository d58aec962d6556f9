"""The results store: one folder per run, written atomically.

Layout: ``<out>/<protocol>/<fold or all>/<detector>/<run-id>/`` with

- ``run.json``: what produced the result (detector + resolved config and its hash, protocol
  and version, split hashes, seed, dataset fingerprints, versions, git commit, device,
  timings, skipped media with reasons) and ``status`` (``incomplete`` until the very end);
- ``scores.csv``: one row per test video (see ``SCORE_COLUMNS``);
- ``metrics.json``: metrics with bootstrap intervals (``avbench table`` recomputes them from
  ``scores.csv`` and never trusts this file);
- ``state.pt`` / ``state.npz``: the detector's learned state; ``checkpoints/`` while training;
  ``epochs.jsonl``: per-epoch train/val figures.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees half a file, and ``run.json`` says ``complete`` only once everything else is
in place.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avbench.errors import ResultsError

SCHEMA_VERSION = 1
SCORE_COLUMNS = (
    "id", "dataset", "label", "label_v", "label_a", "type", "method", "category", "group",
    "score", "score_v", "score_a", "n_segments", "padded_frames",
)
ALL_FOLDS = "all"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # a full disk or a short write names no file: name the target
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return o.as_posix()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def run_folder(out: Path, protocol: str, fold: str | None, detector: str, run_id: str) -> Path:
    from avbench.paths import check_name, ensure_inside  # names are folders: checked, and
    # the folder, links resolved, must lie inside ``out``
    parts = [check_name(kind, v, error=ResultsError) for kind, v in (
        ("protocol", protocol), ("fold", fold or ALL_FOLDS), ("detector", detector),
        ("run id", run_id))]
    return ensure_inside(out, Path(*parts), what="run folder", error=ResultsError)


@dataclass
class RunRecord:
    """A run folder as found on disk."""

    path: Path
    info: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.info.get("status", "incomplete"))

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def detector(self) -> str:
        return str(self.info.get("detector", {}).get("name", self.path.parent.name))

    @property
    def protocol(self) -> str:
        return str(self.info.get("protocol", {}).get("name", ""))

    @property
    def protocol_version(self) -> str:
        return str(self.info.get("protocol", {}).get("version", ""))

    @property
    def fold(self) -> str:
        return str(self.info.get("protocol", {}).get("fold") or ALL_FOLDS)

    @property
    def finished(self) -> str:
        return str(self.info.get("finished") or self.info.get("created") or "")

    def scores(self) -> Any:
        return load_scores(self.path)


def read_run(path: Path) -> RunRecord:
    f = Path(path) / "run.json"
    try:
        info = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{f}: no run.json (not a run folder)") from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{f}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(info, dict):
        raise ResultsError(f"{f}: expected a JSON object")
    return RunRecord(Path(path), info)


def iter_runs(root: Path) -> Iterator[RunRecord | ResultsError]:
    """Every run folder below ``root`` (errors are yielded, not raised, so one bad folder
    does not hide the rest)."""
    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"results folder not found: {root}")
    for f in sorted(root.rglob("run.json")):
        try:
            yield read_run(f.parent)
        except ResultsError as e:
            yield e


def load_scores(run_dir: Path) -> Any:
    import pandas as pd

    f = Path(run_dir) / "scores.csv"
    try:
        df = pd.read_csv(f, dtype={"id": str, "category": str, "group": str, "method": str,
                                   "type": str, "dataset": str}, keep_default_na=False,
                         na_values={"score": [""], "score_v": [""], "score_a": [""]})
    except FileNotFoundError:
        raise ResultsError(f"{f}: missing") from None
    except Exception as e:  # pandas raises many kinds
        raise ResultsError(f"{f}: unreadable ({e})") from None
    missing = [c for c in ("id", "label", "score") if c not in df.columns]
    if missing:
        raise ResultsError(f"{f}: missing column(s) {', '.join(missing)}")
    for c in ("score_v", "score_a"):
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def write_scores(path: Path, df: Any) -> None:
    cols = [c for c in SCORE_COLUMNS if c in df.columns]
    atomic_write_text(Path(path), df[cols].to_csv(index=False, float_format="%.10g"))
