"""The preparation cache: every video decoded (and face-cropped) once, stored compressed,
read many times.

Layout under the cache root (``$AVBENCH_CACHE``, else the user cache folder's
``avbench/prepared``)::

    entries/<kk>/<key>/video.mp4    the clip's frames as h264 (see CACHE_FORMAT below)
                      /audio.npy    float32 (N * spf,): the clip's 16 kHz samples, lossless
                      /meta.json    source facts, padding / face counts, pipeline,
                                    each file's size and sha256, the video's packet index
    failures/<key>.json             a file that could not be used: kind and reason
    memo.json                       absolute path + size + mtime_ns -> sha256 of the bytes
    tmp/<host>-<pid>-<random>/      entries being written

``key`` = sha256 of the file's bytes (first 40 hex digits) + a hash of the pipeline's key
(with face cropping, the face detector's and :data:`avbench.media.face.CROP_VERSION`) and
:data:`CACHE_FORMAT`, so a changed file,
pipeline, detector or cache format is prepared afresh while renamed or copied files are
found again. The memo spares re-hashing unchanged files on every run. Entries are written
into ``tmp/`` and renamed into place, so an interrupted prepare (or a full disk) leaves no
half entry and a rerun resumes where it stopped. :func:`prepare` checks every entry it uses
against the sizes and checksums in its meta.json; one that does not match (truncated,
corrupt) is named in one line, removed and prepared again. Failures are cached as well, so a
bad file is decoded once but reported on every run.

The video is h264 in mp4, 4:2:0, at constant quality (:data:`X264_OPTIONS`) with an IDR
keyframe at every :data:`GOP`-th frame and no B-frames, so each 16-frame evaluation segment
decodes alone and any other 16 frames decode from the keyframe before them. It is encoded in
one thread from frames whose every byte is set (:func:`avbench.media.encode.yuv420p_frames`), so the same clip
gives the same bytes in every process. Readers (:class:`SegmentReader`) decode the packets of
a segment with one decoder per process, fed from the packet index in meta.json: no container
is opened per segment.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections import Counter
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
#: libx264's settings. crf 11 keeps real footage above 40 dB PSNR at about a third of the
#: size budget; fastdecode (no CABAC, no deblocking) decodes about twice as fast for ~5%
#: more bytes; veryfast encodes ~3x faster than medium at the same size. One thread and no
#: macroblock tree: the output is then a function of the input alone (with mbtree on, the
#: same frames gave other bytes when glibc's MALLOC_PERTURB_ changed what freed memory
#: holds, so files differed from process to process).
X264_OPTIONS = {
    "crf": "11",
    "preset": "veryfast",
    "tune": "fastdecode",
    "g": str(GOP),
    "keyint_min": str(GOP),
    "sc_threshold": "0",
    "bf": "0",
    "threads": "1",
    "x264-params": "mbtree=0",
}
VIDEO_FILE, AUDIO_FILE, META_FILE = "video.mp4", "audio.npy", "meta.json"
_MEMO_FORMAT = 1
_HASH_CHUNK = 1 << 20
#: a foreign or unparsable temp folder older than this is considered abandoned
_STALE_TMP_SECONDS = 24 * 3600


def cache_format() -> dict[str, Any]:
    """What a run records about the prepared media it read (run.json)."""
    return {
        "format": CACHE_FORMAT,
        "video": "h264 (libx264) in mp4, yuv420p, BT.601 limited range",
        "x264": dict(X264_OPTIONS),
        "gop": GOP,
        "audio": "float32 .npy (lossless)",
        "verified": "size and sha256 of every file",
    }


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
            face_searched=int(meta.get("face_searched", 0)),
            face_found=int(meta.get("face_found", 0)),
            meta=meta,
        )


@dataclass
class PrepareResult:
    """What :func:`prepare` did. ``entries`` and ``problems`` follow the order of the items;
    every item is in exactly one of them. ``repaired`` names entries that failed their check
    (size or checksum) and were prepared again. With face cropping, ``face_shares`` maps
    every video that was searched for a face to the share of searched frames that showed
    one (0 for none at all), ``face_detector`` is the detector's key and ``min_face_share``
    the share below which a video became a ``no-face`` problem."""

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

    def report(self, console: Console | None = None, *, limit: int = 20) -> None:
        """Print :meth:`summary` and the first ``limit`` problems (callers decide whether
        and where; :func:`prepare` itself prints only its progress bar and repairs)."""
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
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _disk_full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file; a full disk raises :class:`CacheDiskFullError`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as e:
        if _disk_full(e):
            raise CacheDiskFullError(str(path)) from e
        raise
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    """:func:`avbench.io.atomic_write_text`; a full disk raises :class:`CacheDiskFullError`."""
    try:
        atomic_write_text(path, text)
    except OSError as e:
        if _disk_full(e):
            raise CacheDiskFullError(str(path)) from e
        raise


# --------------------------------------------------------------------------------------------
# the video format


def _encoder_frames(frames: np.ndarray) -> Any:
    """The frames as yuv420p pictures for libx264 (:func:`avbench.media.encode.yuv420p_frames`:
    every byte set), their sides padded to whole macroblocks by repeating the edges."""
    h, w = frames.shape[2:]
    if h % 16 or w % 16:
        frames = np.pad(frames, ((0, 0), (0, 0), (0, -h % 16), (0, -w % 16)), mode="edge")
    return yuv420p_frames(frames, GOP)


def encode_video(frames: np.ndarray, fps: int) -> tuple[bytes, dict[str, Any]]:
    """The frames (N, 3, H, W) uint8 as mp4 bytes, and the packet index meta.json keeps:
    ``first`` (byte offset of packet 0), ``sizes`` (each frame's packet, in frame order: no
    B-frames, so decode order is display order), ``extradata`` (hex) and the coded size."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = (x + -x % 16 for x in frames.shape[2:])
        stream.pix_fmt = "yuv420p"
        stream.options = dict(X264_OPTIONS)
        for k, frame in enumerate(_encoder_frames(frames)):
            frame.pts, frame.time_base = k, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    data = buf.getvalue()
    with av.open(io.BytesIO(data)) as inp:
        vs = inp.streams.video[0]
        extradata = bytes(vs.codec_context.extradata or b"")
        packets = [(p.pos, p.size, p.pts, p.is_keyframe) for p in inp.demux(vs) if p.size]
        tb = vs.time_base
    n = len(frames)
    index = [round(p[2] * tb * fps) for p in packets]
    keys = [i for i, p in enumerate(packets) if p[3]]
    contiguous = all(a[0] + a[1] == b[0] for a, b in itertools.pairwise(packets))
    if index != list(range(n)) or keys != list(range(0, n, GOP)) or not contiguous:
        raise RuntimeError(  # an encoder that ignored X264_OPTIONS: not a file problem
            f"the h264 stream has frames {index[:20]}..., keyframes {keys[:8]}..., "
            f"contiguous={contiguous}; expected {n} frames in order, a keyframe every {GOP}"
        )
    index_meta = {
        "codec": "h264",
        "coded_width": int(vs.codec_context.width),
        "coded_height": int(vs.codec_context.height),
        "extradata": extradata.hex(),
        "first": int(packets[0][0]),
        "sizes": [int(p[1]) for p in packets],
    }
    return data, index_meta


