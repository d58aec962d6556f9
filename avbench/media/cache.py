"""The prepared cache: every video decoded (and face-cropped) once, stored compressed, read
many times.

Layout under the root (``$AVBENCH_CACHE``, else the user cache folder's ``avbench/prepared``)::

    entries/<kk>/<key>/video.mp4   the frames as h264 (below)
                      /audio.npy   float32 16 kHz samples, lossless
                      /meta.json   source facts, face counts, pipeline, each file's size and
                                   sha256, the video's packet index
    failures/<key>.json            a file that cannot be used: its kind and reason
    memo.json                      absolute path + size + mtime_ns -> sha256 of the bytes
    tmp/<host>-<pid>-<random>/     entries being written

``key`` = the first 40 hex digits of the file's sha256 + a hash of the pipeline's key (with
face cropping, the detector's key and :data:`~avbench.media.face.CROP_VERSION`) and
:data:`CACHE_FORMAT`: a changed file, pipeline, detector or format is prepared afresh, a
renamed or copied file is found again. Entries are written into ``tmp/`` and renamed into
place (an interrupted prepare or a full disk leaves no half entry; a rerun resumes), and
checked against their recorded sizes and checksums whenever :func:`prepare` uses them: a
damaged one is named, removed and prepared again. Failures are cached too, so a bad file is
decoded once and reported on every run.

The video is h264 in mp4 (4:2:0, constant quality, :data:`X264_OPTIONS`) with an IDR keyframe
every :data:`GOP` frames and no B-frames, so a 16-frame evaluation segment decodes alone and
any 16 frames decode from the keyframe before them. It is encoded in one thread from frames
whose every byte is set, so a clip gives the same bytes in every process. Readers feed the
packets of a segment, found through the index in meta.json, to one decoder kept per process:
no container is opened per segment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import itertools
import json
import os
import shutil
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avbench.detector import samples_per_frame as spf_of
from avbench.errors import AvbenchError, BadMediaError
from avbench.io import atomic_write_text
from avbench.io import available_cores as _available_cores
from avbench.media.decode import PIPELINE_VERSION, Clip, Pipeline, decode, gbrp_into
from avbench.media.encode import yuv420p_frames
from avbench.results import pid_alive

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from avbench.media.face import FaceDetector

#: the stored format; part of every key and recorded in run.json (see :func:`cache_format`)
CACHE_FORMAT = "h264-crf11-g16/1"
#: frames from one keyframe to the next: the segment length, so every segment starts a GOP
GOP = 16
#: crf 11 keeps real footage above 40 dB PSNR at about a third of the size budget;
#: fastdecode (no CABAC, no deblocking) decodes about twice as fast for ~5% more bytes. One
#: thread and no macroblock tree make the bytes a function of the frames alone.
X264_OPTIONS = {"crf": "11", "preset": "veryfast", "tune": "fastdecode", "g": str(GOP),
                "keyint_min": str(GOP), "sc_threshold": "0", "bf": "0", "threads": "1",
                "x264-params": "mbtree=0"}
VIDEO_FILE, AUDIO_FILE, META_FILE = "video.mp4", "audio.npy", "meta.json"
_MEMO_FORMAT = 1
#: a temp folder of another host (or unparsable) older than this is abandoned
_STALE_TMP_SECONDS = 24 * 3600
#: files per process below which starting processes costs more than it saves (a spawned
#: process takes about a second to import PyAV and numpy; a 10 s clip decodes in 40 ms)
FILES_PER_WORKER = 32
#: CacheEntry's numbers in meta.json: required, and face counts (absent without cropping)
_SIZES = ("n_frames", "height", "width", "fps", "sample_rate")
_FACE_COUNTS = ("face_fallback_frames", "face_searched", "face_found")


def cache_format() -> dict[str, Any]:
    """What a run records about the prepared media it read (run.json)."""
    return {"format": CACHE_FORMAT, "video": "h264 (libx264) in mp4, yuv420p, BT.601 limited range",
            "x264": dict(X264_OPTIONS), "gop": GOP, "audio": "float32 .npy (lossless)",
            "verified": "size and sha256 of every file"}


class CacheDiskFullError(AvbenchError, OSError):
    """The disk (or quota) filled up while an entry was written; the entry was not kept."""

    def __init__(self, filename: str) -> None:
        OSError.__init__(self, errno.ENOSPC, "disk full", filename)

    def __str__(self) -> str:
        return (f"{self.filename}: disk full while writing the prepared cache (nothing half "
                "written is kept); free some space or point AVBENCH_CACHE elsewhere")

    def __reduce__(self) -> Any:
        return type(self), (self.filename,)


class CacheCorruptError(AvbenchError):
    """A prepared entry that cannot be read as its meta.json says (changed since prepare)."""


@contextlib.contextmanager
def _disk_full_named(path: Path | str) -> Iterator[None]:
    """A full disk or quota inside the block raises :class:`CacheDiskFullError` for ``path``."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise CacheDiskFullError(str(e.filename or path)) from e
        raise


