"""Writing audio-visual files with PyAV (the synthetic benchmark and the tests use it)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

#: libx264 options that make its output a function of its input only: one thread (x264's
#: frame threads change the stream with the thread count, which follows the machine's cores)
#: and no assembly. On an AVX-512 machine the same frames gave one of two streams from run to
#: run, and the assembly paths do not give the C path's bytes, so the stream would also depend
#: on the CPU. The C path costs about 1.6x the encoding time.
X264_EXACT = {"threads": "1", "x264-params": "asm=0"}


def yuv420p_planes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3, H, W) uint8 RGB (H, W even) -> Y (N, H, W), U and V (N, H/2, W/2) uint8:
    BT.601 limited range, chroma from the mean of each 2x2 block, in integer arithmetic.

    The conversion is ours, not libswscale's: frames converted by libswscale came with rows
    whose padding bytes changed from process to process, and nothing uninitialised may reach
    the encoder if the same frames are to give the same file.
    """
    f = frames.astype(np.uint16)
    y = f[:, 0] * 66
    y += f[:, 1] * 129
    y += f[:, 2] * 25
    y += 128
    y >>= 8
    y += 16
    q = f[:, :, 0::2, 0::2] + f[:, :, 1::2, 0::2]
    q += f[:, :, 0::2, 1::2]
    q += f[:, :, 1::2, 1::2]
    r, g, b = (q[:, c].astype(np.int32) for c in range(3))
    u = (b * 112 - r * 38 - g * 74 + (512 + (128 << 10))) >> 10
    v = (r * 112 - g * 94 - b * 18 + (512 + (128 << 10))) >> 10
    return y.astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8)


#: zero bytes after each encoder frame's last plane: libx264 reads a little past the end of
#: a picture's planes, and what it finds there reaches the stream
_TAIL = 4096


def yuv420p_frames(frames: np.ndarray, chunk: int = 16) -> Iterator[Any]:
    """(N, 3, H, W) uint8 RGB (H, W even) as yuv420p ``av.VideoFrame``s over buffers of our
    own, every byte of which is set: the planes without row padding, then :data:`_TAIL` zero
    bytes (in a frame allocated by FFmpeg those bytes are uninitialised). Converted ``chunk``
    frames at a time."""
    import av

    n, _, h, w = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {w}x{h}")
    size = h * w * 3 // 2
    for g in range(0, n, chunk):
        y, u, v = yuv420p_planes(frames[g : g + chunk])
        for k in range(len(y)):
            buf = np.zeros(size + _TAIL, np.uint8)
            buf[: h * w] = y[k].reshape(-1)
            buf[h * w : h * w * 5 // 4] = u[k].reshape(-1)
            buf[h * w * 5 // 4 : size] = v[k].reshape(-1)
            yield av.VideoFrame.from_numpy_buffer(buf[:size].reshape(h * 3 // 2, w),
                                                  format="yuv420p")


def write_av(
    path: str | Path,
    frames: np.ndarray | None,
    audio: np.ndarray | None,
    *,
    fps: float | Fraction = 25,
    sample_rate: int = 16000,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    crf: int = 23,
    pix_fmt: str = "yuv420p",
    audio_bit_rate: int = 64000,
) -> Path:
    """Write ``frames`` (N, H, W, 3) uint8 RGB and ``audio`` float32 (S,) or (S, C) in [-1, 1].

    Either stream may be None (to make files without audio or without video). The container
    follows the suffix (mp4, mov, mkv, webm ...). ``fps`` may be a Fraction (30000/1001).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(100000)
    with av.open(str(path), mode="w") as container:
        vstream = astream = None
        if frames is not None:
            frames = np.ascontiguousarray(frames, dtype=np.uint8)
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"frames must be (N, H, W, 3), got {frames.shape}")
            vstream = container.add_stream(video_codec, rate=rate)
            vstream.width = frames.shape[2]
            vstream.height = frames.shape[1]
            vstream.pix_fmt = pix_fmt
            if video_codec == "libx264":
                vstream.options = {"crf": str(crf), "preset": "veryfast", **X264_EXACT}
        if audio is not None:
            a = np.asarray(audio, dtype=np.float32)
            if a.ndim == 1:
                a = a[:, None]
            channels = a.shape[1]
            layout = {1: "mono", 2: "stereo"}.get(channels)
            if layout is None:
                raise ValueError(f"only mono or stereo audio can be written, got {channels} channels")
            astream = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
            if audio_codec in ("aac", "libopus", "mp3", "libmp3lame"):
                astream.bit_rate = audio_bit_rate
        if vstream is not None:
            if pix_fmt == "yuv420p":
                pictures = yuv420p_frames(frames.transpose(0, 3, 1, 2))
            else:
                pictures = (av.VideoFrame.from_ndarray(img, format="rgb24") for img in frames)
            for k, vf in enumerate(pictures):
                vf.pts = k  # in the stream's time base, 1 / rate: frame k at k / rate seconds
                vf.time_base = 1 / rate
                for packet in vstream.encode(vf):
                    container.mux(packet)
            for packet in vstream.encode():
                container.mux(packet)
        if astream is not None:
            a = np.clip(a, -1.0, 1.0)
            fmt = "s16" if audio_codec == "pcm_s16le" else "fltp"
            chunk = 1024
            pts = 0
            for start in range(0, len(a), chunk):
                block = a[start : start + chunk]
                if fmt == "s16":
                    arr = (block * 32767.0).round().astype(np.int16).reshape(1, -1)
                else:
                    arr = np.ascontiguousarray(block.T)
                af = av.AudioFrame.from_ndarray(arr, format=fmt, layout=astream.layout.name)
                af.sample_rate = sample_rate
                af.pts = pts
                pts += len(block)
                for packet in astream.encode(af):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path