def _npy_bytes(audio: np.ndarray) -> tuple[bytes, int]:
    """``audio`` as .npy bytes (float32) and the offset of its first sample."""
    a = np.ascontiguousarray(audio, dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, a)
    data = buf.getvalue()
    return data, len(data) - a.nbytes


class SegmentReader:
    """Reads frames and samples of prepared entries.

    One h264 decoder per thread and stream setup (extradata), and one RGB converter per
    thread, are kept and reused across entries, the decoder flushed before each segment; a
    segment's packets are read from the file at the offsets in the entry's index, from the
    keyframe at or before its first frame. Frames come out as uint8 RGB (3, H, W). Nothing is
    kept when pickled (DataLoader workers build their own)."""

    def __init__(self) -> None:
        self._decoders: dict[tuple[int, str], Any] = {}
        self._offsets: dict[str, np.ndarray] = {}
        self._reformatters: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def _decoder(self, extradata: str) -> Any:
        key = (threading.get_ident(), extradata)
        cc = self._decoders.get(key)
        if cc is None:
            import av

            cc = av.CodecContext.create("h264", "r")
            cc.extradata = bytes.fromhex(extradata)
            cc.thread_type = "NONE"
            cc.thread_count = 1
            self._decoders[key] = cc
        return cc

    def _index(self, entry: CacheEntry) -> tuple[dict[str, Any], np.ndarray]:
        video = entry.meta.get("video") or {}
        offsets = self._offsets.get(entry.key)
        if offsets is None:
            sizes = np.asarray(video.get("sizes", []), dtype=np.int64)
            if len(sizes) != entry.n_frames:
                raise CacheCorruptError(f"prepared entry {entry.dir}: its packet index does "
                                        f"not list {entry.n_frames} frames")
            offsets = int(video["first"]) + np.concatenate([[0], np.cumsum(sizes)])
            if len(self._offsets) > 4096:
                self._offsets.clear()
            self._offsets[entry.key] = offsets
        return video, offsets

    def read_frames(self, entry: CacheEntry, start: int, out: np.ndarray) -> np.ndarray:
        """Frames ``start`` to ``start + len(out)`` of ``entry`` into ``out`` (T, 3, H, W)."""
        import av

        count = len(out)
        if not (start >= 0 and count >= 1 and start + count <= entry.n_frames):
            raise ValueError(f"frames {start}..{start + count} of a {entry.n_frames}-frame entry")
        if out.shape[1:] != (3, entry.height, entry.width):
            raise ValueError(f"frames of shape {out.shape[1:]} from a "
                             f"{entry.width}x{entry.height} entry")
        video, offsets = self._index(entry)
        first = start // GOP * GOP
        lo, hi = int(offsets[first]), int(offsets[start + count])
        try:
            with open(entry.video_path, "rb") as f:
                f.seek(lo)
                data = f.read(hi - lo)
            if len(data) != hi - lo:
                raise EOFError(f"{len(data)} of {hi - lo} bytes")
            cc = self._decoder(video["extradata"])
            cc.flush_buffers()
            frames = []
            for j in range(first, start + count):
                frames += cc.decode(av.Packet(data[offsets[j] - lo : offsets[j + 1] - lo]))
            if len(frames) < start + count - first:
                frames += cc.decode(None)  # (a decoder that holds frames back: drain it)
                cc.flush_buffers()
        except (OSError, EOFError, av.FFmpegError, ValueError) as e:
            raise CacheCorruptError(f"prepared entry {entry.dir} cannot be read ({e}); run "
                                    "`avbench data prepare` to check and prepare it again") from e
        if len(frames) != start + count - first:
            raise CacheCorruptError(f"prepared entry {entry.dir}: {len(frames)} frames decoded "
                                    f"from packets {first}..{start + count - 1}")
        rgb = self._reformatters.get(threading.get_ident())
        if rgb is None:  # (a swscale context: not to be shared between threads)
            from av.video.reformatter import VideoReformatter

            rgb = self._reformatters[threading.get_ident()] = VideoReformatter()
        for k, frame in enumerate(frames[start - first :]):
            gbrp_into(rgb.reformat(frame, format="gbrp", threads=1), out[k])
        return out

    def read_audio(self, entry: CacheEntry, start: int, out: np.ndarray) -> np.ndarray:
        """Samples ``start`` to ``start + len(out)`` of ``entry`` into ``out`` (float32)."""
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


