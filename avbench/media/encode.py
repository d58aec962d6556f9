"""Writing audio-visual files with PyAV (the synthetic benchmark and the tests use it)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


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
                vstream.options = {"crf": str(crf), "preset": "veryfast"}
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
            for img in frames:
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
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
