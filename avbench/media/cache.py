"""The preparation cache: every video decoded (and face-cropped) once, read many times.

Layout under the cache root (``$AVBENCH_CACHE``, else the user cache folder's
``avbench/prepared``)::

    entries/<kk>/<key>/frames.npy   uint8 (N, 3, H, W), read with mmap: a segment read
                      /audio.npy    float32 (N * spf,)   touches only its own bytes
                      /meta.json    source facts, padding / face-fallback counts, pipeline
    failures/<key>.json             a file that could not be used: kind and reason
    memo.json                       absolute path + size + mtime_ns -> sha256 of the bytes
    tmp/<host>-<pid>-<random>/      entries being written

``key`` = sha256 of the file's bytes (first 40 hex digits) + the pipeline's key (and, with
face cropping, the face detector's), so a changed file, pipeline or detector is prepared
afresh while renamed or copied files are found again. The memo spares re-hashing unchanged
files on every run. Entries are written into ``tmp/`` and renamed into place, so an
interrupted prepare leaves no half entry (its temp folder is removed on the next run) and a
rerun resumes where it stopped. Failures are cached as well, so a bad file is decoded once
but reported on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avbench.errors import BadMediaError
from avbench.media.decode import PIPELINE_VERSION, Clip, Pipeline, decode

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from avbench.media.face import FaceDetector

CACHE_FORMAT = 1
_HASH_CHUNK = 1 << 20
#: a foreign or unparsable temp folder older than this is considered abandoned
_STALE_TMP_SECONDS = 24 * 3600


def default_root() -> Path:
    """``$AVBENCH_CACHE`` if set, else ``<user cache dir>/avbench/prepared``."""
    env = os.environ.get("AVBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:  # a declared dependency; fall back to the XDG location if absent
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "avbench" / "prepared"
    return Path(platformdirs.user_cache_dir("avbench")) / "prepared"


@dataclass(frozen=True)
class MediaProblem:
    """A video that could not be prepared: its id, a kind and the reason.

    ``kind`` is a :class:`~avbench.errors.BadMediaError` kind (see
    :data:`avbench.media.decode.BAD_MEDIA_KINDS`; cached, so the file is not decoded again
    until it, the pipeline or PIPELINE_VERSION changes), ``missing`` (no such file), or
    ``crashed`` (the decoding process died on it; not cached, tried again next run).
    """

    id: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.id}: {self.reason} [{self.kind}]"


@dataclass(frozen=True)
class CacheEntry:
    """A prepared video in the cache (small and picklable: paths and numbers only)."""

    key: str
    dir: Path
    n_frames: int
    height: int
    width: int
    fps: int
    sample_rate: int
    pipeline_key: str
    content_hash: str
    face_fallback_frames: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def frames_path(self) -> Path:
        return self.dir / "frames.npy"

    @property
    def audio_path(self) -> Path:
        return self.dir / "audio.npy"

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    @classmethod
    def from_meta(cls, folder: Path, meta: dict[str, Any]) -> CacheEntry:
        return cls(
            key=meta["key"],
            dir=folder,
            n_frames=int(meta["n_frames"]),
            height=int(meta["height"]),
            width=int(meta["width"]),
            fps=int(meta["fps"]),
            sample_rate=int(meta["sample_rate"]),
            pipeline_key=meta["pipeline_key"],
            content_hash=meta["content_hash"],
            face_fallback_frames=int(meta.get("face_fallback_frames", 0)),
            meta=meta,
        )


@dataclass
class PrepareResult:
    """What :func:`prepare` did. ``entries`` and ``problems`` follow the order of the items;
    every item is in exactly one of them."""

    entries: dict[str, CacheEntry] = field(default_factory=dict)
    problems: list[MediaProblem] = field(default_factory=list)
    n_cached: int = 0
    n_decoded: int = 0
    seconds: float = 0.0

    def problem_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def report(self, console: Console | None = None, *, limit: int = 20) -> None:
        """Print :meth:`summary` and the first ``limit`` problems (callers decide whether
        and where; :func:`prepare` itself prints only its progress bar)."""
        from rich.console import Console
        from rich.markup import escape

        console = console or Console(stderr=True)
        console.print(escape(self.summary()))
        for p in self.problems[:limit]:
            console.print(f"  [yellow]{escape(p.kind)}[/]  {escape(p.id)}: {escape(p.reason)}")
        if len(self.problems) > limit:
            console.print(f"  ... and {len(self.problems) - limit} more")

    def summary(self) -> str:
        n = len(self.entries) + len(self.problems)
        s = (
            f"{n} videos: {len(self.entries)} prepared, {len(self.problems)} unusable; "
            f"{self.n_cached} from the cache, {self.n_decoded} decoded in {self.seconds:.1f} s"
        )
        if self.problems:
            s += " (" + ", ".join(f"{k}: {v}" for k, v in self.problem_counts().items()) + ")"
        return s


def pipeline_cache_key(pipeline: Pipeline, face_detector: Any = None) -> str:
    """The pipeline part of a cache key; includes the face detector when cropping faces."""
    key = pipeline.key()
    if pipeline.face_crop:
        from avbench.media.face import HaarFaceDetector, detector_key

        det = face_detector if face_detector is not None else HaarFaceDetector()
        key = hashlib.sha256(f"{key}|{detector_key(det)}".encode()).hexdigest()[:12]
    return key


def hash_file(path: str | Path) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would signal the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PreparedCache:
    """The prepared-media cache under ``root`` (see the module docs for the layout)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self._memo: dict[str, list[Any]] | None = None
        self._memo_new: dict[str, list[Any]] = {}

    def __repr__(self) -> str:
        return f"PreparedCache({str(self.root)!r})"

    def __getstate__(self) -> dict[str, Any]:  # workers reload the memo if they need it
        return {"root": self.root, "_memo": None, "_memo_new": {}}

    # ---- folders

    @property
    def entries_dir(self) -> Path:
        return self.root / "entries"

    @property
    def failures_dir(self) -> Path:
        return self.root / "failures"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def memo_path(self) -> Path:
        return self.root / "memo.json"

    def entry_dir(self, key: str) -> Path:
        return self.entries_dir / key[:2] / key

    def failure_path(self, key: str) -> Path:
        return self.failures_dir / f"{key}.json"

    # ---- content hashes (with the stat memo)

    def _load_memo(self) -> dict[str, list[Any]]:
        if self._memo is None:
            try:
                data = json.loads(self.memo_path.read_text(encoding="utf-8"))
                files = data.get("files", {}) if data.get("format") == CACHE_FORMAT else {}
            except (OSError, ValueError, AttributeError):
                files = {}
            self._memo = files if isinstance(files, dict) else {}
        return self._memo

    def content_hash(self, path: str | Path) -> str:
        """sha256 of the file's bytes, from the memo when size and mtime are unchanged."""
        p = Path(path).absolute()
        st = p.stat()
        memo = self._load_memo()
        key = str(p)
        hit = memo.get(key)
        if (
            isinstance(hit, list)
            and len(hit) == 3
            and hit[0] == st.st_size
            and hit[1] == st.st_mtime_ns
        ):
            return str(hit[2])
        digest = hash_file(p)
        memo[key] = self._memo_new[key] = [st.st_size, st.st_mtime_ns, digest]
        return digest

    def save_memo(self) -> None:
        """Write new memo rows, merged with what other processes wrote meanwhile."""
        if not self._memo_new:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._memo = None
        merged = self._load_memo()  # what is on disk now
        merged.update(self._memo_new)
        text = json.dumps({"format": CACHE_FORMAT, "files": merged}, separators=(",", ":"))
        _atomic_write_text(self.memo_path, text)
        self._memo_new = {}

    def key_for(
        self, path: str | Path, pipeline: Pipeline, *, face_detector: FaceDetector | None = None
    ) -> str:
        """The cache key of ``path`` under ``pipeline``: content hash + pipeline key."""
        return f"{self.content_hash(path)[:40]}-{pipeline_cache_key(pipeline, face_detector)}"

    # ---- lookups

    def entry_by_key(self, key: str) -> CacheEntry | None:
        folder = self.entry_dir(key)
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
            return None
        return CacheEntry.from_meta(folder, meta)

    def failure_by_key(self, key: str) -> tuple[str, str] | None:
        """(kind, reason) of a cached failure, or None."""
        try:
            data = json.loads(self.failure_path(key).read_text(encoding="utf-8"))
            return str(data["kind"]), str(data["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def entry(
        self, path: str | Path, pipeline: Pipeline, *, face_detector: FaceDetector | None = None
    ) -> CacheEntry | None:
        """The prepared entry of ``path`` under ``pipeline``, or None when not prepared (or
        when the file is cached as a failure: see :meth:`failure`)."""
        try:
            key = self.key_for(path, pipeline, face_detector=face_detector)
        except OSError:
            return None
        return self.entry_by_key(key)

    def failure(
        self, path: str | Path, pipeline: Pipeline, *, face_detector: FaceDetector | None = None
    ) -> tuple[str, str] | None:
        """(kind, reason) when ``path`` was found unusable under ``pipeline``, else None."""
        try:
            key = self.key_for(path, pipeline, face_detector=face_detector)
        except OSError:
            return None
        return self.failure_by_key(key)

    # ---- reading

    def open_arrays(self, entry: CacheEntry) -> tuple[np.ndarray, np.ndarray]:
        """The entry's frames and audio, memory-mapped read-only."""
        frames = np.load(entry.frames_path, mmap_mode="r")
        audio = np.load(entry.audio_path, mmap_mode="r")
        return frames, audio

    def load(self, entry: CacheEntry) -> Clip:
        """The entry as a :class:`Clip` whose arrays are memory-mapped (nothing read yet)."""
        frames, audio = self.open_arrays(entry)
        m = entry.meta
        return Clip(
            frames=frames,
            audio=audio,
            fps=entry.fps,
            sample_rate=entry.sample_rate,
            source_fps=float(m.get("source_fps", 0.0)),
            source_sample_rate=int(m.get("source_sample_rate", 0)),
            source_channels=int(m.get("source_channels", 0)),
            duration=float(m.get("duration", 0.0)),
            padded_frames=int(m.get("padded_frames", 0)),
            face_fallback_frames=entry.face_fallback_frames,
            source_width=int(m.get("source_width", 0)),
            source_height=int(m.get("source_height", 0)),
            capped=bool(m.get("capped", False)),
        )

    # ---- writing

    def _new_tmp(self) -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path = self.tmp_dir / name
        path.mkdir()
        return path

    def write_entry(
        self,
        key: str,
        clip: Clip,
        pipeline: Pipeline,
        *,
        content_hash: str,
        face_detector: str | None = None,
        source_name: str = "",
    ) -> CacheEntry:
        """Write ``clip`` as entry ``key``: into a temp folder, then renamed into place."""
        tmp = self._new_tmp()
        try:
            np.save(tmp / "frames.npy", np.ascontiguousarray(clip.frames, dtype=np.uint8))
            np.save(tmp / "audio.npy", np.ascontiguousarray(clip.audio, dtype=np.float32))
            meta = {
                "format": CACHE_FORMAT,
                "key": key,
                "content_hash": content_hash,
                "pipeline": pipeline.to_dict(),
                "pipeline_key": pipeline.key(),
                "pipeline_version": PIPELINE_VERSION,
                "face_detector": face_detector,
                "source_name": source_name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **clip.facts(),
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
            final = self.entry_dir(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / "meta.json").exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process wrote it first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        entry = self.entry_by_key(key)
        if entry is None:  # pragma: no cover - only if the folder vanished meanwhile
            raise OSError(f"prepared entry {key} disappeared from {self.root}")
        return entry

    def write_failure(self, key: str, kind: str, reason: str, *, source_name: str = "") -> None:
        self.failures_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "format": CACHE_FORMAT,
            "key": key,
            "kind": kind,
            "reason": reason,
            "pipeline_version": PIPELINE_VERSION,
            "source_name": source_name,
        }
        _atomic_write_text(self.failure_path(key), json.dumps(data, indent=1))

    def clean_tmp(self) -> int:
        """Remove temp folders left by interrupted runs (this host's dead processes, or
        anything older than a day). Returns how many were removed."""
        if not self.tmp_dir.is_dir():
            return 0
        host, removed, now = socket.gethostname(), 0, time.time()
        for child in self.tmp_dir.iterdir():
            parts = child.name.rsplit("-", 2)
            stale = False
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
                stale = int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1]))
            if not stale:
                with contextlib.suppress(OSError):
                    stale = now - child.stat().st_mtime > _STALE_TMP_SECONDS
            if stale:
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        child.unlink()
                removed += 1
        return removed