class PreparedCache:
    """The prepared-media cache under ``root`` (see the module docs for the layout)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self._memo: dict[str, list[Any]] | None = None
        self._memo_new: dict[str, list[Any]] = {}
        self._reader = SegmentReader()

    def __repr__(self) -> str:
        return f"PreparedCache({str(self.root)!r})"

    def __getstate__(self) -> dict[str, Any]:  # workers reload the memo if they need it
        return {"root": self.root, "_memo": None, "_memo_new": {}, "_reader": SegmentReader()}

    @staticmethod
    def format_info() -> dict[str, Any]:
        """What run.json records about the cache format (:func:`cache_format`)."""
        return cache_format()

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
                files = data.get("files", {}) if data.get("format") == _MEMO_FORMAT else {}
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
        text = json.dumps({"format": _MEMO_FORMAT, "files": merged}, separators=(",", ":"))
        _atomic_write_text(self.memo_path, text)
        self._memo_new = {}

    def key_for(
        self, path: str | Path, pipeline: Pipeline, *, face_detector: FaceDetector | None = None
    ) -> str:
        """The cache key of ``path`` under ``pipeline``: content hash + pipeline key."""
        return f"{self.content_hash(path)[:40]}-{pipeline_cache_key(pipeline, face_detector)}"

    # ---- lookups

    def check_entry(self, key: str, *, checksums: bool = True) -> tuple[CacheEntry | None, str]:
        """``(entry, "")`` for a sound entry, ``(None, "")`` when there is none, and
        ``(None, reason)`` when one is there but does not match its meta.json (a file
        missing, truncated, of another size or, with ``checksums``, other bytes)."""
        folder = self.entry_dir(key)
        try:
            text = (folder / META_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, ("no meta.json" if folder.is_dir() else "")
        except OSError as e:
            return None, f"meta.json cannot be read ({e.strerror or type(e).__name__})"
        try:
            meta = json.loads(text)
            if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
                return None, "meta.json is of another format or key"
            entry = CacheEntry.from_meta(folder, meta)
            files = {name: meta["files"][name] for name in (VIDEO_FILE, AUDIO_FILE)}
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

    def entry_by_key(self, key: str, *, checksums: bool = False) -> CacheEntry | None:
        """The entry ``key`` if it is there and its files have the recorded sizes (and,
        with ``checksums``, bytes); None otherwise."""
        return self.check_entry(key, checksums=checksums)[0]

    def remove_entry(self, key: str) -> None:
        """Take entry ``key`` away (renamed out of ``entries/`` first, then deleted)."""
        folder = self.entry_dir(key)
        if not folder.exists():
            return
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        gone = self.tmp_dir / f"{socket.gethostname()}-{os.getpid()}-rm{uuid.uuid4().hex[:8]}"
        try:
            os.rename(folder, gone)
        except OSError:
            gone = folder
        shutil.rmtree(gone, ignore_errors=True)

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

    def read_frames(self, entry: CacheEntry, start: int, out: np.ndarray) -> np.ndarray:
        """Frames ``start .. start + len(out)`` of ``entry`` as uint8 RGB into ``out``."""
        return self._reader.read_frames(entry, start, out)

    def read_audio(self, entry: CacheEntry, start: int, out: np.ndarray) -> np.ndarray:
        """Samples ``start .. start + len(out)`` of ``entry`` into ``out`` (float32)."""
        return self._reader.read_audio(entry, start, out)

    def load(self, entry: CacheEntry) -> Clip:
        """The entry as a :class:`Clip`, every frame decoded."""
        frames = np.empty((entry.n_frames, 3, entry.height, entry.width), dtype=np.uint8)
        audio = np.empty(entry.n_frames * entry.samples_per_frame, dtype=np.float32)
        self.read_frames(entry, 0, frames)
        self.read_audio(entry, 0, audio)
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
            face_searched=entry.face_searched,
            face_found=entry.face_found,
        )

    # ---- writing

    def _new_tmp(self) -> Path:
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
            path = self.tmp_dir / name
            path.mkdir()
        except OSError as e:
            if _disk_full(e):
                raise CacheDiskFullError(str(self.tmp_dir)) from e
            raise
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
        """Write ``clip`` as entry ``key``: encoded, into a temp folder, then renamed into
        place. A full disk raises :class:`CacheDiskFullError` and leaves nothing behind."""
        video, index = encode_video(np.asarray(clip.frames), clip.fps)
        audio, offset = _npy_bytes(clip.audio)
        meta = {
            "format": CACHE_FORMAT,
            "key": key,
            "content_hash": content_hash,
            "pipeline": pipeline.to_dict(),
            "pipeline_key": pipeline.key(),
            "pipeline_version": PIPELINE_VERSION,
            "face_detector": face_detector,
            "source_name": source_name,
            **clip.facts(),
            "files": {
                name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                for name, data in ((VIDEO_FILE, video), (AUDIO_FILE, audio))
            },
            "video": index,
            "audio": {"dtype": "float32", "offset": offset},
        }
        tmp = self._new_tmp()
        try:
            _write_bytes(tmp / VIDEO_FILE, video)
            _write_bytes(tmp / AUDIO_FILE, audio)
            _write_bytes(tmp / META_FILE, json.dumps(meta, indent=1, sort_keys=True).encode())
            final = self.entry_dir(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / META_FILE).exists():
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
                stale = int(parts[1]) != os.getpid() and not pid_alive(int(parts[1]))
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


def _say(console: Console | None, line: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    (console or Console(stderr=True)).print(f"[yellow]{escape(line)}[/]")


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
        # on a pipe or file rich would print each finished bar: the run's summary says it all
        disable=not enabled or (console is not None and not console.is_terminal),
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
    min_face_share: float | None = None,
) -> PrepareResult:
    """Make sure every ``(video id, absolute path)`` in ``items`` is prepared under
    ``pipeline``; decode what the cache lacks.

    Files already in the cache (as entries or as cached failures) are not decoded again;
    identical files are decoded once. ``workers > 0`` decodes in that many processes (spawn
    start method, safe alongside torch and threads), ``workers < 0`` as many as
    :func:`prepare_workers` picks for the machine, 0 in this process. Every unusable file is in
    ``problems`` on every run, with its kind and reason. Every entry used is checked
    against its recorded sizes and checksums; a damaged one is named in one line (on
    ``console``), removed and prepared again (``repaired``). Interrupting (Ctrl-C) or a full
    disk leaves finished entries in place and no half entry: run it again to resume.

    With face cropping (``face_detector``: :func:`~avbench.media.face.default_face_detector`
    when None), a video whose detection passes show a face in less than ``min_face_share``
    of the frames searched (:func:`~avbench.media.face.min_face_share` when None) is a
    ``no-face`` problem, not an entry; changing the share needs no new preparation.
    """
    started = time.perf_counter()
    cache = cache if cache is not None else PreparedCache()
    result = PrepareResult()
    if pipeline.face_crop:
        from avbench.media.face import default_face_detector, detector_key
        from avbench.media.face import min_face_share as configured_share

        if face_detector is None:
            face_detector = default_face_detector()
        result.face_detector = detector_key(face_detector)
        result.min_face_share = (configured_share() if min_face_share is None
                                 else float(min_face_share))
    cache.clean_tmp()
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
                entry, damage = cache.check_entry(key)
                if entry is not None:
                    outcome[key] = (entry, "", "")
                    continue
                if damage:
                    line = (f"prepared entry {cache.entry_dir(key)} ({vid}): {damage}; "
                            "removed, preparing it again")
                    result.repaired.append(line)
                    _say(console, line)
                    cache.remove_entry(key)
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
        if pipeline.face_crop and (entry is not None or kind == "no-face"):
            result.face_shares[vid] = entry.face_share if entry is not None else 0.0
            if entry is not None and entry.face_share < (result.min_face_share or 0.0):
                entry, kind, reason = None, "no-face", _few_faces(entry, result.min_face_share)
        if entry is not None:
            result.entries[vid] = entry
        else:
            result.problems.append(MediaProblem(vid, kind, reason))
    result.seconds = time.perf_counter() - started
    return result


def _few_faces(entry: CacheEntry, threshold: Any) -> str:
    from avbench.media.face import few_faces_reason

    return few_faces_reason(entry.face_found, entry.face_searched, float(threshold))


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


#: files per process below which starting processes costs more than it saves (a spawned
#: process takes about a second to import PyAV and numpy; a 10 s clip decodes in 40 ms)
FILES_PER_WORKER = 32


def prepare_workers(requested: int, n_files: int) -> int:
    """Preparing processes for ``n_files``: ``requested`` when it is 0 or more; otherwise one
    per core this process may use (a file is decoded and encoded in one thread: processes
    give the most clips per core, docs/benchmarks.md), at most one per
    :data:`FILES_PER_WORKER` files, and none (prepare here) where that comes to one."""
    if requested >= 0:
        return requested
    cores = _available_cores()
    n = min(cores, n_files // FILES_PER_WORKER)
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
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
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


def _isolated(fn: Any, job: tuple[Any, ...], ctx: Any) -> tuple[str, CacheEntry | None, str, str]:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(fn, *job).result()
        except BrokenProcessPool:
            return job[1], None, "crashed", "the decoding process died on this file"
