"""Keeping freed memory for reuse (glibc ``mallopt``), for the processes that decode and train.

glibc serves large allocations (above its mmap threshold, at most 32 MiB) with a fresh
``mmap`` and unmaps them on free. Every such block is then page-faulted in and zero-filled
by the kernel again on its next use: the activation tensors of a CPU training step (a ViT-B/32
activation of one 16-frame clip is 3-12 MB), and the frame buffer of every decoded video
(224 x 224 x 3 bytes x 25 per second: 37 MB for a 10 s clip). :func:`keep_freed_memory`
serves every allocation from the heap and trims it only above 2 GiB free, so that freed
memory is reused without faults. The price: a process keeps its peak heap instead of
returning it. Numbers are unchanged. ``AVBENCH_MALLOC_TUNING=0`` leaves malloc alone.

It matters where the same large buffers are freed and taken again and again: a CPU
training step's activations (each block otherwise faulted in anew) and the frame buffer of
each video ``avbench data prepare`` decodes.

Imports nothing heavy: the engine calls it before training and evaluation on the CPU, and
``avbench data prepare`` in its processes.
"""

from __future__ import annotations

import os

#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_STATE: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Under glibc (Linux), serve every allocation from the heap and keep freed memory for
    reuse; returns whether it is on. Applies to the whole process, once; a no-op elsewhere
    or with ``AVBENCH_MALLOC_TUNING=0``."""
    if "on" in _STATE:
        return _STATE["on"]
    on = False
    if os.environ.get("AVBENCH_MALLOC_TUNING", "1") != "0":
        import platform
        import sys

        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            import ctypes

            try:
                libc = ctypes.CDLL("libc.so.6")
                on = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
            except (OSError, AttributeError):
                on = False
    _STATE["on"] = on
    return on
