"""Decoding audio-visual files with PyAV into the benchmark's fixed media conventions.

Every video leaves here as a :class:`Clip`: frames resampled to ``Pipeline.fps`` (25) by
presentation timestamps, as uint8 RGB of shape (N, 3, H, W), and audio resampled to
``Pipeline.sample_rate`` (16 kHz), mono (channels averaged), float32 in [-1, 1], exactly
``sample_rate / fps`` (640) samples per frame, so that frame ``k`` and samples
``[k * 640, (k + 1) * 640)`` cover the same 40 ms of the source.

How the two streams are aligned and cut:

* Time zero is the first video frame's presentation time. Output frame ``k`` shows the source
  frame whose presentation interval ``[pts_i, pts_{i+1})`` contains ``t0 + k / fps`` (so
  variable frame rates, 29.97 fps and 12 fps sources all resample correctly). The last
  source frame lasts its own duration (or the median frame interval when the file does not
  say).
* Audio is placed on the same clock: samples before ``t0`` are dropped, a late start is
  filled with silence. Encoder padding at the end (AAC adds ~1024 samples) is cut back to
  the stream's declared duration.
* When the streams' durations differ by more than ``max(0.5 s, 10 %)`` the file is rejected
  (``length-mismatch``). Within that, both are cut to the shorter: audio short by at most
  :data:`AUDIO_PAD_TOLERANCE` seconds (a few ms of rounding) is padded with zeros, otherwise the
  video is cut to the last frame the audio fully covers.

Speed: a process with two cores or more to decode on hands the audio to a helper process
(:mod:`avbench.media._audioproc`, same functions, same samples) while it decodes the video;
video is decoded with FFmpeg's threading or in one thread (see :func:`decoder_threading`),
and only source frames that an output frame shows
are converted, with swscale contexts reused for the whole clip, into planar RGB at the
output size, on a second thread while the next frames decode
(:mod:`avbench.media._convthread`, same bytes in the same order); where
:mod:`avbench.media._swscale` applies, swscale writes straight into the clip's frame
buffer (same bytes, no temporary frame and no copy). A source that needs
resizing is first cut to its centre square by libavfilter's ``crop`` (which moves plane
pointers and copies nothing); a YUV frame is then scaled in its
own format (half-size chroma for 4:2:0) and only then converted to RGB by swscale's fast
unscaled converter (one pass scaling straight to planar RGB takes twice as long; it is kept
for other pixel formats and for output widths that are not a multiple of 16, see
:class:`_Geometry`). Audio is downmixed to float mono frame by frame, straight from the
frames' planes into one buffer, and resampled by libsoxr in one call. On a 10 s 224x224 clip
this is faster than decoding with ``frame.to_ndarray(format="rgb24")``.

Known limits: audio is assumed contiguous after its first timestamp (a gap in the middle of
the audio stream is not re-timed); the last frame of a variable-frame-rate file lasts what
the container says (or the median frame interval).

Files that cannot be used raise :class:`avbench.errors.BadMediaError` with a ``kind``:
``missing``, ``empty`` (0 bytes), ``unreadable`` (not a media container, corrupt header),
``truncated`` (see :func:`_check_truncated`: decoding fails after the first frame, an MP4
ends inside a box, or a stream yields less than 90 % of what the container declares), ``no-video``, ``no-audio``,
``length-mismatch``, ``too-short`` (no decodable frame) and, with face cropping, ``no-face``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from avbench.errors import BadMediaError

if TYPE_CHECKING:  # pragma: no cover
    from avbench.media.face import FaceDetector

#: Bump whenever the arrays :func:`decode` returns change for the same file and Pipeline
#: (the prepared cache is keyed by it, so a bump re-prepares everything). 2: crop first,
#: scale in YUV; 3: audio resampled by libsoxr (version 2 was also used, briefly, with
#: FFmpeg's resampler, so its entries may hold either).
PIPELINE_VERSION = 3

#: Audio shorter than the video by at most this many seconds is padded with zeros instead of
#: cutting a video frame (rounding between the two streams' clocks).
AUDIO_PAD_TOLERANCE = 0.010

#: Streams whose durations differ by more than max(MISMATCH_SECONDS, MISMATCH_FRACTION of the
#: longer) are rejected as ``length-mismatch``.
MISMATCH_SECONDS = 0.5
MISMATCH_FRACTION = 0.10

#: A stream that decodes to less than this fraction of what its container declares is
#: ``truncated``.
TRUNCATED_FRACTION = 0.90

#: Face cropping holds the clip at a working resolution whose short side is at most this many
#: pixels (or 2 x the output size, when larger), and lowers it for very long clips so the
#: working frames stay within FACE_WORK_BUDGET bytes.
FACE_WORK_SHORT_SIDE = 540
FACE_WORK_BUDGET = 1 << 30
#: How often per second of video the face detector looks (every 10th frame at 25 fps).
FACE_DETECTIONS_PER_SECOND = 2.5

BAD_MEDIA_KINDS = (
    "missing",
    "empty",
    "unreadable",
    "truncated",
    "no-video",
    "no-audio",
    "length-mismatch",
    "too-short",
    "no-face",
)


@dataclass(frozen=True)
class Pipeline:
    """How sources are turned into clips. Part of every cache key (see :meth:`key`).

    ``size`` is the side of the square output frames (None keeps the source size; non-square
    sources are centre-cropped to a square before resizing). ``max_seconds`` caps how much
    of each source is decoded (long KoDF videos). ``face_crop`` detects the face and crops a
    square around it (full-frame datasets); it needs a ``size``.
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
        object.__setattr__(self, "fps", int(self.fps))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "size", None if self.size is None else int(self.size))
        if self.max_seconds is not None:
            object.__setattr__(self, "max_seconds", float(self.max_seconds))
        object.__setattr__(self, "face_crop", bool(self.face_crop))
        if self.fps < 1 or self.sample_rate < 1 or self.sample_rate % self.fps:
            raise ValueError(
                f"bad Pipeline: sample_rate {self.sample_rate} must be a positive multiple of "
                f"fps {self.fps}"
            )
        if self.size is not None and self.size < 8:
            raise ValueError(f"bad Pipeline: size {self.size} < 8")
        if self.max_seconds is not None and not self.max_seconds * self.fps >= 1:
            raise ValueError(
                f"bad Pipeline: max_seconds {self.max_seconds} must cover at least one frame"
            )
        if self.face_crop and self.size is None:
            raise ValueError("bad Pipeline: face_crop needs an output size")

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Short stable hash of every field and :data:`PIPELINE_VERSION`."""
        blob = json.dumps({"version": PIPELINE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class Clip:
    """A decoded video: ``frames`` uint8 (N, 3, H, W), ``audio`` float32 (N * spf,).

    ``duration`` is the source video's duration in seconds (decoded, or as the container
    declares it when ``max_seconds`` stopped decoding early). ``padded_frames`` counts frames
    added by loop padding (see :func:`avbench.media.segments.loop_pad`);
    ``face_fallback_frames`` counts frames whose face box came from a neighbouring detection.
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

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

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


