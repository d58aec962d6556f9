"""YUV -> planar RGB straight into the clip's frame buffer, through the swscale PyAV loaded.

PyAV's ``VideoReformatter.reformat`` always allocates a new frame for its output, so the
media pipeline used to convert every frame into a temporary ``gbrp`` frame and then copy its
three planes into the clip's (N, 3, H, W) buffer. On a 10 s 224x224 clip that copy cost more
than the conversion: the buffer is 37 MB, larger than the CPU's caches, and each copy
streams 150 kB out to memory after swscale has written the same bytes once already. Calling
``sws_scale`` with the buffer's own addresses as its destination writes each pixel once.

This module calls the very libswscale that PyAV's extension modules loaded (found among the
process's mapped libraries, or beside the ``av`` package), through ctypes, and only when:

* the library's version is the one PyAV reports (``av.library_versions``), so the
  functions have the signatures declared here;
* the conversion, for the exact source geometry, pixel format, colour space and range at
  hand, gives the same bytes as PyAV's own ``reformat`` on a test frame (checked once per
  such key and process; see :meth:`DirectRGB.converter`).

Anything else (another pixel format, a platform where the library is not found, a failed
check) leaves the caller on PyAV's path; the pixels are the same either way.
``AVBENCH_DIRECT_SWSCALE=0`` turns this path off.
"""

from __future__ import annotations

import ctypes
import os
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np

#: 8-bit planar YUV formats the direct path takes (anything else goes through PyAV)
FORMATS = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p")

#: swscale flag SWS_BILINEAR: what PyAV's reformat passes by default; an unscaled
#: conversion does not interpolate, but the flag is part of what the check compares
_SWS_BILINEAR = 2
#: AVColorRange AVCOL_RANGE_JPEG (full range)
_RANGE_JPEG = 2

_P4 = ctypes.c_void_p * 4
_I4 = ctypes.c_int * 4


def _enabled() -> bool:
    return os.environ.get("AVBENCH_DIRECT_SWSCALE", "1") != "0"


def _loaded_paths(stem: str) -> list[str]:
    """Paths of shared libraries named ``lib<stem>...`` that this process has mapped
    (Linux), then candidates beside the ``av`` package (wheels bundle their FFmpeg)."""
    found: list[str] = []
    maps = Path("/proc/self/maps")
    if maps.exists():
        try:
            for line in maps.read_text().splitlines():
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    name = os.path.basename(path)
                    if name.startswith(f"lib{stem}") and ".so" in name and path not in found:
                        found.append(path)
        except OSError:
            pass
    import av

    pkg = Path(av.__file__).resolve().parent
    for folder in (pkg.parent / "av.libs", pkg / ".dylibs", pkg.parent / "av.libs" / "lib"):
        if folder.is_dir():
            found += [str(p) for p in sorted(folder.glob(f"lib{stem}*"))
                      if str(p) not in found]
    return found


def _open(stem: str, version_fn: str, want: tuple[int, int, int]) -> Any:
    """The loaded library ``lib<stem>`` whose ``<stem>_version()`` is ``want``, or None."""
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 0)
    for path in _loaded_paths(stem):
        try:
            lib = ctypes.CDLL(path, mode=mode) if mode else ctypes.CDLL(path)
            fn = getattr(lib, version_fn)
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_uint
        fn.argtypes = []
        v = int(fn())
        if (v >> 16, (v >> 8) & 0xFF, v & 0xFF) == tuple(want):
            return lib
    return None


class _Libs:
    """libswscale and libavutil with the functions used here declared."""

    def __init__(self, sws: Any, avutil: Any) -> None:
        self.sws, self.avutil = sws, avutil
        sws.sws_getContext.restype = ctypes.c_void_p
        sws.sws_getContext.argtypes = [ctypes.c_int] * 7 + [ctypes.c_void_p] * 3
        sws.sws_freeContext.restype = None
        sws.sws_freeContext.argtypes = [ctypes.c_void_p]
        sws.sws_getCoefficients.restype = ctypes.c_void_p
        sws.sws_getCoefficients.argtypes = [ctypes.c_int]
        sws.sws_setColorspaceDetails.restype = ctypes.c_int
        sws.sws_setColorspaceDetails.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
            ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ]
        sws.sws_scale.restype = ctypes.c_int
        sws.sws_scale.argtypes = [ctypes.c_void_p, _P4, _I4, ctypes.c_int, ctypes.c_int,
                                  _P4, _I4]
        avutil.av_get_pix_fmt.restype = ctypes.c_int
        avutil.av_get_pix_fmt.argtypes = [ctypes.c_char_p]
        self.gbrp = self.pix_fmt("gbrp")

    def pix_fmt(self, name: str) -> int:
        return int(self.avutil.av_get_pix_fmt(name.encode()))


_LIBS: dict[str, _Libs | None] = {}


