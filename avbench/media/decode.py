"""Decoding audio-visual files with PyAV into the benchmark's media conventions.

Every video leaves here as a :class:`Clip`: frames at ``Pipeline.fps`` (25) chosen by
presentation timestamp, uint8 RGB (N, 3, H, W); audio at ``Pipeline.sample_rate`` (16 kHz),
mono (channels averaged), float32 in [-1, 1], exactly ``sample_rate / fps`` (640) samples per
frame: frame ``k`` and samples ``[k * 640, (k + 1) * 640)`` cover the same 40 ms.

* Time zero is the first video frame's timestamp. Output frame ``k`` shows the source frame
  whose interval ``[pts_i, pts_{i+1})`` holds ``t0 + k / fps`` (variable rates, 29.97 and
  12 fps alike); the last source frame lasts its own duration (else the median interval).
* Audio is put on that clock: samples before ``t0`` dropped, a late start filled with
  silence, encoder padding (AAC adds ~1024 samples) cut back to the declared duration; it is
  assumed contiguous after its first timestamp. libsoxr resamples it in one call.
* Streams whose durations differ by more than ``max(0.5 s, 10 %)`` are ``length-mismatch``;
  otherwise both are cut to the shorter (audio short by at most :data:`AUDIO_PAD_TOLERANCE`
  is padded with zeros instead).

One plain pass in this process: both decoders run one thread, so nothing depends on the
machine's cores (files are decoded in parallel by processes, ``--workers``), and the bytes
are a function of the file alone. Unusable files raise
:class:`avbench.errors.BadMediaError` of a kind in :data:`BAD_MEDIA_KINDS` (``truncated``: see
:meth:`_Decoding._check_truncated`; ``no-face`` only with face cropping).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avbench.detector import samples_per_frame as spf_of
from avbench.errors import BadMediaError

if TYPE_CHECKING:  # pragma: no cover
    from avbench.media.face import FaceDetector

#: Bump whenever :func:`decode` gives other arrays for the same file and Pipeline (the
#: prepared cache is keyed by it).
PIPELINE_VERSION = 4

#: Audio short of the video by at most this many seconds is padded with zeros.
AUDIO_PAD_TOLERANCE = 0.010
#: Streams differing by more than max(MISMATCH_SECONDS, MISMATCH_FRACTION) are rejected.
MISMATCH_SECONDS = 0.5
MISMATCH_FRACTION = 0.10
#: A stream decoding to less than this fraction of what the container declares is truncated.
TRUNCATED_FRACTION = 0.90
#: Face cropping works on frames whose short side is at most FACE_WORK_SHORT_SIDE (or twice
#: the output size), less where a clip's frames would not fit in FACE_WORK_BUDGET bytes; the
#: detector looks FACE_DETECTIONS_PER_SECOND times a second.
FACE_WORK_SHORT_SIDE = 540
FACE_WORK_BUDGET = 1 << 30
FACE_DETECTIONS_PER_SECOND = 2.5

BAD_MEDIA_KINDS = ("missing", "empty", "unreadable", "truncated", "no-video", "no-audio",
                   "length-mismatch", "too-short", "no-face")


@dataclass(frozen=True)
class Pipeline:
    """How sources are turned into clips; part of every cache key (:meth:`key`). ``size``:
    the side of the square output frames (None keeps the source size; other sources are
    centre-cropped to a square, then resized). ``max_seconds`` caps how much of a source is
    decoded. ``face_crop`` crops a square around the face (full-frame datasets; needs a size).
    """

    fps: int = 25
    sample_rate: int = 16000
    size: int | None = 224
    max_seconds: float | None = None
    face_crop: bool = False

    def __post_init__(self) -> None:
        # normalise types so that equal settings give equal keys (10 and 10.0 seconds)
        for name in ("fps", "sample_rate"):
            if float(getattr(self, name)) != int(getattr(self, name)):
                raise ValueError(f"bad Pipeline: {name} must be a whole number")
            object.__setattr__(self, name, int(getattr(self, name)))
        for name, kind in (("size", int), ("max_seconds", float)):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "face_crop", bool(self.face_crop))
        for bad, why in (
                (self.fps < 1 or self.sample_rate < 1 or self.sample_rate % self.fps,
                 f"sample_rate {self.sample_rate} must be a positive multiple of fps {self.fps}"),
                (self.size is not None and self.size < 8, f"size {self.size} < 8"),
                (self.max_seconds is not None and not self.max_seconds * self.fps >= 1,
                 f"max_seconds {self.max_seconds} must cover at least one frame"),
                (self.face_crop and self.size is None, "face_crop needs an output size")):
            if bad:
                raise ValueError(f"bad Pipeline: {why}")

    @property
    def samples_per_frame(self) -> int:
        return spf_of(self.sample_rate, self.fps)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Short stable hash of every field and :data:`PIPELINE_VERSION`."""
        blob = json.dumps({"version": PIPELINE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class Clip:
    """A decoded video: ``frames`` uint8 (N, 3, H, W), ``audio`` float32 (N * spf,).

    ``duration``: the source's seconds (decoded, or declared when ``max_seconds`` stopped
    early). ``padded_frames``: frames added by :func:`~avbench.media.segments.loop_pad`. With
    face cropping, ``face_found`` of ``face_searched`` frames searched showed a face and
    ``face_fallback_frames`` took their box from a neighbouring detection.
    """

    frames: np.ndarray
    audio: np.ndarray
    fps: int
    sample_rate: int
    source_fps: float
    source_sample_rate: int
    source_channels: int
    duration: float
    padded_frames: int = 0
    face_fallback_frames: int = 0
    source_width: int = 0
    source_height: int = 0
    capped: bool = False
    face_searched: int = 0
    face_found: int = 0

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def samples_per_frame(self) -> int:
        return spf_of(self.sample_rate, self.fps)

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps

    def facts(self) -> dict[str, Any]:
        """Everything but the arrays (what the prepared cache stores in meta.json)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del d["frames"], d["audio"]
        d["n_frames"] = self.n_frames
        d["height"], d["width"] = (int(x) for x in self.frames.shape[2:4])
        return d


def decode(path: str | Path, pipeline: Pipeline | None = None, *,
           face_detector: FaceDetector | None = None) -> Clip:
    """Decode ``path`` into a :class:`Clip` following ``pipeline`` (see the module docs);
    a bad file raises :class:`avbench.errors.BadMediaError` naming it, the reason and the kind.
    Faces are found by ``face_detector`` (:func:`~avbench.media.face.default_face_detector`'s
    when None)."""
    import av

    pipeline, path = pipeline or Pipeline(), Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadMediaError(path, "file is empty (0 bytes)", "empty")
    except FileNotFoundError:
        raise BadMediaError(path, "file does not exist", "missing") from None
    except OSError as e:
        raise BadMediaError(path, f"cannot read the file ({_why(e)})", "unreadable") from None
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        why = _iso_bmff_problem(path)
        kind = "truncated" if why and "cut short" in why else "unreadable"
        raise BadMediaError(path, why or f"not a readable media file ({_why(e)})", kind) from None
    with container:
        decoding = _Decoding(container, path, pipeline)
        decoding.run()
        return decoding.clip(face_detector)


# --------------------------------------------------------------------------------------------
# video


class _Frames:
    """Writes source frames into (3, H, W) RGB slots at the output size, or (H, W, 3) ones at
    the face-work size with ``face_crop``.

    A non-square source is cut to its centre square (libavfilter's ``crop``) first. Resizing
    is two swscale passes, scaled in the source's YUV format (``AREA`` shrinking, ``BICUBIC``
    enlarging), then converted to RGB (one pass takes about 1.5x as long). Planar RGB
    (``gbrp``) goes straight into the slot at widths that are a multiple of 16, others go
    through ``rgb24`` (swscale's planar-RGB converter writes garbage into the last columns of
    4:2:0 frames 16k + 1 to 16k + 8 wide). ``threads=1``: PyAV's default is one per core."""

    def __init__(self, width: int, height: int, pipeline: Pipeline, n_est: int) -> None:
        from av.video.reformatter import VideoReformatter

        self.scaler, self.reformatter = VideoReformatter(), VideoReformatter()
        self.graph: Any = None
        self.graph_key: tuple[int, int, str] | None = None
        self.planar, size = not pipeline.face_crop, pipeline.size
        self.crop = size is not None and width != height and self.planar
        in_w, in_h = (min(width, height),) * 2 if self.crop else (width, height)
        if not self.planar:
            out_w, out_h = _face_work_size(width, height, pipeline, n_est)
        else:
            out_w, out_h = (in_w, in_h) if size is None else (size, size)
        fmt = "gbrp" if self.planar and out_w % 16 == 0 else "rgb24"
        # the output size is always given: a source whose size changes keeps the clip's shape
        self.final: dict[str, Any] = {"width": out_w, "height": out_h, "format": fmt,
                                      "threads": 1}
        self.scale: dict[str, Any] | None = None
        if (out_w, out_h) != (in_w, in_h):
            how = "AREA" if out_w * out_h < in_w * in_h else "BICUBIC"
            self.scale = {"width": out_w, "height": out_h, "threads": 1, "interpolation": how}
            self.final["interpolation"] = how
        self.shape = (3, out_h, out_w) if self.planar else (out_h, out_w, 3)

    def __call__(self, frame: Any, dst: np.ndarray) -> None:
        if self.crop:
            key = (frame.width, frame.height, frame.format.name)
            if key != self.graph_key:  # the first frame, or the size changed mid-stream
                self.graph, self.graph_key = _crop_graph(frame), key
            self.graph.vpush(frame)
            frame = self.graph.vpull()
        if self.scale is not None and frame.format.name.startswith(("yuv", "gray")):
            frame = self.scaler.reformat(frame, **self.scale)  # still in its own format
        img = self.reformatter.reformat(frame, **self.final)
        if self.final["format"] == "gbrp":
            gbrp_into(img, dst)
        else:
            rgb = img.to_ndarray()  # (H, W, 3), a view of the frame's plane
            dst[...] = rgb.transpose(2, 0, 1) if self.planar else rgb


def gbrp_into(img: Any, dst: np.ndarray) -> None:
    """A planar-RGB (``gbrp``: G, B, R) frame's top-left H x W into ``dst`` (3, H, W) RGB
    (rows carry padding, and a coded frame may be larger than its clip)."""
    h, w = dst.shape[1:]
    for channel, plane in zip((1, 2, 0), img.planes, strict=True):
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        dst[channel] = rows[:h, :w]


def _crop_graph(frame: Any) -> Any:
    """A one-thread filter graph cutting the centre square of frames like ``frame``."""
    import av.filter

    w, h = frame.width, frame.height
    side = min(w, h)
    graph = av.filter.Graph()
    graph.threads = 1
    src = graph.add_buffer(width=w, height=h, format=frame.format.name,
                           time_base=frame.time_base or Fraction(1, 25))
    crop = graph.add("crop", f"w={side}:h={side}:x={(w - side) // 2}:y={(h - side) // 2}")
    graph.link_nodes(src, crop, graph.add("buffersink"))
    graph.configure()
    return graph


def _face_work_size(width: int, height: int, pipeline: Pipeline, n_est: int) -> tuple[int, int]:
    short, size = min(width, height), pipeline.size or 0
    scale = min(1.0, max(FACE_WORK_SHORT_SIDE, 2 * size) / short)
    if width * height * scale * scale * 3 * max(n_est, 1) > FACE_WORK_BUDGET:
        scale = math.sqrt(FACE_WORK_BUDGET / (width * height * 3 * max(n_est, 1)))
        scale = min(1.0, max(scale, size / short))
    return max(2, round(width * scale)), max(2, round(height * scale))


class _Buffer:
    """A growable (N, *shape) uint8 array, filled a source frame (and its repeats) at a time."""

    def __init__(self, shape: tuple[int, ...], capacity: int) -> None:
        self.data = np.empty((max(capacity, 1), *shape), dtype=np.uint8)
        self.n = 0

    def append(self, write: Any, frame: Any, times: int) -> None:
        """``write(frame, slot)`` into the next slot, copied into the ``times - 1`` after it."""
        end = self.n + times
        if end > len(self.data):
            grown = np.empty((max(end, 2 * len(self.data)), *self.data.shape[1:]), np.uint8)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        write(frame, self.data[self.n])
        self.data[self.n + 1 : end] = self.data[self.n]
        self.n = end

    def array(self) -> np.ndarray:
        out = self.data[: self.n]
        return out.copy() if self.n < 0.8 * len(self.data) else out


# --------------------------------------------------------------------------------------------
# audio

_SAMPLE_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64,
                  "flt": np.float32, "dbl": np.float64}
_SAMPLE_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854775808e18}
_Samples = tuple[str, int, list[np.ndarray]]