def _write_bytes(path: Path, data: bytes) -> None:
    with _disk_full_named(path):
        path.write_bytes(data)


def default_root() -> Path:
    """``$AVBENCH_CACHE`` if set, else ``<user cache dir>/avbench/prepared``."""
    import platformdirs

    env = os.environ.get("AVBENCH_CACHE")
    return Path(env).expanduser() if env else \
        Path(platformdirs.user_cache_dir("avbench")) / "prepared"


@dataclass(frozen=True)
class MediaProblem:
    """A video that could not be prepared: ``kind`` is a
    :data:`~avbench.media.decode.BAD_MEDIA_KINDS` kind (cached until the file, the pipeline or
    PIPELINE_VERSION changes), ``missing``, or ``crashed`` (the decoding process died on it;
    not cached, tried again next run)."""

    id: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.id}: {self.reason} [{self.kind}]"


@dataclass(frozen=True)
class CacheEntry:
    """A prepared video in the cache (small and picklable: paths, numbers and its meta)."""

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
    face_searched: int = 0
    face_found: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def face_share(self) -> float:
        """The share of searched frames that showed a face (face-cropped entries)."""
        return self.face_found / self.face_searched if self.face_searched else 0.0

    @property
    def video_path(self) -> Path:
        return self.dir / VIDEO_FILE

    @property
    def audio_path(self) -> Path:
        return self.dir / AUDIO_FILE

    @property
    def samples_per_frame(self) -> int:
        return spf_of(self.sample_rate, self.fps)

    @classmethod
    def from_meta(cls, folder: Path, meta: dict[str, Any]) -> CacheEntry:
        return cls(key=meta["key"], dir=folder, pipeline_key=meta["pipeline_key"],
                   content_hash=meta["content_hash"], meta=meta,
                   **{name: int(meta[name]) for name in _SIZES},
                   **{name: int(meta.get(name, 0)) for name in _FACE_COUNTS})


@dataclass
class PrepareResult:
    """What :func:`prepare` did. ``entries`` and ``problems`` follow the order of the items;
    every item is in exactly one. ``repaired`` names the damaged entries prepared again. With
    face cropping, ``face_shares`` maps every video searched for a face to the share of its
    searched frames that showed one, under detector ``face_detector`` and threshold
    ``min_face_share``."""

    entries: dict[str, CacheEntry] = field(default_factory=dict)
    problems: list[MediaProblem] = field(default_factory=list)
    n_cached: int = 0
    n_decoded: int = 0
    seconds: float = 0.0
    repaired: list[str] = field(default_factory=list)
    face_shares: dict[str, float] = field(default_factory=dict)
    face_detector: str | None = None
    min_face_share: float | None = None

    def problem_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def summary(self) -> str:
        s = (f"{len(self.entries) + len(self.problems)} videos: {len(self.entries)} prepared, "
             f"{len(self.problems)} unusable; {self.n_cached} from the cache, "
             f"{self.n_decoded} decoded in {self.seconds:.1f} s")
        if self.repaired:
            s += f"; {len(self.repaired)} damaged entries prepared again"
        if self.problems:
            s += " (" + ", ".join(f"{k}: {v}" for k, v in self.problem_counts().items()) + ")"
        return s


