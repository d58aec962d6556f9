"""Timing helpers for ``avbench bench``: interleaved repetitions, medians, paired ratios.

On a shared machine the load changes during a run. Timing A five times and then B five times
would let a change of load between the two blocks pass for a difference between A and B, so
every comparison here runs its contenders in turn within each repetition (alternating the
order), and a ratio is the median of the per-repetition ratios. Where one call is short (one
video), :func:`interleaved_per_item` lets the contenders take turns on each video instead,
which brings them a fraction of a second apart.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repetitions of a[i] / b[i]."""
    pairs = [x / y for x, y in zip(a, b, strict=True) if y > 0]
    return median(pairs)


def min_ratio(a: list[float], b: list[float]) -> float:
    """min(a) / min(b): the least-disturbed runs of each (load only ever adds time)."""
    return min(a) / min(b) if a and b and min(b) > 0 else float("nan")


def interleaved(
    fns: dict[str, Callable[[], Any]],
    reps: int,
    *,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each call of each function, ``reps`` times, in alternating order.
    With ``cpu``, the process's CPU seconds of each call (all its threads) go there."""
    sync = sync or (lambda: None)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
            sync()
    out: dict[str, list[float]] = {name: [] for name in names}
    if cpu is not None:
        cpu.update({name: [] for name in names})
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            sync()
            c = time.process_time()
            t = time.perf_counter()
            fns[name]()
            sync()
            out[name].append(time.perf_counter() - t)
            if cpu is not None:
                cpu[name].append(time.process_time() - c)
    return out


def interleaved_per_item(
    fns: dict[str, Callable[[Any], Any]],
    items: list[Any],
    reps: int,
    *,
    warmup: int = 1,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Like :func:`interleaved`, but the contenders take turns on each item: for every
    repetition and item, each function runs once on that item, in an order that alternates
    from one (repetition, item) to the next. Returns, per function, its seconds for every
    (repetition, item) in the same order, so ``a[i] / b[i]`` compares two contenders a
    fraction of a second apart. The first ``warmup`` items are run once by each function
    first, untimed. With ``cpu``, the process's CPU seconds of each call go there."""
    names = list(fns)
    for item in items[:warmup]:
        for name in names:
            fns[name](item)
    out: dict[str, list[float]] = {name: [] for name in names}
    if cpu is not None:
        cpu.update({name: [] for name in names})
    turn = 0
    for _ in range(reps):
        for item in items:
            for name in names if turn % 2 == 0 else names[::-1]:
                c = time.process_time()
                t = time.perf_counter()
                fns[name](item)
                out[name].append(time.perf_counter() - t)
                if cpu is not None:
                    cpu[name].append(time.process_time() - c)
            turn += 1
    return out


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None