# --------------------------------------------------------------------------------------------
# prepare


def _prepare_job(
    path: str,
    key: str,
    content_hash: str,
    pipeline: Pipeline,
    root: str,
    face_detector: Any,
) -> tuple[str, CacheEntry | None, str, str]:
    """Decode one file into the cache (runs in a worker process when workers > 0).
    Returns (key, entry, kind, reason): entry None and kind/reason set for a bad file."""
    from avbench.allocator import keep_freed_memory

    keep_freed_memory()  # each clip's frame buffer reuses the last one's memory
    cache = PreparedCache(root)
    name = Path(path).name
    try:
        clip = decode(path, pipeline, face_detector=face_detector)
    except BadMediaError as e:
        if e.kind != "missing":  # a file that vanished meanwhile may come back unchanged
            cache.write_failure(key, e.kind, e.reason, source_name=name)
        return key, None, e.kind, e.reason
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:
        raise RuntimeError(f"{path}: unexpected error while preparing: {e!r}") from e
    det = None
    if pipeline.face_crop:
        from avbench.media.face import detector_key

        det = detector_key(face_detector)
    entry = cache.write_entry(
        key, clip, pipeline, content_hash=content_hash, face_detector=det, source_name=name
    )
    return key, entry, "", ""


def _progress(enabled: bool, console: Console | None) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=False,
    )