def _libs() -> _Libs | None:
    if "libs" not in _LIBS:
        libs = None
        try:
            import av
            import av.video.reformatter  # maps libswscale into the process

            versions = av.library_versions
            sws = _open("swscale", "swscale_version", versions["libswscale"])
            avutil = _open("avutil", "avutil_version", versions["libavutil"])
            if sws is not None and avutil is not None:
                libs = _Libs(sws, avutil)
                if libs.gbrp < 0:
                    libs = None
        except (ImportError, KeyError, AttributeError, OSError, TypeError):
            libs = None
        _LIBS["libs"] = libs
    return _LIBS["libs"]


def available() -> bool:
    """Whether the direct path can be used in this process at all."""
    return _enabled() and sys.platform != "win32" and _libs() is not None


#: (width, height, format, colorspace, range) -> whether the direct path gives PyAV's bytes
_VERIFIED: dict[tuple[int, int, str, int, int], bool] = {}


class DirectRGB:
    """Converts frames of one geometry, unscaled, into (3, H, W) uint8 planar RGB arrays.

    Use :meth:`converter` to get one; :meth:`convert` then writes a frame into ``dst``.
    """

    def __init__(self, libs: _Libs, width: int, height: int, fmt: str, colorspace: int,
                 color_range: int) -> None:
        self.libs = libs
        self.width, self.height = width, height
        sws = libs.sws
        ctx = sws.sws_getContext(width, height, libs.pix_fmt(fmt), width, height, libs.gbrp,
                                 _SWS_BILINEAR, None, None, None)
        if not ctx:
            raise OSError("sws_getContext failed")
        self._ctx = ctx
        self._finalizer = weakref.finalize(self, sws.sws_freeContext, ctx)
        # what sws_scale_frame derives from the frames' tags: the source's matrix and
        # range, full-range RGB out (sws_getCoefficients maps unknown spaces to BT.601)
        full = 1 if color_range == _RANGE_JPEG or fmt.startswith("yuvj") else 0
        coeffs = sws.sws_getCoefficients(colorspace)
        sws.sws_setColorspaceDetails(ctx, coeffs, full, coeffs, 1, 0, 1 << 16, 1 << 16)
        self._dst_stride = _I4(width, width, width, 0)
        self._plane = width * height
        self._scale = sws.sws_scale

    @classmethod
    def converter(cls, frame: Any) -> DirectRGB | None:
        """A converter for frames like ``frame``, or None where the direct path is off,
        does not apply, or did not reproduce PyAV's bytes on a test frame."""
        fmt = frame.format.name
        if fmt not in FORMATS or not available():
            return None
        libs = _libs()
        assert libs is not None
        key = (int(frame.width), int(frame.height), fmt, int(frame.colorspace),
               int(frame.color_range))
        try:
            conv = cls(libs, *key)
        except OSError:
            return None
        if key not in _VERIFIED:
            _VERIFIED[key] = conv._matches_pyav(*key)
        return conv if _VERIFIED[key] else None

    def convert(self, frame: Any, dst: np.ndarray) -> None:
        """Write ``frame`` as RGB into ``dst`` (3, H, W), a C-contiguous uint8 array."""
        if dst.shape != (3, self.height, self.width) or not dst.flags.c_contiguous:
            raise ValueError(f"bad destination {dst.shape} for {self.width}x{self.height}")
        self.convert_at(frame, dst.ctypes.data)

    def convert_at(self, frame: Any, address: int) -> None:
        """:meth:`convert` into the (3, H, W) uint8 array at ``address``, which the caller
        vouches for (reading numpy's address costs a quarter of a small frame's Python)."""
        planes = frame.planes
        src = _P4(planes[0].buffer_ptr, planes[1].buffer_ptr, planes[2].buffer_ptr, None)
        stride = _I4(planes[0].line_size, planes[1].line_size, planes[2].line_size, 0)
        plane = self._plane
        out = _P4(address + plane, address + 2 * plane, address, None)  # gbrp: G, B, R
        done = self._scale(self._ctx, src, stride, 0, self.height, out, self._dst_stride)
        if done != self.height:
            raise OSError(f"sws_scale converted {done} of {self.height} rows")

    def _matches_pyav(self, width: int, height: int, fmt: str, colorspace: int,
                      color_range: int) -> bool:
        """Convert a random frame both ways and compare the bytes."""
        import av
        from av.video.reformatter import VideoReformatter

        rng = np.random.default_rng(width * 7919 + height)
        frame = av.VideoFrame(width, height, fmt)
        for p in frame.planes:
            buf = np.frombuffer(p, np.uint8)
            buf[...] = rng.integers(16, 240, buf.shape, dtype=np.uint8)
        frame.colorspace = colorspace
        frame.color_range = color_range
        try:
            ref = VideoReformatter().reformat(frame, format="gbrp", threads=1)
        except TypeError:  # an older PyAV without ``threads``
            ref = VideoReformatter().reformat(frame, format="gbrp")
        g, b, r = (np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :width]
                   for p in ref.planes)
        want = np.stack([r, g, b])
        got = np.empty((3, height, width), dtype=np.uint8)
        try:
            self.convert(frame, got)
        except OSError:
            return False
        return bool(np.array_equal(got, want))
