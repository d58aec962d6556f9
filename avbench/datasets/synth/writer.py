"""Writing audio-visual files with PyAV: the synthetic benchmark, the bench's test media and
the tests make their sources with :func:`write_av`."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avbench.media.encode import yuv420p_frames

#: libx264 options that make its output a function of its input only: one thread (x264's
#: frame threads change the stream with the thread count, which follows the machine's cores)
#: and no assembly (on an AVX-512 machine the same frames gave one of two streams from run to
#: run, and the assembly paths do not give the C path's bytes). The C path costs about 1.6x
#: the encoding time.
X264_EXACT = {"threads": "1", "x264-params": "asm=0"}


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
    if frames is not None:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (N, H, W, 3), got {frames.shape}")
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32)
        audio = audio[:, None] if audio.ndim == 1 else audio
        if audio.shape[1] not in (1, 2):
            raise ValueError(f"only mono or stereo audio can be written, got {audio.shape[1]} "
                             "channels")
    with av.open(str(path), mode="w") as container:
        vstream = astream = None
        if frames is not None:
            vstream = container.add_stream(video_codec, rate=rate)
            vstream.height, vstream.width = frames.shape[1:3]
            vstream.pix_fmt = pix_fmt
            if video_codec == "libx264":
                vstream.options = {"crf": str(crf), "preset": "veryfast", **X264_EXACT}
        if audio is not None:
            layout = "mono" if audio.shape[1] == 1 else "stereo"
            astream = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
            if audio_codec in ("aac", "libopus", "mp3", "libmp3lame"):
                astream.bit_rate = audio_bit_rate
        if vstream is not None:
            _write_video(container, vstream, frames, rate, pix_fmt)
        if astream is not None:
            _write_audio(container, astream, audio, sample_rate, audio_codec)
    return path


def _write_video(container: Any, stream: Any, frames: np.ndarray, rate: Fraction,
                 pix_fmt: str) -> None:
    import av

    if pix_fmt == "yuv420p":
        pictures = yuv420p_frames(frames.transpose(0, 3, 1, 2))
    else:
        pictures = (av.VideoFrame.from_ndarray(img, format="rgb24") for img in frames)
    for k, vf in enumerate(pictures):
        vf.pts, vf.time_base = k, 1 / rate  # frame k at k / rate seconds
        container.mux(stream.encode(vf))
    container.mux(stream.encode())


def _write_audio(container: Any, stream: Any, audio: np.ndarray, sample_rate: int,
                 codec: str) -> None:
    import av

    a = np.clip(audio, -1.0, 1.0)
    fmt = "s16" if codec == "pcm_s16le" else "fltp"
    for start in range(0, len(a), 1024):
        block = a[start : start + 1024]
        if fmt == "s16":
            arr = (block * 32767.0).round().astype(np.int16).reshape(1, -1)
        else:
            arr = np.ascontiguousarray(block.T)
        af = av.AudioFrame.from_ndarray(arr, format=fmt, layout=stream.layout.name)
        af.sample_rate, af.pts = sample_rate, start
        container.mux(stream.encode(af))
    container.mux(stream.encode())