# --------------------------------------------------------------------------------------------
# video


class _FrameBuffer:
    """A growable (N, 3, H, W) uint8 array written one frame at a time."""

    def __init__(self, shape: tuple[int, ...], capacity: int) -> None:
        self.shape = shape
        self.data = np.empty((max(capacity, 1), *shape), dtype=np.uint8)
        self.n = 0
        self.frame_bytes = math.prod(shape)
        self.base = self.data.ctypes.data  # the address of frame 0

    def next_slot(self) -> np.ndarray:
        if self.n == len(self.data):
            grown = np.empty((2 * len(self.data), *self.shape), dtype=np.uint8)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
            self.base = grown.ctypes.data
        self.n += 1
        return self.data[self.n - 1]

    def array(self) -> np.ndarray:
        out = self.data[: self.n]
        if self.n < 0.8 * len(self.data):
            out = out.copy()
        return out


#: extra arguments of VideoReformatter.reformat: swscale's own threads (recent PyAV asks for
#: automatic threading) cost more than they save on frames this small, most of all while the
#: decoder's threads are busy; one thread converts a 224x224 frame 2-5x faster, with the same
#: pixels. Emptied on the first call if this PyAV does not take ``threads``.
_REFORMAT_EXTRA: dict[str, Any] = {"threads": 1}
_TO_GBRP: dict[str, Any] = {"format": "gbrp"}


def _reformat(reformatter: Any, frame: Any, kwargs: dict[str, Any]) -> Any:
    """``reformatter.reformat(frame, **kwargs)`` with :data:`_REFORMAT_EXTRA`."""
    try:
        return reformatter.reformat(frame, **kwargs, **_REFORMAT_EXTRA)
    except TypeError:
        if not _REFORMAT_EXTRA:
            raise
        _REFORMAT_EXTRA.clear()  # an older PyAV: no ``threads`` argument
        return reformatter.reformat(frame, **kwargs)


class _CentreCrop:
    """The centre square of each frame, cut by libavfilter's ``crop`` filter: it only moves
    the planes' data pointers (nothing is copied; ~5 µs a frame). The crop filter rounds
    offsets and sides down to the chroma subsampling (even for 4:2:0), so chroma stays
    aligned. The graph is rebuilt if the frames' size or pixel format changes mid-stream."""

    def __init__(self) -> None:
        self._key: tuple[int, int, str] | None = None
        self._graph: Any = None

    def __call__(self, frame: Any) -> Any:
        key = (frame.width, frame.height, frame.format.name)
        if key != self._key:
            self._build(*key, frame.time_base)
        self._graph.vpush(frame)
        return self._graph.vpull()

    def _build(self, width: int, height: int, fmt: str, time_base: Any) -> None:
        import av.filter

        side = min(width, height)
        graph = av.filter.Graph()
        graph.threads = 1
        src = graph.add_buffer(
            width=width, height=height, format=fmt, time_base=time_base or Fraction(1, 25)
        )
        crop = graph.add(
            "crop", f"w={side}:h={side}:x={(width - side) // 2}:y={(height - side) // 2}"
        )
        graph.link_nodes(src, crop, graph.add("buffersink"))
        graph.configure()
        self._graph, self._key = graph, (width, height, fmt)


