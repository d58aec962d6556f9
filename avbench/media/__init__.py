"""Media: decoding with PyAV, resampling to 25 fps / 16 kHz, segments, the prepared cache.

Names are imported lazily (``from avbench.media import VideoSet`` loads only what it needs;
nothing here imports torch except :mod:`avbench.media.torchdata`).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Pipeline": "avbench.media.decode",
    "Clip": "avbench.media.decode",
    "PIPELINE_VERSION": "avbench.media.decode",
    "PreparedCache": "avbench.media.cache",
    "CacheEntry": "avbench.media.cache",
    "MediaProblem": "avbench.media.cache",
    "PrepareResult": "avbench.media.cache",
    "prepare": "avbench.media.cache",
    "VideoSet": "avbench.media.videoset",
    "pipeline_for_spec": "avbench.media.videoset",
    "FaceDetector": "avbench.media.face",
    "HaarFaceDetector": "avbench.media.face",
    "crop_faces": "avbench.media.face",
    "eval_starts": "avbench.media.segments",
    "random_start": "avbench.media.segments",
    "loop_pad": "avbench.media.segments",
    "write_av": "avbench.media.encode",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'avbench.media' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