def _samples(frame: Any) -> _Samples:
    """An audio frame as (format, channels, views of its planes: one per channel when planar,
    one interleaved otherwise)."""
    fmt, channels, n = frame.format.name, frame.layout.nb_channels, frame.samples
    dtype = _SAMPLE_DTYPES[fmt.rstrip("p")]
    if fmt.endswith("p"):
        return fmt, channels, [np.frombuffer(p, dtype, n) for p in frame.planes[:channels]]
    return fmt, channels, [np.frombuffer(frame.planes[0], dtype, n * channels)]


def _mono(chunks: list[_Samples]) -> np.ndarray:
    """:func:`_samples` of audio frames as one float32 mono signal in [-1, 1]: channels
    summed in order and divided by their number, integers scaled; runs of one format and
    channel count are converted together."""
    parts = [np.zeros(0, np.float32)]
    for (fmt, channels), run in itertools.groupby(chunks, key=lambda c: (c[0], c[1])):
        planes = [np.concatenate(p) for p in zip(*(c[2] for c in run), strict=True)]
        base = fmt.rstrip("p")
        acc = np.float64 if base in ("s32", "s64", "dbl") else np.float32
        if len(planes) > 1:  # planar
            mono = planes[0].astype(acc)
            for plane in planes[1:]:
                mono += plane
            mono /= len(planes)
        else:  # interleaved, or one channel
            mono = planes[0].reshape(-1, channels).mean(axis=1, dtype=acc)
        mono = mono.astype(np.float32, copy=False)
        if base in _SAMPLE_SCALE:
            mono = (mono - np.float32(128.0) if base == "u8" else mono) / np.float32(
                _SAMPLE_SCALE[base])
        parts.append(mono)
    return np.concatenate(parts)