def pipeline_cache_key(pipeline: Pipeline, face_detector: Any = None) -> str:
    """The pipeline part of a cache key: the pipeline's key (with the face detector's when
    cropping faces) and :data:`CACHE_FORMAT`."""
    key = pipeline.key()
    if pipeline.face_crop:
        from avbench.media.face import CROP_VERSION, default_face_detector, detector_key

        det = face_detector if face_detector is not None else default_face_detector()
        key = f"{key}|{detector_key(det)}|crop{CROP_VERSION}"
    return hashlib.sha256(f"{key}|{CACHE_FORMAT}".encode()).hexdigest()[:12]


def hash_file(path: str | Path) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def encode_video(frames: np.ndarray, fps: int) -> tuple[bytes, dict[str, Any]]:
    """Frames (N, 3, H, W) uint8 as mp4 bytes (sides padded to whole macroblocks by repeating
    the edges), and the packet index meta.json keeps: ``first`` (offset of packet 0),
    ``sizes`` (each frame's packet, in frame order: no B-frames), ``extradata`` (hex) and the
    coded size. Checks that the stream has the frames in order and a keyframe every GOP."""
    import av

    h, w = frames.shape[2:]
    if h % 16 or w % 16:
        frames = np.pad(frames, ((0, 0), (0, 0), (0, -h % 16), (0, -w % 16)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[2:]
        stream.pix_fmt, stream.options = "yuv420p", dict(X264_OPTIONS)
        for k, frame in enumerate(yuv420p_frames(frames, GOP)):
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = buf.getvalue()
    with av.open(io.BytesIO(data)) as inp:
        vs = inp.streams.video[0]
        packets = [(round(p.pts * vs.time_base * fps), bool(p.is_keyframe), int(p.pos),
                    int(p.size)) for p in inp.demux(vs) if p.size]
        index = {"codec": "h264", "coded_width": int(vs.codec_context.width),
                 "coded_height": int(vs.codec_context.height),
                 "extradata": bytes(vs.codec_context.extradata or b"").hex(),
                 "first": packets[0][2], "sizes": [p[3] for p in packets]}
    got = [p[:3] for p in packets]  # (frame, keyframe, offset)
    offsets = itertools.accumulate(index["sizes"], initial=index["first"])
    if got != [(k, k % GOP == 0, pos) for k, pos in enumerate(offsets)][: len(frames)]:
        raise RuntimeError(  # an encoder that ignored X264_OPTIONS: not a file problem
            f"the h264 stream's packets (frame, keyframe, offset) begin {got[:8]}; expected "
            f"{len(frames)} frames in order, back to back, with a keyframe every {GOP}")
    return data, index


class PreparedCache:
    """The prepared-media cache under ``root`` (the module docs give the layout); its
    decoders and RGB converter are not pickled (DataLoader workers make their own)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.entries_dir, self.failures_dir = self.root / "entries", self.root / "failures"
        self.tmp_dir, self.memo_path = self.root / "tmp", self.root / "memo.json"
        self._memo: dict[str, list[Any]] | None = None
        self._memo_new: dict[str, list[Any]] = {}
        self._decoders: dict[str, Any] = {}
        self._rgb: Any = None

    def __repr__(self) -> str:
        return f"PreparedCache({str(self.root)!r})"

    def __reduce__(self) -> Any:
        return type(self), (self.root,)

    def entry_dir(self, key: str) -> Path:
        return self.entries_dir / key[:2] / key

    def failure_path(self, key: str) -> Path:
        return self.failures_dir / f"{key}.json"

    # ---- content hashes, with the stat memo

    def _load_memo(self) -> dict[str, list[Any]]:
        if self._memo is None:
            try:
                data = json.loads(self.memo_path.read_text(encoding="utf-8"))
                files = data.get("files", {}) if data.get("format") == _MEMO_FORMAT else {}
            except (OSError, ValueError, AttributeError):
                files = {}
            self._memo = files if isinstance(files, dict) else {}
        return self._memo

    def content_hash(self, path: str | Path) -> str:
        """sha256 of the file's bytes, from the memo when size and mtime are unchanged."""
        p = Path(path).absolute()
        st = p.stat()
        hit = self._load_memo().get(str(p))
        if isinstance(hit, list) and len(hit) == 3 and hit[:2] == [st.st_size, st.st_mtime_ns]:
            return str(hit[2])
        digest = hash_file(p)
        self._memo[str(p)] = self._memo_new[str(p)] = [st.st_size, st.st_mtime_ns, digest]
        return digest

    def save_memo(self) -> None:
        """Write new memo rows, merged with what other processes wrote meanwhile."""
        if not self._memo_new:
            return
        self._memo = None  # (read again: other processes may have added rows)
        self._memo = {**self._load_memo(), **self._memo_new}
        with _disk_full_named(self.memo_path):
            atomic_write_text(self.memo_path, json.dumps(
                {"format": _MEMO_FORMAT, "files": self._memo}, separators=(",", ":")))
        self._memo_new = {}

    def key_for(self, path: str | Path, pipeline: Pipeline, *,
                face_detector: FaceDetector | None = None) -> str:
        """The cache key of ``path`` under ``pipeline``: content hash + pipeline key."""
        return f"{self.content_hash(path)[:40]}-{pipeline_cache_key(pipeline, face_detector)}"

    # ---- lookups

    def check_entry(self, key: str, *, checksums: bool = True) -> tuple[CacheEntry | None, str]:
        """``(entry, "")`` for a sound entry, ``(None, "")`` when there is none, ``(None,
        reason)`` when one is there but does not match its meta.json (a file missing, of
        another size or, with ``checksums``, other bytes)."""
        folder = self.entry_dir(key)
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
                return None, "meta.json is of another format or key"
            entry = CacheEntry.from_meta(folder, meta)
            files = {name: meta["files"][name] for name in (VIDEO_FILE, AUDIO_FILE)}
        except FileNotFoundError:
            return None, ("no meta.json" if folder.is_dir() else "")
        except OSError as e:
            return None, f"meta.json cannot be read ({e.strerror or type(e).__name__})"
        except (ValueError, KeyError, TypeError, AttributeError):
            return None, "meta.json is damaged"
        for name, want in files.items():
            try:
                size = (folder / name).stat().st_size
            except OSError:
                return None, f"{name} is missing"
            if size != want.get("size"):
                return None, f"{name} has {size} bytes, meta.json says {want.get('size')}"
            if checksums and hash_file(folder / name) != want.get("sha256"):
                return None, f"{name} does not match its checksum"
        return entry, ""

    def entry(self, path: str | Path, pipeline: Pipeline, *,
              face_detector: FaceDetector | None = None) -> CacheEntry | None:
        """The prepared entry of ``path`` under ``pipeline`` if its files have their recorded
        sizes; None otherwise (not prepared, a cached failure, or no such file)."""
        try:
            key = self.key_for(path, pipeline, face_detector=face_detector)
        except OSError:
            return None
        return self.check_entry(key, checksums=False)[0]

    def failure_by_key(self, key: str) -> tuple[str, str] | None:
        """(kind, reason) of a cached failure, or None."""
        try:
            data = json.loads(self.failure_path(key).read_text(encoding="utf-8"))
            return str(data["kind"]), str(data["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove_entry(self, key: str) -> None:
        """Take entry ``key`` away: renamed into a temp folder first (no reader sees half of
        it), then deleted."""
        gone = self._new_tmp()
        with contextlib.suppress(OSError):
            os.rename(self.entry_dir(key), gone / key)
        shutil.rmtree(gone, ignore_errors=True)
        shutil.rmtree(self.entry_dir(key), ignore_errors=True)

    # ---- reading

    def read_frames(self, entry: CacheEntry, start: int, out: np.ndarray) -> np.ndarray:
        """Frames ``start .. start + len(out)`` of ``entry`` as uint8 RGB into ``out``
        (T, 3, H, W): the packets from the keyframe at or before ``start``."""
        import av
        from av.video.reformatter import VideoReformatter

        stop, first = start + len(out), start // GOP * GOP
        if not (start >= 0 and len(out) >= 1 and stop <= entry.n_frames):
            raise ValueError(f"frames {start}..{stop} of a {entry.n_frames}-frame entry")
        if out.shape[1:] != (3, entry.height, entry.width):
            raise ValueError(f"frames of shape {out.shape[1:]} from a "
                             f"{entry.width}x{entry.height} entry")
        video = entry.meta.get("video") or {}
        sizes = video.get("sizes", [])
        if len(sizes) != entry.n_frames:
            raise CacheCorruptError(f"prepared entry {entry.dir}: its packet index does "
                                    f"not list {entry.n_frames} frames")
        try:
            cc = self._decoders.get(video["extradata"])
            if cc is None:
                cc = self._decoders[video["extradata"]] = av.CodecContext.create("h264", "r")
                cc.extradata = bytes.fromhex(video["extradata"])
                cc.thread_type, cc.thread_count = "NONE", 1
            cc.flush_buffers()
            with open(entry.video_path, "rb") as f:
                f.seek(int(video["first"]) + sum(sizes[:first]))
                data = f.read(want := sum(sizes[first:stop]))
            if len(data) != want:
                raise EOFError(f"{len(data)} of {want} bytes")
            frames, pos = [], 0
            for size in sizes[first:stop]:
                frames += cc.decode(av.Packet(data[pos : pos + size]))
                pos += size
            if len(frames) < stop - first:
                frames += cc.decode(None)  # (a decoder that holds frames back: drain it)
        except (OSError, EOFError, av.FFmpegError, ValueError) as e:
            raise CacheCorruptError(f"prepared entry {entry.dir} cannot be read ({e}); run "
                                    "`avbench data prepare` to check and prepare it again") from e
        if len(frames) != stop - first:
            raise CacheCorruptError(f"prepared entry {entry.dir}: {len(frames)} frames decoded "
                                    f"from packets {first}..{stop - 1}")
        if self._rgb is None:
            self._rgb = VideoReformatter()
        for k, frame in enumerate(frames[start - first :]):
            gbrp_into(self._rgb.reformat(frame, format="gbrp", threads=1), out[k])
        return out

    def read_audio(self, entry: CacheEntry, start: int, out: np.ndarray) -> np.ndarray:
        """Samples ``start .. start + len(out)`` of ``entry`` into ``out`` (float32)."""
        total = entry.n_frames * entry.samples_per_frame
        if not (start >= 0 and start + len(out) <= total):
            raise ValueError(f"samples {start}..{start + len(out)} of a {total}-sample entry")
        offset = int((entry.meta.get("audio") or {}).get("offset", 0))
        want = memoryview(out).cast("B")
        try:
            with open(entry.audio_path, "rb") as f:
                f.seek(offset + 4 * start)
                got = f.readinto(want)
        except OSError as e:
            raise CacheCorruptError(f"prepared entry {entry.dir} cannot be read ({e})") from e
        if got != len(want):
            raise CacheCorruptError(f"prepared entry {entry.dir}: {AUDIO_FILE} is truncated")
        return out

    def load(self, entry: CacheEntry) -> Clip:
        """The entry as a :class:`Clip`, every frame decoded."""
        frames = np.empty((entry.n_frames, 3, entry.height, entry.width), dtype=np.uint8)
        audio = np.empty(entry.n_frames * entry.samples_per_frame, dtype=np.float32)
        facts = {f.name: entry.meta[f.name] for f in dataclasses.fields(Clip)
                 if f.name not in ("frames", "audio") and f.name in entry.meta}
        return Clip(frames=self.read_frames(entry, 0, frames),
                    audio=self.read_audio(entry, 0, audio), **facts)

    # ---- writing

    def _new_tmp(self) -> Path:
        with _disk_full_named(self.tmp_dir):
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            path = self.tmp_dir / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            path.mkdir()
        return path

    def write_entry(self, key: str, clip: Clip, pipeline: Pipeline, *, content_hash: str,
                    face_detector: str | None = None, source_name: str = "") -> CacheEntry:
        """Write ``clip`` as entry ``key``: encoded, into a temp folder, then renamed into
        place. A full disk raises :class:`CacheDiskFullError` and leaves nothing behind."""
        video, index = encode_video(np.asarray(clip.frames), clip.fps)
        samples, buf = np.ascontiguousarray(clip.audio, dtype=np.float32), io.BytesIO()
        np.save(buf, samples)
        audio = buf.getvalue()
        files = {name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                 for name, data in ((VIDEO_FILE, video), (AUDIO_FILE, audio))}
        meta = {"format": CACHE_FORMAT, "key": key, "content_hash": content_hash,
                "pipeline": pipeline.to_dict(), "pipeline_key": pipeline.key(),
                "pipeline_version": PIPELINE_VERSION, "face_detector": face_detector,
                "source_name": source_name, **clip.facts(), "files": files, "video": index,
                "audio": {"dtype": "float32", "offset": len(audio) - samples.nbytes}}
        tmp, final = self._new_tmp(), self.entry_dir(key)
        try:
            _write_bytes(tmp / VIDEO_FILE, video)
            _write_bytes(tmp / AUDIO_FILE, audio)
            _write_bytes(tmp / META_FILE, json.dumps(meta, indent=1, sort_keys=True).encode())
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / META_FILE).exists():
                    raise  # (else another process wrote it first)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return CacheEntry.from_meta(final, meta)

    def write_failure(self, key: str, kind: str, reason: str, *, source_name: str = "") -> None:
        data = {"format": CACHE_FORMAT, "key": key, "kind": kind, "reason": reason,
                "pipeline_version": PIPELINE_VERSION, "source_name": source_name}
        with _disk_full_named(self.failure_path(key)):
            atomic_write_text(self.failure_path(key), json.dumps(data, indent=1))

    def clean_tmp(self) -> None:
        """Remove the temp folders of interrupted runs: this host's dead processes', and
        anything older than a day."""
        host, now = socket.gethostname(), time.time()
        for child in self.tmp_dir.iterdir() if self.tmp_dir.is_dir() else ():
            parts = child.name.rsplit("-", 2)
            dead = len(parts) == 3 and parts[0] == host and parts[1].isdigit() \
                and int(parts[1]) != os.getpid() and not pid_alive(int(parts[1]))
            with contextlib.suppress(OSError):
                if dead or now - child.stat().st_mtime > _STALE_TMP_SECONDS:
                    shutil.rmtree(child, ignore_errors=True)
                    child.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# prepare


def _prepare_job(path: str, key: str, content_hash: str, pipeline: Pipeline, root: str,
                 face_detector: Any, detector_key: str | None,
                 ) -> tuple[str, CacheEntry | None, str, str]:
    """Decode one file into the cache (in a worker process when workers > 0). Returns (key,
    entry, kind, reason): entry None and kind/reason set for a bad file."""
    cache, name = PreparedCache(root), Path(path).name
    try:
        clip = decode(path, pipeline, face_detector=face_detector)
    except BadMediaError as e:
        if e.kind != "missing":  # a file that vanished meanwhile may come back unchanged
            cache.write_failure(key, e.kind, e.reason, source_name=name)
        return key, None, e.kind, e.reason
    except MemoryError:
        raise
    except Exception as e:
        raise RuntimeError(f"{path}: unexpected error while preparing: {e!r}") from e
    return key, cache.write_entry(key, clip, pipeline, content_hash=content_hash,
                                  face_detector=detector_key, source_name=name), "", ""


def _look_up(items: list[tuple[str, Path]], pkey: str, cache: PreparedCache,
             result: PrepareResult, console: Console | None, tick: Any,
             ) -> tuple[dict[str, Any], ...]:
    """Hash every file and find its entry or cached failure; damaged entries are named and
    removed. Returns ``{video id: key}``, ``{video id: outcome}`` for files that cannot be
    read, ``{key: outcome}`` found (an outcome is ``(entry, kind, reason)``) and ``{key:
    (path, content hash)}`` to prepare."""
    keys: dict[str, str] = {}
    unread: dict[str, tuple[None, str, str]] = {}
    found: dict[str, tuple[CacheEntry | None, str, str]] = {}
    pending: dict[str, tuple[Path, str]] = {}
    try:
        for vid, path in items:
            tick()
            try:
                digest = cache.content_hash(path)
            except FileNotFoundError:
                unread[vid] = (None, "missing", "file does not exist")
                continue
            except OSError as e:  # (no machine path in reasons)
                unread[vid] = (None, "unreadable",
                               f"cannot read the file ({e.strerror or type(e).__name__})")
                continue
            key = keys[vid] = f"{digest[:40]}-{pkey}"
            if key in found or key in pending:
                continue
            entry, damage = cache.check_entry(key)
            if damage:
                from rich.console import Console
                from rich.markup import escape

                line = (f"prepared entry {cache.entry_dir(key)} ({vid}): {damage}; removed, "
                        "preparing it again")
                result.repaired.append(line)
                (console or Console(stderr=True)).print(f"[yellow]{escape(line)}[/]")
                cache.remove_entry(key)
            if entry is not None:
                found[key] = (entry, "", "")
            elif (failed := cache.failure_by_key(key)) is not None:
                found[key] = (None, *failed)
            else:
                pending[key] = (Path(path), digest)
    finally:
        cache.save_memo()
    return keys, unread, found, pending


def prepare(items: list[tuple[str, Path]], pipeline: Pipeline,
            cache: PreparedCache | None = None, *, workers: int = 0, progress: bool = True,
            console: Console | None = None, face_detector: FaceDetector | None = None,
            min_face_share: float | None = None) -> PrepareResult:
    """Make sure every ``(video id, absolute path)`` in ``items`` is prepared under
    ``pipeline``, decoding what the cache lacks (identical files once) in this process
    (``workers`` 0), in ``workers`` spawned processes, or (``workers < 0``) in as many as
    :func:`prepare_workers` picks. Damaged entries are named on ``console``. Ctrl-C or a full
    disk leaves finished entries in place and no half entry: run it again to resume.

    With face cropping (``face_detector``: :func:`~avbench.media.face.default_face_detector`
    when None), a video whose searched frames show a face less often than ``min_face_share``
    (:func:`~avbench.media.face.min_face_share` when None) is a ``no-face`` problem; changing
    the share needs no new preparation.
    """
    import rich.progress as rp

    started, cache, result = time.perf_counter(), cache or PreparedCache(), PrepareResult()
    if pipeline.face_crop:
        from avbench.media import face

        face_detector = face_detector if face_detector is not None else face.default_face_detector()
        result.face_detector = face.detector_key(face_detector)
        result.min_face_share = face.min_face_share() if min_face_share is None \
            else float(min_face_share)
    cache.clean_tmp()
    # on a pipe or file rich would print each finished bar: the run's summary says it all
    with rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(),
                     rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), rp.TimeRemainingColumn(),
                     console=console, disable=not progress or (
                         console is not None and not console.is_terminal)) as bar:
        task = bar.add_task("checking the cache", total=len(items))
        keys, unread, found, pending = _look_up(items, pipeline_cache_key(pipeline, face_detector),
                                                cache, result, console, lambda: bar.advance(task))
        result.n_cached = len(found)
        if pending:
            task = bar.add_task("preparing media", total=len(pending))
            jobs = [(str(path), key, digest, pipeline, str(cache.root), face_detector,
                     result.face_detector) for key, (path, digest) in pending.items()]
            for key, entry, kind, reason in _run_jobs(jobs, prepare_workers(workers, len(jobs))):
                found[key] = (entry, kind, reason)
                result.n_decoded += 1
                bar.advance(task)
    for vid, _path in items:
        entry, kind, reason = unread[vid] if vid in unread else found[keys[vid]]
        if pipeline.face_crop and (entry is not None or kind == "no-face"):
            result.face_shares[vid] = entry.face_share if entry is not None else 0.0
            threshold = result.min_face_share or 0.0
            if entry is not None and entry.face_share < threshold:
                from avbench.media.face import few_faces_reason

                reason = few_faces_reason(entry.face_found, entry.face_searched, threshold)
                entry, kind = None, "no-face"
        if entry is not None:
            result.entries[vid] = entry
        else:
            result.problems.append(MediaProblem(vid, kind, reason))
    result.seconds = time.perf_counter() - started
    return result


def faces_entry(results: Any) -> dict[str, Any]:
    """``{"faces": {dataset: summary}}`` for run.json's media block from ``(dataset name,
    PrepareResult)`` pairs (a dataset's splits merged; see
    :func:`avbench.media.face.face_summary`), or ``{}`` when no dataset was face-cropped."""
    merged: dict[str, tuple[PrepareResult, dict[str, float]]] = {}
    for name, res in results:
        if res.face_detector is not None:
            merged.setdefault(name, (res, {}))[1].update(res.face_shares)
    if not merged:
        return {}
    from avbench.media.face import face_summary

    return {"faces": {name: face_summary(shares, threshold=float(res.min_face_share or 0.0),
                                         detector=str(res.face_detector))
                      for name, (res, shares) in sorted(merged.items())}}


def prepare_workers(requested: int, n_files: int) -> int:
    """Preparing processes for ``n_files``: ``requested`` when it is 0 or more; otherwise one
    per core this process may use (a file is decoded and encoded in one thread), at most one
    per :data:`FILES_PER_WORKER` files, and none (prepare here) where that comes to one."""
    if requested >= 0:
        return requested
    n = min(_available_cores(), n_files // FILES_PER_WORKER)
    return n if n > 1 else 0


def _run_jobs(jobs: list[tuple[Any, ...]], workers: int, fn: Any = None) -> Any:
    """Yield each job's result; in-process when workers <= 0, else in a process pool. A
    worker that dies (a decoder crash, the OOM killer) breaks the pool: the rest then run one
    process per file, so that only the file that kills its process is reported (``crashed``).
    ``fn`` (a picklable top-level function) replaces :func:`_prepare_job` in tests."""
    fn = fn or _prepare_job
    if workers <= 0:
        yield from (fn(*job) for job in jobs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    done, broken = set(), False
    try:
        for fut in as_completed([pool.submit(fn, *job) for job in jobs]):
            res = fut.result()
            done.add(res[0])
            yield res
    except BrokenProcessPool:
        broken = True
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=not broken, cancel_futures=True)
    for job in jobs if broken else ():
        if job[1] not in done:
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as alone:
                try:
                    yield alone.submit(fn, *job).result()
                except BrokenProcessPool:
                    yield job[1], None, "crashed", "the decoding process died on this file"
