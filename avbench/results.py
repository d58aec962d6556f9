"""The results store: one folder per run, written atomically.

Layout: ``<out>/<protocol>/<fold or all>/<detector>/<run-id>/`` with

- ``run.json``: what produced the result (detector + resolved config and its hash, protocol
  and version, split hashes, seed, dataset fingerprints, versions, git commit, device,
  timings, skipped media with reasons) and ``status`` (``incomplete`` until the very end);
- ``scores.csv``: one row per test video (see ``SCORE_COLUMNS``); its sha256 is in
  ``run.json`` (``scores_sha256``), so a table can tell an edited or damaged file;
- ``metrics.json``: metrics with bootstrap intervals (``avbench table`` recomputes them from
  ``scores.csv`` and never trusts this file);
- ``state.pt`` / ``state.npz``: the detector's learned state; ``checkpoints/`` while training;
  ``epochs.jsonl``: per-epoch train/val figures.

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees half a file, and ``run.json`` says ``complete`` only once everything else is
in place.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbench.errors import ResultsError
from avbench.io import atomic_write_bytes as atomic_write_bytes  # re-exported for callers
from avbench.io import atomic_write_text

SCHEMA_VERSION = 2  # 2: the identity block, error_kind; records are read strictly
SCORE_COLUMNS = (
    "id", "dataset", "label", "label_v", "label_a", "type", "method", "category", "group",
    "score", "score_v", "score_a", "n_segments", "padded_frames",
)
ALL_FOLDS = "all"


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


@dataclass(frozen=True)
class RunIdentity:
    """What makes two runs the same experiment (``run.json``'s ``identity`` block).

    ``--resume`` continues only a run of the same identity, and a table cell shows runs of one
    identity only (with ``--aggregate mean``: of one identity up to the seed). Every field is
    derived from the rest of the record (:meth:`RunRecord.identity`), so the block can never
    say something the record does not."""

    detector: str
    config_hash: str
    protocol: str
    protocol_version: str
    protocol_file_hash: str
    fold: str
    seed: int
    datasets: tuple[tuple[str, str], ...]  # (dataset name, fingerprint), sorted by name
    avbench: str
    plugin: str
    plugin_version: str
    #: for an evaluation-only run (``avbench eval``): the protocol and fold of the run whose
    #: saved state it scored, and a hash of that run's identity up to the seed, e.g.
    #: ``intra/all 3f2a...``; empty for a run that trained what it scored
    trained_on: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["datasets"] = dict(self.datasets)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "identity") -> RunIdentity:
        if not isinstance(d, dict):
            raise ValueError(f"{where} is not an object")
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "trained_on" and f.name not in d:  # records written before it
                kw[f.name] = ""
                continue
            if f.name not in d:
                raise ValueError(f"{where} has no {f.name!r}")
            v = d[f.name]
            if f.name == "seed":
                if not isinstance(v, int) or isinstance(v, bool):
                    raise ValueError(f"{where}.seed {v!r} is not an integer")
            elif f.name == "datasets":
                if not isinstance(v, dict) or not all(
                        isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
                    raise ValueError(f"{where}.datasets is not an object of fingerprints")
                v = tuple(sorted(v.items()))
            elif not isinstance(v, str):
                raise ValueError(f"{where}.{f.name} {v!r} is not a string")
            kw[f.name] = v
        return cls(**kw)

    def differences(self, other: RunIdentity) -> list[tuple[str, Any, Any]]:
        """``(field, mine, theirs)`` for every field that differs, in field order; datasets
        are compared per dataset (``datasets.<name>``)."""
        out: list[tuple[str, Any, Any]] = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a == b:
                continue
            if f.name == "datasets":
                da, db = dict(a), dict(b)
                for k in sorted(set(da) | set(db)):
                    if da.get(k) != db.get(k):
                        out.append((f"datasets.{k}", da.get(k), db.get(k)))
            else:
                out.append((f.name, a, b))
        return out

    def describe_differences(self, other: RunIdentity) -> str:
        """``"config_hash (ab12cd34 -> ef56ab78), seed (0 -> 1)"``: what ``other`` changes."""
        return ", ".join(f"{k} ({_short(a)} -> {_short(b)})"
                         for k, a, b in self.differences(other))

    def without_seed(self) -> RunIdentity:
        """The identity shared by the runs ``--aggregate mean`` averages over."""
        return dataclasses.replace(self, seed=-1)

    def label(self) -> str:
        """Short, for footnotes: ``config 1a2b3c4d, protocol intra v1``."""
        return (f"config {self.config_hash[:8] or '?'}, protocol {self.protocol} "
                f"v{self.protocol_version}"
                + (f", trained under {self.trained_on.split()[0]}" if self.trained_on else ""))


def _short(v: Any) -> str:
    if v is None or v == "":
        return "none"
    s = str(v)
    return s[:8] if len(s) > 12 and all(c in "0123456789abcdef" for c in s) else s


# JSON key -> (attribute, accepted types); order = order in run.json. A key missing from a
# run.json takes the field's default.
_FIELDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "schema": ("schema", (int,)),
    "run_id": ("run_id", (str,)),
    "status": ("status", (str,)),
    "created": ("created", (str,)),
    "command": ("command", (list,)),
    "detector": ("detector_info", (dict,)),
    "protocol": ("protocol_info", (dict,)),
    "splits": ("splits", (dict,)),
    "datasets": ("datasets", (dict,)),
    "seed": ("seed", (int,)),
    "device": ("device", (str,)),
    "world_size": ("world_size", (int,)),
    "torch_threads": ("torch_threads", (int, type(None))),
    "media": ("media", (dict,)),
    "git_commit": ("git_commit", (str, type(None))),
    "versions": ("versions", (dict,)),
    "resumed": ("resumed", (bool,)),
    "skipped_media": ("skipped_media", (dict, type(None))),
    "checkpoint": ("checkpoint", (dict, type(None))),
    "timings": ("timings", (dict, type(None))),
    "describe": ("describe", (dict, type(None))),
    "n_test_videos": ("n_test_videos", (int, type(None))),
    "scores_sha256": ("scores_sha256", (str, type(None))),
    "finished": ("finished", (str, type(None))),
    "error": ("error", (str, type(None))),
    "error_kind": ("error_kind", (str, type(None))),
}
STATUSES = ("incomplete", "complete", "failed")
# error_kind of a run that failed on a checkpoint it cannot read: --resume never picks it again
CHECKPOINT_ERROR = "checkpoint"


def json_problem(e: json.JSONDecodeError) -> str:
    """Where and what a JSON decoding error is: "Expecting value at line 3, column 9"."""
    msg = e.msg if e.msg.endswith(" at") else f"{e.msg} at"
    return f"{msg} line {e.lineno}, column {e.colno}"


@dataclass
class RunRecord:
    """``run.json``: one run, as written by ``avbench run`` and read by ``--resume`` and
    ``avbench table`` (through :meth:`to_json` / :meth:`from_json`, the same code both ways).

    JSON keys are those of the fields, except ``detector`` (``detector_info``: name, plugin,
    config, config_hash, input_spec, ...) and ``protocol`` (``protocol_info``: name, version,
    fold, file_hash, ...); ``identity`` is derived (:attr:`identity`), written for readers and
    checked against the rest when read. Keys this version does not know are kept in
    ``extra`` and written back unchanged. ``path`` is the run folder (not written).
    """

    run_id: str = ""
    status: str = "incomplete"
    created: str = ""
    command: list[str] = field(default_factory=list)
    detector_info: dict[str, Any] = field(default_factory=dict)
    protocol_info: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = ""
    world_size: int = 1
    #: torch's intra-op threads on the CPU: their count changes the last bits of the scores
    #: (docs/determinism.md); None for a detector without torch
    torch_threads: int | None = None
    #: how the prepared media were stored (``avbench.media.cache.cache_format()``)
    media: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    skipped_media: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    describe: dict[str, Any] | None = None
    n_test_videos: int | None = None
    #: sha256 of the ``scores.csv`` the run wrote (:func:`write_scores`); ``avbench table``
    #: leaves out a run whose file no longer has it (edited or damaged since)
    scores_sha256: str | None = None
    finished: str | None = None
    error: str | None = None
    error_kind: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False, repr=False)

    # -- identity -------------------------------------------------------------------------

    @property
    def identity(self) -> RunIdentity:
        det, proto = self.detector_info, self.protocol_info
        plugin = str(det.get("plugin") or "")
        pv = self.versions.get("plugin")
        plugin_version = str(pv.get("version") or "") if isinstance(pv, dict) else ""
        return RunIdentity(
            detector=str(det.get("name", "")),
            config_hash=str(det.get("config_hash") or ""),
            protocol=str(proto.get("name", "")),
            protocol_version=str(proto.get("version", "")),
            protocol_file_hash=str(proto.get("file_hash") or ""),
            fold=str(proto.get("fold") or ALL_FOLDS),
            seed=self.seed,
            datasets=tuple(sorted(
                (str(k), str(v.get("fingerprint") or "") if isinstance(v, dict) else "")
                for k, v in self.datasets.items())),
            avbench=str(self.versions.get("avbench") or ""),
            plugin=plugin,
            plugin_version=plugin_version,
            trained_on=self._trained_on(),
        )

    def _trained_on(self) -> str:
        """:attr:`RunIdentity.trained_on` from the ``source_run`` block of an evaluation-only
        record: two evaluations are one experiment up to the seed only if the runs they
        scored were."""
        src = self.extra.get("source_run") if self.extra.get("evaluation_only") else None
        ident = src.get("identity") if isinstance(src, dict) else None
        if not isinstance(ident, dict):
            return ""
        import hashlib

        up_to_seed = {k: v for k, v in ident.items() if k != "seed"}
        digest = hashlib.sha256(json.dumps(up_to_seed, sort_keys=True).encode()).hexdigest()
        return f"{ident.get('protocol', '?')}/{ident.get('fold', '?')} {digest[:16]}"

    # -- the names tables use ---------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def detector(self) -> str:
        return str(self.detector_info.get("name") or (self.path.parent.name if self.path else ""))

    @property
    def protocol(self) -> str:
        return str(self.protocol_info.get("name", ""))

    @property
    def protocol_version(self) -> str:
        return str(self.protocol_info.get("version", ""))

    @property
    def fold(self) -> str:
        return str(self.protocol_info.get("fold") or ALL_FOLDS)

    @property
    def config_hash(self) -> str:
        return str(self.detector_info.get("config_hash") or "")

    @property
    def when(self) -> str:
        """When the run ended (or began): for ordering runs by recency."""
        return str(self.finished or self.created or "")

    @property
    def resumable(self) -> bool:
        """Not complete, and not failed on a checkpoint that cannot be read."""
        return not self.complete and self.error_kind != CHECKPOINT_ERROR

    def scores(self) -> Any:
        if self.path is None:
            raise ResultsError("this run record has no folder")
        return load_scores(self.path)

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, (attr, _) in _FIELDS.items():
            out[key] = copy.deepcopy(getattr(self, attr))
        out["identity"] = self.identity.to_dict()
        for k, v in self.extra.items():
            out.setdefault(k, copy.deepcopy(v))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"

    def write(self, run_dir: Path | None = None) -> Path:
        """Write ``run.json`` atomically into ``run_dir`` (default: :attr:`path`)."""
        run_dir = Path(run_dir) if run_dir is not None else self.path
        if run_dir is None:
            raise ResultsError("this run record has no folder to be written to")
        f = run_dir / "run.json"
        atomic_write_text(f, self.to_json())
        return f

    @classmethod
    def from_dict(cls, d: Any, path: Path | None = None) -> RunRecord:
        """A record from ``run.json``'s dict; a :class:`ResultsError` naming the file
        (``path``/run.json) when its schema is not this version's or a field is malformed."""
        where = f"{Path(path) / 'run.json'}" if path is not None else "run.json"
        try:
            return cls._from_dict(d, path)
        except ValueError as e:
            raise ResultsError(f"{where}: {e}") from None

    @classmethod
    def _from_dict(cls, d: Any, path: Path | None) -> RunRecord:
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, not {type(d).__name__}")
        if "schema" not in d:
            raise ValueError(f"no schema version (written before schema {SCHEMA_VERSION}, "
                             f"or not by avbench); run it again")
        schema = d["schema"]
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise ValueError(f"schema {schema!r} is not a version number")
        if schema < SCHEMA_VERSION:
            raise ValueError(f"schema {schema} is older than this avbench's ({SCHEMA_VERSION}); "
                             f"run it again")
        if schema > SCHEMA_VERSION:
            raise ValueError(f"schema {schema} is newer than this avbench's "
                             f"({SCHEMA_VERSION}); update avbench to read it")
        kw: dict[str, Any] = {}
        for key, (attr, types) in _FIELDS.items():
            if key not in d:
                continue  # the field's default
            v = d[key]
            ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
            if not ok:
                names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise ValueError(f"{key!r} is {type(v).__name__}, expected {names}")
            kw[attr] = copy.deepcopy(v)
        extra = {k: copy.deepcopy(v) for k, v in d.items() if k not in _FIELDS and k != "identity"}
        rec = cls(**kw, extra=extra, path=Path(path) if path is not None else None)
        det, proto = rec.detector_info, rec.protocol_info
        if not isinstance(det.get("name"), str) or not det["name"]:
            raise ValueError("no detector name")
        for k in ("name", "version"):
            if not isinstance(proto.get(k), str) or not proto[k]:
                raise ValueError(f"no protocol {k}")
        if rec.status not in STATUSES:
            raise ValueError(f"status {rec.status!r} is not one of {', '.join(STATUSES)}")
        if "identity" not in d:
            raise ValueError("no identity block")
        stored = RunIdentity.from_dict(d["identity"])
        diff = rec.identity.differences(stored)
        if diff:
            k, mine, theirs = diff[0]
            raise ValueError(f"the identity block disagrees with the record in {k} "
                             f"(record {_short(mine)}, identity {_short(theirs)})")
        return rec

    @classmethod
    def from_json(cls, text: str, path: Path | None = None) -> RunRecord:
        where = f"{Path(path) / 'run.json'}" if path is not None else "run.json"
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ResultsError(f"{where}: not valid JSON ({json_problem(e)})") from None
        except RecursionError:
            raise ResultsError(f"{where}: not valid JSON (nested too deeply)") from None
        return cls.from_dict(d, path)


def read_run(path: Path) -> RunRecord:
    """The record in ``path``/run.json (a :class:`ResultsError` naming the file if it cannot
    be read)."""
    f = Path(path) / "run.json"
    try:
        text = f.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{f}: no run.json (not a run folder)") from None
    except UnicodeDecodeError as e:
        raise ResultsError(f"{f}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ResultsError(f"{f}: cannot be read ({e.strerror or type(e).__name__})") from None
    return RunRecord.from_json(text, Path(path))


class RunLockedError(ResultsError):
    """Another process holds the run folder (``run.lock``); the message names its pid."""

    def __init__(self, run_dir: Path, pid: int | None):
        self.run_dir = Path(run_dir)
        self.pid = pid
        who = f"pid {pid}" if pid is not None else "a process whose pid is not yet written"
        super().__init__(f"{self.run_dir}: in use by another avbench process ({who}); "
                         f"wait for it to end, or stop it")


LOCK_NAME = "run.lock"
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the pid alone decides
    fcntl = None  # type: ignore[assignment]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on Windows, where it cannot be probed: yes)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _read_pid(f: Path) -> int | None:
    try:
        text = f.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def run_in_progress(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s ``run.lock`` (the run is being written)."""
    lock = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        if fcntl is None:  # pragma: no cover - Windows: the pid alone decides
            pid = _read_pid(lock)
            return pid is not None and pid_alive(pid)
        if not RunLock._flock(fd):
            return True  # held: its owner is alive (the kernel drops a dead one's flock)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class RunLock:
    """Keeps every other process out of a run folder while this one writes into it.

    ``run.lock`` is created with ``O_CREAT | O_EXCL`` and holds the owner's pid; where the
    platform has ``fcntl`` the owner also holds an exclusive ``flock`` on it, which the kernel
    drops when the owner dies. A lock left by a dead process (its pid gone, or, with
    ``fcntl``, no ``flock`` on it) is taken over; a live holder gives :class:`RunLockedError`
    naming its pid. Use as a context manager; the file is removed on release.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.file = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                if self._take_over_stale():
                    continue
                raise RunLockedError(self.run_dir, _read_pid(self.file)) from None
            self._flock(fd, wait=True)  # others hold it only for a moment, to check it
            os.write(fd, f"{os.getpid()}\n".encode())
            os.fsync(fd)
            self._fd = fd
            return self
        raise RunLockedError(self.run_dir, _read_pid(self.file))

    @staticmethod
    def _flock(fd: int, wait: bool = False) -> bool:
        if fcntl is None:  # pragma: no cover - Windows
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            return False
        return True

    def _take_over_stale(self) -> bool:
        """Remove a lock whose holder is dead; ``True`` if it was removed (or is gone)."""
        try:
            fd = os.open(self.file, os.O_RDWR)
        except FileNotFoundError:
            return True  # released in between: try again
        try:
            pid = _read_pid(self.file)
            if fcntl is not None:
                if not self._flock(fd):
                    return False  # its holder is alive (the kernel drops a dead one's flock)
                if pid is None and time.time() - os.fstat(fd).st_mtime < 5.0:
                    return False  # just created, its pid not yet written
            elif pid is not None and pid_alive(pid):  # pragma: no cover - Windows
                return False
            try:
                if os.fstat(fd).st_ino == os.stat(self.file).st_ino:
                    self.file.unlink()
            except FileNotFoundError:
                pass
            return True
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _read_pid(self.file) == os.getpid():
                self.file.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.release()


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


def write_scores(path: Path, df: Any) -> str:
    """Write ``df`` as ``scores.csv`` at ``path``; returns the sha256 of the bytes written,
    for ``run.json``'s ``scores_sha256``."""
    cols = [c for c in SCORE_COLUMNS if c in df.columns]
    data = df[cols].to_csv(index=False, float_format="%.10g").encode("utf-8")
    atomic_write_bytes(Path(path), data)
    return sha256_bytes(data)


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