def prepare(
    items: list[tuple[str, Path]],
    pipeline: Pipeline,
    cache: PreparedCache | None = None,
    *,
    workers: int = 0,
    progress: bool = True,
    console: Console | None = None,
    face_detector: FaceDetector | None = None,
) -> PrepareResult:
    """Make sure every ``(video id, absolute path)`` in ``items`` is prepared under
    ``pipeline``; decode what the cache lacks.

    Files already in the cache (as entries or as cached failures) are not decoded again;
    identical files are decoded once. ``workers > 0`` decodes in that many processes (spawn
    start method, safe alongside torch and threads), ``workers < 0`` as many as
    :func:`prepare_workers` picks for the machine, 0 in this process. Every unusable file is in
    ``problems`` on every run, with its kind and reason. Interrupting (Ctrl-C) leaves
    finished entries in place and no half entry: run it again to resume.
    """
    started = time.perf_counter()
    cache = cache if cache is not None else PreparedCache()
    if pipeline.face_crop and face_detector is None:
        from avbench.media.face import HaarFaceDetector

        face_detector = HaarFaceDetector()
    cache.clean_tmp()
    result = PrepareResult()
    keys: dict[str, str] = {}  # video id -> cache key
    early: dict[str, MediaProblem] = {}  # video id -> problem found before decoding
    outcome: dict[str, tuple[CacheEntry | None, str, str]] = {}  # key -> (entry, kind, reason)
    pending: dict[str, tuple[Path, str]] = {}  # key -> (path, content hash)

    with _progress(progress, console) as bar:
        task = bar.add_task("checking the cache", total=len(items))
        pkey = pipeline_cache_key(pipeline, face_detector)
        try:
            for vid, path in items:
                bar.advance(task)
                try:
                    digest = cache.content_hash(path)
                except FileNotFoundError:
                    early[vid] = MediaProblem(vid, "missing", "file does not exist")
                    continue
                except OSError as e:
                    why = e.strerror or type(e).__name__  # (no machine path in reasons)
                    early[vid] = MediaProblem(vid, "unreadable", f"cannot read the file ({why})")
                    continue
                key = f"{digest[:40]}-{pkey}"
                keys[vid] = key
                if key in outcome or key in pending:
                    continue
                entry = cache.entry_by_key(key)
                if entry is not None:
                    outcome[key] = (entry, "", "")
                    continue
                failed = cache.failure_by_key(key)
                if failed is not None:
                    outcome[key] = (None, *failed)
                    continue
                pending[key] = (Path(path), digest)
        finally:
            cache.save_memo()
        result.n_cached = len(outcome)

        if pending:
            task = bar.add_task("preparing media", total=len(pending))
            jobs = [
                (str(path), key, digest, pipeline, str(cache.root), face_detector)
                for key, (path, digest) in pending.items()
            ]
            for key, entry, kind, reason in _run_jobs(jobs, prepare_workers(workers, len(jobs))):
                outcome[key] = (entry, kind, reason)
                result.n_decoded += 1
                bar.advance(task)

    for vid, _path in items:
        if vid in early:
            result.problems.append(early[vid])
            continue
        entry, kind, reason = outcome[keys[vid]]
        if entry is not None:
            result.entries[vid] = entry
        else:
            result.problems.append(MediaProblem(vid, kind, reason))
    result.seconds = time.perf_counter() - started
    return result


