"""Seeding, clip formats and the process pool shared by the synthetic generators."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

import numpy as np

FPS_CHOICES = (Fraction(25), Fraction(30000, 1001), Fraction(30))
#: (sample rate, channels): 16 kHz mono, 44.1 kHz stereo, 48 kHz mono
AUDIO_CHOICES = ((16000, 1), (44100, 2), (48000, 1))


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (not on call order)."""
    digest = hashlib.sha256("\x1f".join(str(k) for k in keys).encode()).digest()
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), *(int(x) for x in np.frombuffer(digest[:16], np.uint32))]))


def frame_times(duration: float, fps: Fraction) -> np.ndarray:
    n = int(duration * fps)
    return np.arange(n, dtype=np.float64) / float(fps)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def run_tasks(fn: Callable[[Any], Any], tasks: Iterable[Any], workers: int,
              progress: Callable[[int, int], None] | None = None) -> list[Any]:
    """Run ``fn`` over ``tasks``: in this process when ``workers == 1``, else in a pool of
    ``workers`` spawned processes (0 = one per available CPU). Results come back in task
    order; the output does not depend on ``workers``. ``progress(done, total)`` is called
    after each result, in task order."""
    tasks = list(tasks)

    def collect(results: Iterable[Any]) -> list[Any]:
        out = []
        for r in results:
            out.append(r)
            if progress is not None:
                progress(len(out), len(tasks))
        return out

    if workers <= 0:
        from avbench.io import available_cores

        workers = available_cores()
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        return collect(fn(t) for t in tasks)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, never fork: a forked worker deadlocks on any lock another thread of the parent
    # held at the fork (a parent that imported torch, a test session, a progress bar). Like
    # any spawn pool it needs the calling script's work under ``if __name__ == "__main__":``.
    ctx = multiprocessing.get_context("spawn")
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            return collect(pool.map(fn, tasks))
    except BrokenProcessPool:
        raise RuntimeError(
            "a worker process of the synthetic benchmark's generator died; when a script "
            "calls the generator, put the call under `if __name__ == \"__main__\":` (spawned "
            "workers import the script again), or pass workers=1"
        ) from None