class _Geometry:
    """Centre crop + resize of each source frame to planar RGB (see :meth:`convert`)."""

    def __init__(self, width: int, height: int, pipeline: Pipeline, n_est: int) -> None:
        self.face = pipeline.face_crop
        self.x0 = self.y0 = 0
        self.crop: _CentreCrop | None = None
        if self.face:
            # working resolution for face detection and cropping, (N, H, W, 3)
            short = min(width, height)
            target = max(FACE_WORK_SHORT_SIDE, 2 * (pipeline.size or 0))
            scale = min(1.0, target / short)
            per_pixel = 3 * max(n_est, 1)
            if width * height * scale * scale * per_pixel > FACE_WORK_BUDGET:
                scale = math.sqrt(FACE_WORK_BUDGET / (width * height * per_pixel))
                scale = min(1.0, max(scale, (pipeline.size or 0) / short))
            self.sw = max(2, round(width * scale))
            self.sh = max(2, round(height * scale))
            self.out_w, self.out_h = self.sw, self.sh
            self.shape: tuple[int, ...] = (self.sh, self.sw, 3)
            self.resize = (self.sw, self.sh) != (width, height)
            downscale = self.sw * self.sh < width * height
        elif pipeline.size is None:
            self.sw, self.sh = width, height
            self.out_w, self.out_h = width, height
            self.shape = (3, height, width)
            self.resize = downscale = False
        else:
            size = pipeline.size
            short = min(width, height)
            self.out_w = self.out_h = size
            self.shape = (3, size, size)
            self.resize = short != size
            downscale = short > size
            if self.resize:
                # crop the centre square of the source, then scale it to size x size
                self.sw = self.sh = size
                if width != height:
                    self.crop = _CentreCrop()
            else:
                # the short side is already `size`: convert, then slice out the centre
                self.sw, self.sh = width, height
                self.x0 = (width - size) // 2
                self.y0 = (height - size) // 2
        self.interpolation = "AREA" if downscale else "BICUBIC"
        # swscale's unscaled YUV -> planar RGB converter (FFmpeg 8 in PyAV 18) writes garbage
        # into the last columns of 4:2:0 and 4:2:2 frames 16k + 1 to 16k + 8 pixels wide
        # (24, 100, 854, ...). Its rgb24 converter gives the same pixels without that fault,
        # so unscaled conversions at widths that are not a multiple of 16 go through rgb24 and
        # a transpose, and resizing does the two-pass conversion (see convert) only to
        # output widths that are.
        planar_ok = self.sw % 16 == 0
        self._two_pass = self.resize and not self.face and planar_ok
        self._packed = not self.resize and not self.face and not planar_ok
        self._reformatter: Any = None
        self._rgb: Any = None
        # per-frame constants, made once (the conversion runs for every output frame)
        self._kwargs: dict[str, Any] = {"format": "rgb24" if self.face or self._packed else "gbrp"}
        self._scale: dict[str, Any] = {}
        if self.resize:
            self._scale = {"width": self.sw, "height": self.sh, "interpolation": self.interpolation}
            self._kwargs.update(self._scale)
        self._ys = slice(self.y0, self.y0 + self.out_h)
        self._xs = slice(self.x0, self.x0 + self.out_w)
        # the converted picture is the output as it is (no centre slice): swscale may then
        # write straight into the clip's buffer (see _direct_for)
        self._whole = (self.x0, self.y0, self.out_w, self.out_h) == (0, 0, self.sw, self.sh)
        self._direct_key: tuple[int, int, str, int, int] | None = None
        self._direct: Any = None
        # convert() hands the frame, as it is, to the direct path (where that applies)
        self._unscaled = not self.face and not self._packed and not self.resize and self._whole

    def _direct_for(self, frame: Any) -> Any:
        """The :class:`avbench.media._swscale.DirectRGB` for frames like ``frame`` (None
        where that path is off or does not apply), made once per geometry and format."""
        key = (frame.width, frame.height, frame.format.name, frame.colorspace,
               frame.color_range)
        if key != self._direct_key:
            from avbench.media._swscale import DirectRGB

            self._direct_key, self._direct = key, DirectRGB.converter(frame)
        return self._direct

    def convert_at(self, frame: Any, dst: np.ndarray, address: int) -> None:
        """:meth:`convert`, with ``dst``'s address given: a frame like the last one on the
        direct unscaled path goes straight to it, with as little Python as can be (the
        conversion thread holds the GIL for this part, and the decoding thread waits)."""
        if self._unscaled and self._direct is not None and (
                frame.width, frame.height, frame.format.name, frame.colorspace,
                frame.color_range) == self._direct_key:
            self._direct.convert_at(frame, address)
        else:
            self.convert(frame, dst)

    def convert(self, frame: Any, dst: np.ndarray) -> None:
        """Write ``frame`` into ``dst``: (3, H, W) planar RGB, or (H, W, 3) for face work.

        Resizing a YUV frame to planar RGB takes two swscale passes: the (cropped) frame is
        scaled in its own YUV format (half-size chroma for 4:2:0), then converted to RGB at
        the output size by swscale's fast unscaled converter. One pass that scales straight
        to planar RGB takes about twice as long (it interpolates chroma to full resolution
        and converts every pixel in generic code), but is still used for other formats.
        """
        if self._reformatter is None:
            # one reformatter per pass keeps its swscale context: creating one per frame
            # (what VideoFrame.reformat does) costs more than the conversion itself
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()
            self._rgb = VideoReformatter()
        if self.crop is not None:
            frame = self.crop(frame)
        if self.face or self._packed:
            img = _reformat(self._reformatter, frame, self._kwargs)
            plane = img.planes[0]
            buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            rgb = buf[:, : 3 * self.sw].reshape(self.sh, self.sw, 3)
            if self.face:
                dst[...] = rgb
            else:
                dst[...] = rgb[self._ys, self._xs].transpose(2, 0, 1)
            return
        if self._two_pass and frame.format.name.startswith("yuv"):
            img = _reformat(self._reformatter, frame, self._scale)  # scaled, still YUV
            if self._whole and self._direct_for(img) is not None:
                self._direct.convert(img, dst)  # type: ignore[union-attr]
                return
            img = _reformat(self._rgb, img, _TO_GBRP)
        elif not self.resize and self._whole and self._direct_for(frame) is not None:
            self._direct.convert(frame, dst)  # type: ignore[union-attr]
            return
        else:
            img = _reformat(self._reformatter, frame, self._kwargs)
        g, b, r = img.planes  # gbrp planes are G, B, R
        ys, xs = self._ys, self._xs
        for channel, p in ((0, r), (1, g), (2, b)):
            dst[channel] = np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[ys, xs]