#: files per process below which starting processes costs more than it saves (a spawned
#: process takes about a second to import PyAV and numpy; a 10 s clip decodes in 40 ms)
FILES_PER_WORKER = 32


def prepare_workers(requested: int, n_files: int) -> int:
    """Decoding processes for ``n_files``: ``requested`` when it is 0 or more; otherwise,
    on more than two cores, one per core this process may use (each then decodes on its
    own, which gives the most clips per core: docs/benchmarks.md), at most one per
    :data:`FILES_PER_WORKER` files; and none (decode here) on two cores or fewer, or where
    that comes to one process: here a file's audio and frame conversion run beside its
    video on the second core (avbench.media.decode)."""
    if requested >= 0:
        return requested
    from avbench.media.decode import available_cores

    cores = available_cores()
    n = min(cores, n_files // FILES_PER_WORKER) if cores > 2 else 0
    return n if n > 1 else 0


def _run_jobs(jobs: list[tuple[Any, ...]], workers: int, fn: Any = None) -> Any:
    """Yield each job's result; in-process when workers <= 0, else in a process pool.
    ``fn`` (a picklable top-level function) replaces :func:`_prepare_job` in tests."""
    fn = fn or _prepare_job
    if workers <= 0:
        for job in jobs:
            yield fn(*job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    from avbench.media.decode import available_cores

    share = max(1, available_cores() // workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                               initializer=_worker_init, initargs=(share,))
    futures = {pool.submit(fn, *job): job for job in jobs}
    done: set[str] = set()
    broken = False
    try:
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except BrokenProcessPool:
                broken = True
                break
            done.add(res[0])
            yield res
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=not broken, cancel_futures=True)
    if broken:
        # a worker died (a decoder crash, the OOM killer): finish the rest one process per
        # file, so that only the file that kills its process is reported
        for job in jobs:
            if job[1] in done:
                continue
            yield _isolated(fn, job, ctx)


def _worker_init(cores: int) -> None:
    """A decoding process decodes on its share of the cores (see decoder_threading)."""
    from avbench.media.decode import set_decoding_cores

    set_decoding_cores(cores)


def _isolated(fn: Any, job: tuple[Any, ...], ctx: Any) -> tuple[str, CacheEntry | None, str, str]:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(fn, *job).result()
        except BrokenProcessPool:
            return job[1], None, "crashed", "the decoding process died on this file"