def _place_audio(x: np.ndarray, rate: int, start: Fraction, t0: Fraction,
                 declared: Fraction | None, capped: bool, cap_time: Fraction | None,
                 target_rate: int) -> np.ndarray:
    """Mono audio ``x`` (first sample at ``start``) on the video's clock (``t0``), encoder
    padding cut back to the ``declared`` duration, cut to the cap, resampled to
    ``target_rate`` by libsoxr and clipped to [-1, 1]."""
    import soxr

    if declared and not capped:
        declared_n = round(declared * rate)
        if declared_n < len(x) <= declared_n + rate // 5:
            x = x[:declared_n]
    offset = round((start - t0) * rate)
    if offset > 0:
        x = np.concatenate([np.zeros(offset, dtype=np.float32), x])
    elif offset < 0:
        x = x[-offset:]
    if cap_time is not None:
        x = x[: math.ceil(cap_time * rate) + rate // 10]
    if rate != target_rate and len(x):
        x = soxr.resample(x, rate, target_rate)
    return np.clip(x, -1.0, 1.0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# one pass over a file


class _Decoding:
    """A file's streams decoded together: source frames placed on the output clock (integer
    ticks of the frames' time base) and converted, audio frames kept for :func:`_mono`."""

    def __init__(self, container: Any, path: Path, pipeline: Pipeline) -> None:
        if not container.streams.video:
            raise BadMediaError(path, "the file holds no video stream", "no-video")
        if not container.streams.audio:
            raise BadMediaError(path, "the file holds no audio stream", "no-audio")
        self.container, self.path, self.p = container, path, pipeline
        self.vs, self.ast = vs, ast = container.streams.video[0], container.streams.audio[0]
        self.width, self.height = vs.codec_context.width, vs.codec_context.height
        if not self.width or not self.height:
            raise BadMediaError(path, "the video stream declares no frame size", "unreadable")
        for stream in (vs, ast):  # one thread: the output never depends on the machine
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
        self.rate = Fraction(vs.average_rate) if vs.average_rate else None
        whole = container.duration
        self.declared_all = Fraction(whole, 1_000_000) if whole and whole > 0 else None
        declared_v = _seconds(vs.duration, vs.time_base)
        self.declared_frames = vs.frames or (
            round(declared_v * self.rate) if declared_v and self.rate else 0)
        self.declared_v = declared_v or self.declared_all
        self.declared_a = _seconds(ast.duration, ast.time_base)
        n_est = round(float(self.declared_v) * pipeline.fps) + 2 if self.declared_v else 64
        self.cap = math.floor(pipeline.max_seconds * pipeline.fps + 1e-9) \
            if pipeline.max_seconds else None
        self.cap_time = Fraction(self.cap, pipeline.fps) if self.cap is not None else None
        self.convert = _Frames(self.width, self.height, pipeline, min(n_est, self.cap or n_est))
        self.out = _Buffer(self.convert.shape, min(n_est, self.cap or n_est))
        tb = vs.time_base or Fraction(1, pipeline.fps)
        self.tb_num, self.tb_den = tb.numerator, tb.denominator
        self.step = 1  # a source frame interval in ticks, for frames without a pts
        self.pts0: int | None = None
        self.prev: Any = None  # the last source frame, shown from prev_d ticks on
        self.prev_d, self.steps, self.n_src = 0, [], 0
        self.chunks: list[_Samples] = []
        self.a_samples, self.a_start = 0, None
        self.a_rate = ast.codec_context.sample_rate or ast.rate or 0
        self.a_need: int | None = None  # samples that reach the cap, once both starts are known

    def run(self) -> None:
        import av

        video_done = audio_done = False
        try:
            for frame in self.container.decode(self.vs, self.ast):
                if isinstance(frame, av.AudioFrame):
                    audio_done = audio_done or self._audio(frame)
                elif not video_done:
                    video_done = self._video(frame)
                if video_done and audio_done:
                    break
        except av.FFmpegError as e:
            if self.n_src == 0:
                raise BadMediaError(self.path, f"cannot decode the video ({_why(e)})",
                                    "unreadable") from None
            raise BadMediaError(self.path, f"decoding failed after {self.n_src} frames "
                                f"({_why(e)}): the file is damaged or cut short",
                                "truncated") from None

    def _video(self, frame: Any) -> bool:
        """Place one source frame; True once the cap is reached."""
        if self.pts0 is None:
            self.pts0, d = frame.pts or 0, 0
            if frame.time_base:  # the frames' pts count in these
                self.tb_num, self.tb_den = frame.time_base.numerator, frame.time_base.denominator
            rate = self.rate or Fraction(self.p.fps)
            self.step = max(1, round(Fraction(self.tb_den, self.tb_num) / rate))
        else:
            d = frame.pts - self.pts0 if frame.pts is not None else self.prev_d + self.step
            if d <= self.prev_d:
                return False  # out-of-order or repeated timestamp: keep the first
            self.steps.append(d - self.prev_d)
            self._emit_until(d)
        self.prev, self.prev_d = frame, d
        self.n_src += 1
        return self.cap is not None and self.out.n >= self.cap

    def _emit_until(self, ticks: int) -> None:
        """Output frame k is due while k / fps < ticks * tb: ``prev`` fills frames up to it."""
        due = -((-ticks * self.tb_num * self.p.fps) // self.tb_den)
        due = due if self.cap is None else min(due, self.cap)
        if due > self.out.n:
            self.out.append(self.convert, self.prev, due - self.out.n)

    def _audio(self, frame: Any) -> bool:
        """Keep one audio frame; True once the cap's samples are in."""
        if self.a_start is None:
            self.a_rate = frame.sample_rate or self.a_rate
            self.a_start = Fraction(frame.time) if frame.time is not None else Fraction(0)
        if frame.samples > 0:
            self.chunks.append(_samples(frame))
            self.a_samples += frame.samples
        if self.cap_time is not None and self.a_need is None and self.pts0 is not None:
            t0 = Fraction(self.pts0 * self.tb_num, self.tb_den)
            self.a_need = math.ceil((t0 + self.cap_time - self.a_start) * self.a_rate)
        return self.a_need is not None and self.a_samples >= self.a_need

    def clip(self, face_detector: Any) -> Clip:
        if self.n_src == 0:
            raise BadMediaError(self.path, "the video stream holds no decodable frame",
                                "too-short")
        capped = self.cap is not None and self.out.n >= self.cap
        if capped:
            span = Fraction(self.out.n, self.p.fps)
        else:  # the last source frame lasts its own duration (or the typical interval)
            last = self.prev.duration or 0
            if not last > 0:
                last = sorted(self.steps)[len(self.steps) // 2] if self.steps else self.step
            self._emit_until(self.prev_d + last)
            span = Fraction((self.prev_d + last) * self.tb_num, self.tb_den)
            self._check_truncated(span)
        if self.a_samples == 0 or not self.a_rate:
            raise BadMediaError(self.path, "the audio stream holds no decodable samples",
                                "no-audio")
        audio = _place_audio(_mono(self.chunks), self.a_rate, self.a_start,
                             Fraction(self.pts0 * self.tb_num, self.tb_den), self.declared_a,
                             capped, self.cap_time, self.p.sample_rate)
        frames, audio = _fit(self.path, self.out.array(), audio, self.p)
        report = None
        if self.p.face_crop:
            from avbench.media.face import crop_faces, default_face_detector

            frames, report = crop_faces(
                frames, face_detector if face_detector is not None else default_face_detector(),
                size=int(self.p.size or 0), source=str(self.path),
                every=max(1, round(self.p.fps / FACE_DETECTIONS_PER_SECOND)))
        return Clip(
            frames=frames, audio=audio, fps=self.p.fps, sample_rate=self.p.sample_rate,
            source_fps=float(self.rate) if self.rate else self.n_src / max(float(span), 1e-9),
            source_sample_rate=int(self.a_rate),
            source_channels=int(self.ast.codec_context.channels or 0),
            duration=float(self.declared_v if capped and self.declared_v else span),
            source_width=int(self.width), source_height=int(self.height), capped=capped,
            face_fallback_frames=report.fallback_frames if report else 0,
            face_searched=report.detect_frames if report else 0,
            face_found=report.detected if report else 0,
        )

    def _check_truncated(self, video_span: Fraction) -> None:
        """The ``truncated`` rule, past decoding errors and MP4s cut inside a box: a stream
        decodes to under :data:`TRUNCATED_FRACTION` of what the container declares, and by
        at least 2 frames / 0.1 s: the video's frame count, the audio's duration, or (for
        containers like Matroska that declare only an overall duration) the longer decoded
        stream against that. A stream merely shorter than the other is judged by the
        ``length-mismatch`` rule; with ``max_seconds`` only the decoded part counts."""
        n, declared = self.n_src, self.declared_frames
        if declared and n < TRUNCATED_FRACTION * declared and declared - n >= 2:
            self._truncated(f"the video stream decodes to {n} frames but the container "
                            f"declares {declared}")
        got_a = Fraction(self.a_samples, self.a_rate) if self.a_rate else Fraction(0)
        if self.declared_a and self.a_samples and _short(got_a, self.declared_a):
            self._truncated(f"the audio stream decodes to {float(got_a):.2f} s but the "
                            f"container declares {float(self.declared_a):.2f} s")
        got = max(video_span, got_a)
        if self.declared_all and _short(got, self.declared_all):
            self._truncated(f"the streams decode to {float(got):.2f} s but the container "
                            f"declares {float(self.declared_all):.2f} s")

    def _truncated(self, what: str) -> None:
        raise BadMediaError(self.path, f"{what} (cut short?)", "truncated")


def _short(got: Fraction, want: Fraction) -> bool:
    return got < TRUNCATED_FRACTION * want and want - got >= Fraction(1, 10)


def _fit(path: Path, frames: np.ndarray, audio: np.ndarray,
         pipeline: Pipeline) -> tuple[np.ndarray, np.ndarray]:
    """Both streams cut to the shorter (see the module docs), or ``length-mismatch``."""
    spf, rate, n = pipeline.samples_per_frame, pipeline.sample_rate, len(frames)
    dur_v, dur_a = n / pipeline.fps, len(audio) / rate
    if abs(dur_v - dur_a) > max(MISMATCH_SECONDS, MISMATCH_FRACTION * max(dur_v, dur_a)):
        raise BadMediaError(path, f"audio ({dur_a:.2f} s) and video ({dur_v:.2f} s) durations "
                            f"differ by more than max({MISMATCH_SECONDS} s, "
                            f"{MISMATCH_FRACTION:.0%})", "length-mismatch")
    if len(audio) < n * spf:
        if n * spf - len(audio) <= AUDIO_PAD_TOLERANCE * rate:
            audio = np.concatenate([audio, np.zeros(n * spf - len(audio), np.float32)])
        else:
            n = len(audio) // spf
    if n == 0:
        raise BadMediaError(path, "the streams overlap for less than one frame", "too-short")
    return frames[:n], np.ascontiguousarray(audio[: n * spf])


def _iso_bmff_problem(path: Path) -> str | None:
    """Why an MP4/MOV file (one starting with an ``ftyp`` box) cannot be opened, if its
    top-level boxes show it: one runs past the end of the file, or there is no ``moov``."""
    seen: set[bytes] = set()
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if f.read(8)[4:8] != b"ftyp":
                return None
            offset = 0
            while offset + 8 <= size:
                f.seek(offset)
                hdr = f.read(16)
                box, kind = int.from_bytes(hdr[:4], "big"), hdr[4:8]
                if box == 1 and len(hdr) >= 16:
                    box = int.from_bytes(hdr[8:16], "big")
                elif box == 0:
                    box = size - offset
                if box < 8:
                    return None
                seen.add(kind)
                if offset + box > size:
                    return (f"the file ends inside its {kind.decode('latin-1')!r} box "
                            f"({size} of {offset + box} bytes): it was cut short")
                offset += box
    except OSError:
        return None
    return None if b"moov" in seen else \
        "the MP4/MOV file holds no 'moov' index box (never finalised?)"


def _why(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(msg).strip().rstrip(".")


def _seconds(value: Any, time_base: Any) -> Fraction | None:
    if value is None or time_base is None or value <= 0:
        return None
    return Fraction(value) * Fraction(time_base)