def _copy_slot(src: np.ndarray, dst: np.ndarray) -> None:
    """A source frame shown again: its converted pixels into the next slot."""
    dst[...] = src


# --------------------------------------------------------------------------------------------
# audio

_SAMPLE_DTYPES = {
    "u8": np.uint8,
    "s16": np.int16,
    "s32": np.int32,
    "s64": np.int64,
    "flt": np.float32,
    "dbl": np.float64,
}
_SAMPLE_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9.223372036854775808e18}


class _AudioCollector:
    """Decoded audio, downmixed to float32 mono in batches of frames into one growing buffer.

    Frames are kept as views of their planes until :data:`BATCH` of them (or a change of
    sample format or channel count) have arrived; the batch is then converted in a few
    vectorised steps while its samples are still in the cache: channels summed in order and
    divided by their number (what ``np.mean`` over the channels gives), integer samples
    scaled to [-1, 1]. Every step is per sample, so the result is the same, bit for bit, as
    converting the whole stream at once. Why batches: 44.1 kHz stereo AAC comes in ~430
    frames per 10 s; a few numpy calls per frame cost more than the samples' arithmetic, and
    keeping every frame to the end costs cache misses on a stream several MB long.
    """

    BATCH = 64

    def __init__(self, capacity: int = 0, rate: int = 0) -> None:
        self._buf = np.empty(max(capacity, 4096), dtype=np.float32)
        self._done = 0  # samples converted into _buf
        self.samples = 0  # samples added (converted or pending)
        self._key: tuple[str, int] | None = None
        self._views: list[list[np.ndarray]] = []  # pending frames, one list per plane
        #: the first frame's time (None before any) and the sample rate (the first frame's,
        #: else what the stream declared)
        self.start: Fraction | None = None
        self.rate = rate

    @classmethod
    def for_stream(cls, stream: Any, declared: Fraction | None) -> _AudioCollector:
        """A collector with room for the stream's declared duration (at most 2**24 samples:
        a header can lie; the buffer grows) and the stream's declared rate."""
        rate = stream.codec_context.sample_rate
        capacity = min(round(float(declared) * rate) + 4096, 1 << 24) if declared and rate else 0
        return cls(capacity, rate or stream.rate or 0)

    def add(self, frame: Any) -> None:
        if self.start is None:
            self.rate = frame.sample_rate or self.rate
            self.start = Fraction(frame.time) if frame.time is not None else Fraction(0)
        fmt, channels, n = frame.format.name, frame.layout.nb_channels, frame.samples
        if n <= 0:
            return
        if (fmt, channels) != self._key:
            self._flush()
            self._key = (fmt, channels)
            planar = fmt.endswith("p")
            self._views = [[] for _ in range(channels if planar else 1)]
        dtype = _SAMPLE_DTYPES[fmt.rstrip("p")]
        count = n if fmt.endswith("p") else n * channels
        for plane, store in zip(frame.planes, self._views, strict=False):
            store.append(np.frombuffer(plane, dtype=dtype, count=count))
        self.samples += n
        if len(self._views[0]) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._views or not self._views[0]:
            return
        assert self._key is not None
        fmt, channels = self._key
        m = sum(len(x) for x in self._views[0]) // (1 if len(self._views) > 1 else channels)
        end = self._done + m
        if end > len(self._buf):
            grown = np.empty(max(end, 2 * len(self._buf)), dtype=np.float32)
            grown[: self._done] = self._buf[: self._done]
            self._buf = grown
        dst = self._buf[self._done : end]
        if fmt == "fltp" and len(self._views) > 1:
            # what AAC decoders give: sum the channels straight into the buffer
            np.concatenate(self._views[0], out=dst)
            for v in self._views[1:]:
                dst += np.concatenate(v)
            dst /= len(self._views)
        else:
            dst[...] = self._convert(fmt, channels, [np.concatenate(v) for v in self._views])
        self._done = end
        for v in self._views:
            v.clear()

    @staticmethod
    def _convert(fmt: str, channels: int, flat: list[np.ndarray]) -> np.ndarray:
        """Samples of one format as float32 mono in [-1, 1]: channels averaged."""
        base = fmt.rstrip("p")
        acc = np.float64 if base in ("s32", "s64", "dbl") else np.float32
        if len(flat) > 1:  # planar: one array per channel, summed in order (as np.mean does)
            mono = flat[0].astype(acc)
            for channel in flat[1:]:
                mono += channel
            mono /= len(flat)
        elif channels > 1:  # packed: interleaved
            mono = flat[0].reshape(-1, channels).mean(axis=1, dtype=acc)
        else:
            mono = flat[0]
        mono = np.asarray(mono, dtype=np.float32)
        if base in _SAMPLE_SCALE:
            if base == "u8":
                mono = mono - 128.0
            mono = mono / np.float32(_SAMPLE_SCALE[base])
        return mono

    def mono(self) -> np.ndarray:
        """Every sample added, float32 mono in [-1, 1] (a view of the buffer)."""
        self._flush()
        return self._buf[: self._done]


