"""RGB frames as yuv420p pictures for libx264, every byte of them set (the prepared cache and
:mod:`avbench.datasets.synth.writer` encode through these)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


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