def _resample_audio(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Resample mono float32 audio with libsoxr (its "very high quality" band-limited
    filter, delay-compensated, in one call). Measured on 10 s of 44.1 kHz audio to 16 kHz:
    1.9 ms, against 8.5 ms for FFmpeg's swresample through PyAV."""
    if rate == target or len(x) == 0:
        return x.astype(np.float32, copy=False)
    import soxr

    return np.asarray(soxr.resample(x, rate, target), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# decode


_CORES: dict[str, int] = {}


def set_decoding_cores(cores: int | None) -> None:
    """How many cores this process may decode on (a share, when several processes decode
    at once); None goes back to the cores the process is allowed to run on."""
    if cores is None:
        _CORES.pop("cores", None)
    else:
        _CORES["cores"] = max(1, int(cores))


def available_cores() -> int:
    if "cores" in _CORES:
        return _CORES["cores"]
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def decoder_threading(audio_helper: bool = False) -> str:
    """The video decoder's ``thread_type``: "NONE" (one thread) or "AUTO" (FFmpeg's frame +
    slice threads), for the cores this process may decode on (:func:`available_cores`).

    * one core (``avbench data prepare --workers`` as many as the cores): one thread, since
      FFmpeg's threads cost 224x224 h264 about half again as much CPU time;
    * two cores: one thread when the audio helper process (:mod:`avbench.media._audioproc`)
      takes the other core, FFmpeg's threads otherwise (they decode while this thread
      converts);
    * more: FFmpeg's threads.

    docs/benchmarks.md measures these on two cores. ``AVBENCH_DECODE_THREADS=1`` forces
    one thread, ``=0`` FFmpeg's threading."""
    forced = os.environ.get("AVBENCH_DECODE_THREADS", "").strip()
    if forced in ("0", "1"):
        return "NONE" if forced == "1" else "AUTO"
    cores = available_cores()
    if cores <= 1 or (cores == 2 and audio_helper):
        return "NONE"
    return "AUTO"


def _finish_audio(x: np.ndarray, a_rate: int, a_start: Fraction, t0: Fraction,
                  declared_a: Fraction | None, *, capped: bool, cap_time: Fraction | None,
                  target_rate: int) -> np.ndarray:
    """Collected mono audio ``x`` (source rate, first sample at ``a_start``) put on the
    video's clock (``t0``: its first frame), encoder padding cut back to the declared
    duration, cut to the cap, resampled to ``target_rate`` and clipped to [-1, 1]."""
    if declared_a and not capped:
        declared_n = round(declared_a * a_rate)
        if declared_n < len(x) <= declared_n + a_rate // 5:
            x = x[:declared_n]
    offset = round((a_start - t0) * a_rate)
    if offset > 0:
        x = np.concatenate([np.zeros(offset, dtype=np.float32), x])
    elif offset < 0:
        x = x[-offset:]
    if cap_time is not None:
        x = x[: math.ceil(cap_time * a_rate) + a_rate // 10]
    audio = _resample_audio(x, a_rate, target_rate)
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio


class _InOneProcess(Exception):
    """Raised inside :func:`_decode_open` when the audio helper cannot give this file's
    audio (or the file is bad): :func:`decode` decodes it again in one process."""


def _discard(stream: Any) -> None:
    """Have the demuxer skip ``stream``'s packets (2 % of a 224x224 clip's decoding time);
    a no-op with a PyAV that cannot."""
    try:
        from av.stream import Discard

        stream.discard = Discard.all
    except (ImportError, AttributeError, ValueError, TypeError):
        pass


def _seconds(value: Any, time_base: Any) -> Fraction | None:
    if value is None or time_base is None or value <= 0:
        return None
    return Fraction(value) * Fraction(time_base)


def decode(
    path: str | Path,
    pipeline: Pipeline | None = None,
    *,
    face_detector: FaceDetector | None = None,
) -> Clip:
    """Decode ``path`` into a :class:`Clip` following ``pipeline`` (see the module docs).

    Raises :class:`avbench.errors.BadMediaError` naming the file, the reason and its kind.
    With ``pipeline.face_crop`` the face is cropped by ``face_detector`` (a
    :class:`avbench.media.face.HaarFaceDetector` when None).
    """
    pipeline = pipeline or Pipeline()
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except FileNotFoundError:
        raise BadMediaError(path, "file does not exist", "missing") from None
    except OSError as e:
        raise BadMediaError(
            path, f"cannot read the file ({e.strerror or e})", "unreadable"
        ) from None
    if nbytes == 0:
        raise BadMediaError(path, "file is empty (0 bytes)", "empty")
    with _open(path) as container:
        try:
            return _decode_open(container, path, pipeline, face_detector, helper=True)
        except _InOneProcess:
            pass
    with _open(path) as container:  # again, audio and video in this process
        return _decode_open(container, path, pipeline, face_detector, helper=False)


def _open(path: Path) -> Any:
    import av

    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        why = _iso_bmff_problem(path)
        if why and "cut short" in why:
            raise BadMediaError(path, why, "truncated") from None
        reason = why or f"not a readable media file ({_why(e)})"
        raise BadMediaError(path, reason, "unreadable") from None


def _ticks_per_frame(avg_rate: Fraction | None, fps: int, tb_num: int, tb_den: int) -> int:
    """One source frame interval in time-base ticks (for frames without a timestamp)."""
    interval = 1 / avg_rate if avg_rate else Fraction(1, fps)
    return max(1, round(interval / Fraction(tb_num, tb_den)))


def _why(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return str(msg).strip().rstrip(".")


def _decode_open(container: Any, path: Path, pipeline: Pipeline, face_detector: Any, *,
                 helper: bool) -> Clip:
    """Decode an open container; with ``helper``, the audio goes to the audio helper process
    where it applies (see :mod:`avbench.media._audioproc`), and any problem with the file
    raises :class:`_InOneProcess` so that :func:`decode` reports it from one process."""
    from avbench.media import _convthread

    conv = _convthread.ClipConversion() if _convthread.wanted() else None
    job = None
    if helper and pipeline.max_seconds is None and container.streams.video and \
            container.streams.audio:
        from avbench.media import _audioproc

        ast = container.streams.audio[0]
        job = _audioproc.job(str(path), _seconds(ast.duration, ast.time_base),
                             pipeline.sample_rate)
    try:
        if job is None:
            return _decode_streams(container, path, pipeline, face_detector, None, conv)
        try:
            return _decode_streams(container, path, pipeline, face_detector, job, conv)
        except BadMediaError:
            raise _InOneProcess from None
        finally:
            job.cancel()  # a no-op once its answer has come
    finally:
        if conv is not None:
            conv.cancel()  # a no-op once every conversion is done


def _decode_streams(container: Any, path: Path, pipeline: Pipeline, face_detector: Any,
                    job: Any, conv: Any) -> Clip:
    import av

    if not container.streams.video:
        raise BadMediaError(path, "the file holds no video stream", "no-video")
    if not container.streams.audio:
        raise BadMediaError(path, "the file holds no audio stream", "no-audio")
    vs = container.streams.video[0]
    ast = container.streams.audio[0]
    width, height = vs.codec_context.width, vs.codec_context.height
    if not width or not height:
        raise BadMediaError(path, "the video stream declares no frame size", "unreadable")
    vs.thread_type = decoder_threading(audio_helper=job is not None)

    fps = pipeline.fps
    cap_frames = math.floor(pipeline.max_seconds * fps + 1e-9) if pipeline.max_seconds else None
    cap_time = Fraction(cap_frames, fps) if cap_frames is not None else None
    avg_rate = Fraction(vs.average_rate) if vs.average_rate else None
    vtb = Fraction(vs.time_base) if vs.time_base else None
    declared_v = _seconds(vs.duration, vtb)
    declared_frames = vs.frames or (round(declared_v * avg_rate) if declared_v and avg_rate else 0)
    declared_a = _seconds(ast.duration, ast.time_base)
    container_duration = (
        Fraction(container.duration, 1_000_000)
        if container.duration and container.duration > 0
        else None
    )
    if declared_v is None:
        declared_v = container_duration

    n_est = round(float(declared_v) * fps) + 2 if declared_v else 64
    if cap_frames is not None:
        n_est = min(n_est, cap_frames)
    geometry = _Geometry(width, height, pipeline, n_est)
    out = _FrameBuffer(geometry.shape, n_est)

    # Video timing in integer ticks of the stream's time base: output frame k is due while
    # k / fps < (pts - pts0) * tb, i.e. k < ceil((pts - pts0) * tb * fps).
    tb_num, tb_den = (vtb.numerator, vtb.denominator) if vtb else (1, fps)
    fallback_step = _ticks_per_frame(avg_rate, fps, tb_num, tb_den)

    def due(ticks: int) -> int:
        n_due = -((-ticks * tb_num * fps) // tb_den)
        return n_due if cap_frames is None else min(n_due, cap_frames)

    pts0: int | None = None
    prev: Any = None
    prev_d = 0  # previous source frame's ticks since pts0
    prev_slot: np.ndarray | None = None  # prev's converted pixels, once emitted
    steps: list[int] = []
    n_src = 0
    k = 0
    video_done = False

    if conv is not None:  # frames go to the conversion thread, in order
        conv.convert = geometry.convert_at
        convert, copy = conv.frame, conv.copy
    else:
        convert, copy = geometry.convert_at, _copy_slot

    def emit_until(ticks: int) -> None:
        nonlocal k, prev_slot
        stop = due(ticks)
        while k < stop:
            if conv is not None and out.n == len(out.data):
                conv.wait()  # the buffer is about to move: nothing may still write to it
            slot = out.next_slot()
            if prev_slot is None:
                convert(prev, slot, out.base + (out.n - 1) * out.frame_bytes)
                prev_slot = slot
            else:
                copy(prev_slot, slot)
            k += 1

    collector = _AudioCollector.for_stream(ast, declared_a)
    a_need: int | None = None  # samples needed to reach the cap (once both starts are known)
    audio_done = False

    streams = (vs,) if job is not None else (vs, ast)
    if job is not None:
        _discard(ast)  # the helper decodes it; the demuxer need not read its packets here
    try:
        for frame in container.decode(*streams):
            if isinstance(frame, av.AudioFrame):
                if audio_done:
                    continue
                collector.add(frame)
                if cap_time is not None and pts0 is not None:
                    if a_need is None:
                        t0 = Fraction(pts0 * tb_num, tb_den)
                        assert collector.start is not None
                        a_need = math.ceil((t0 + cap_time - collector.start) * collector.rate)
                    audio_done = collector.samples >= a_need
                if audio_done and video_done:
                    break
                continue
            if video_done:
                if audio_done:
                    break
                continue
            pts = frame.pts
            if pts0 is None:
                pts0 = pts if pts is not None else 0
                d = 0
                ftb = frame.time_base
                if ftb is not None and (ftb.numerator, ftb.denominator) != (tb_num, tb_den):
                    tb_num, tb_den = ftb.numerator, ftb.denominator  # frames count in these
                    fallback_step = _ticks_per_frame(avg_rate, fps, tb_num, tb_den)
                if job is not None:
                    job.start_time(Fraction(pts0 * tb_num, tb_den))
            else:
                d = pts - pts0 if pts is not None else prev_d + fallback_step
                if d <= prev_d:
                    continue  # out-of-order or repeated timestamp: keep the first
                steps.append(d - prev_d)
                emit_until(d)
            prev, prev_d, prev_slot = frame, d, None
            n_src += 1
            if cap_frames is not None and k >= cap_frames:
                video_done = True
                prev = None
                if audio_done:
                    break
    except av.FFmpegError as e:
        if n_src == 0:
            raise BadMediaError(
                path, f"cannot decode the video ({_why(e)})", "unreadable"
            ) from None
        raise BadMediaError(
            path,
            f"decoding failed after {n_src} frames ({_why(e)}): the file is damaged or cut short",
            "truncated",
        ) from None

    if n_src == 0 or pts0 is None:
        raise BadMediaError(path, "the video stream holds no decodable frame", "too-short")
    t0 = Fraction(pts0 * tb_num, tb_den)
    capped = cap_frames is not None and k >= cap_frames
    if prev is not None and not capped:
        # the last source frame lasts its own duration (or the typical interval)
        last = prev.duration if getattr(prev, "duration", None) else 0
        if not last > 0:
            last = sorted(steps)[len(steps) // 2] if steps else fallback_step
        emit_until(prev_d + last)
        video_span = Fraction((prev_d + last) * tb_num, tb_den)
    else:
        video_span = Fraction(k, fps)
    prev = None
    if conv is not None:
        conv.wait()  # every frame is in the buffer
    helped = None
    if job is not None:
        helped = job.result()
        if helped is None:
            raise _InOneProcess
        a_samples, a_rate = int(helped["a_samples"]), int(helped["a_rate"])
    else:
        a_samples, a_rate = collector.samples, collector.rate

    _check_truncated(
        path,
        capped=capped,
        cap_time=cap_time,
        n_src=n_src,
        declared_frames=declared_frames,
        avg_rate=avg_rate,
        video_span=video_span,
        a_samples=a_samples,
        a_rate=a_rate,
        declared_a=declared_a,
        container_duration=container_duration,
    )
    if a_samples == 0 or not a_rate:
        raise BadMediaError(path, "the audio stream holds no decodable samples", "no-audio")

    # ---- audio: on the video's clock, encoder padding cut, resampled
    if helped is not None:
        audio = helped["audio"]
    else:
        assert collector.start is not None
        audio = _finish_audio(collector.mono(), a_rate, collector.start, t0, declared_a,
                              capped=capped, cap_time=cap_time,
                              target_rate=pipeline.sample_rate)

    # ---- lengths
    spf = pipeline.samples_per_frame
    n = out.n
    dur_v = n / fps
    dur_a = len(audio) / pipeline.sample_rate
    if abs(dur_v - dur_a) > max(MISMATCH_SECONDS, MISMATCH_FRACTION * max(dur_v, dur_a)):
        raise BadMediaError(
            path,
            f"audio ({dur_a:.2f} s) and video ({dur_v:.2f} s) durations differ by more than "
            f"max({MISMATCH_SECONDS} s, {MISMATCH_FRACTION:.0%})",
            "length-mismatch",
        )
    need = n * spf
    if len(audio) < need:
        if need - len(audio) <= AUDIO_PAD_TOLERANCE * pipeline.sample_rate:
            audio = np.concatenate([audio, np.zeros(need - len(audio), dtype=np.float32)])
        else:
            n = len(audio) // spf
    if n == 0:
        raise BadMediaError(path, "the streams overlap for less than one frame", "too-short")
    frames = out.array()[:n]
    audio = np.ascontiguousarray(audio[: n * spf])

    fallback = 0
    if pipeline.face_crop:
        from avbench.media.face import HaarFaceDetector, crop_faces

        detector = face_detector if face_detector is not None else HaarFaceDetector()
        frames, report = crop_faces(
            frames,
            detector,
            size=int(pipeline.size or 0),
            every=max(1, round(fps / FACE_DETECTIONS_PER_SECOND)),
            source=str(path),
        )
        fallback = report.fallback_frames

    source_duration = declared_v if capped and declared_v else video_span
    return Clip(
        frames=frames,
        audio=audio,
        fps=fps,
        sample_rate=pipeline.sample_rate,
        source_fps=float(avg_rate) if avg_rate else n_src / max(float(video_span), 1e-9),
        source_sample_rate=int(a_rate),
        source_channels=int(ast.codec_context.channels or 0),
        duration=float(source_duration),
        face_fallback_frames=int(fallback),
        source_width=int(width),
        source_height=int(height),
        capped=bool(capped),
    )


def _check_truncated(
    path: Path,
    *,
    capped: bool,
    cap_time: Fraction | None,
    n_src: int,
    declared_frames: int,
    avg_rate: Fraction | None,
    video_span: Fraction,
    a_samples: int,
    a_rate: int,
    declared_a: Fraction | None,
    container_duration: Fraction | None,
) -> None:
    """The ``truncated`` rule.

    A file is truncated when decoding stops after the first frame with an error (see
    :func:`decode`), when an MP4/MOV file ends inside a box (its index was never written),
    or when what decodes falls short of what the container declares by more than 10 %
    (:data:`TRUNCATED_FRACTION`) and by at least 2 frames / 0.1 s: the video stream's frame
    count, the audio stream's duration, or (for containers that only declare an overall
    duration, like Matroska) the longer of the two decoded streams against that duration.
    A stream that is merely shorter than the other is not truncated but judged by the
    ``length-mismatch`` rule. With ``max_seconds`` only the decoded part is compared.
    """
    if capped:
        return
    if (
        declared_frames
        and n_src < TRUNCATED_FRACTION * declared_frames
        and declared_frames - n_src >= 2
    ):
        raise BadMediaError(
            path,
            f"the video stream decodes to {n_src} frames but the container "
            f"declares {declared_frames} (cut short?)",
            "truncated",
        )
    got_a = Fraction(a_samples, a_rate) if a_rate else Fraction(0)
    if declared_a and a_samples and _short(got_a, declared_a):
        raise BadMediaError(
            path,
            f"the audio stream decodes to {float(got_a):.2f} s but the container "
            f"declares {float(declared_a):.2f} s (cut short?)",
            "truncated",
        )
    if container_duration and _short(max(video_span, got_a), container_duration):
        raise BadMediaError(
            path,
            f"the streams decode to {float(max(video_span, got_a)):.2f} s but the "
            f"container declares {float(container_duration):.2f} s (cut short?)",
            "truncated",
        )


def _short(got: Fraction, want: Fraction) -> bool:
    return got < TRUNCATED_FRACTION * want and want - got >= Fraction(1, 10)


def _iso_bmff_problem(path: Path) -> str | None:
    """Why an MP4/MOV file (one that starts with an ``ftyp`` box) cannot be opened, if its
    top-level boxes show it: one runs past the end of the file (cut short), or no ``moov``
    index exists. None when the file is not ISO BMFF or its boxes look whole."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8 or head[4:8] != b"ftyp":
                return None
            offset, seen = 0, set()
            while offset + 8 <= size:
                f.seek(offset)
                hdr = f.read(16)
                box = int.from_bytes(hdr[:4], "big")
                kind = hdr[4:8]
                if box == 1 and len(hdr) >= 16:
                    box = int.from_bytes(hdr[8:16], "big")
                elif box == 0:
                    box = size - offset
                if box < 8:
                    return None
                seen.add(kind)
                if offset + box > size:
                    return (
                        f"the file ends inside its {kind.decode('latin-1')!r} box "
                        f"({size} of {offset + box} bytes): it was cut short"
                    )
                offset += box
    except OSError:
        return None
    if b"moov" not in seen:
        return "the MP4/MOV file holds no 'moov' index box (never finalised?)"
    return None
