"""Segments: T consecutive frames and the matching T x spf audio samples.

Evaluation takes every non-overlapping segment (starts 0, T, 2T, ...; trailing frames that
do not fill a segment are not evaluated); training draws one random segment per video. A
video shorter than T frames has a single segment at start 0, loop-padded to T frames
(:func:`loop_pad`); the padding is counted, never hidden.
"""

from __future__ import annotations

import numpy as np


def n_segments(n_frames: int, T: int) -> int:
    """Segments of a video of ``n_frames`` frames (at least 1: a short one is padded)."""
    if n_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {n_frames}")
    if T < 1:
        raise ValueError(f"segment length must be >= 1, got {T}")
    return max(1, n_frames // T)


def eval_starts(n_frames: int, T: int) -> np.ndarray:
    """Start frames of every non-overlapping segment: 0, T, 2T, ... (``[0]`` for a short video)."""
    return np.arange(n_segments(n_frames, T), dtype=np.int64) * T


def random_start(n_frames: int, T: int, rng: np.random.Generator) -> int:
    """A uniformly random start frame in ``[0, n_frames - T]`` (0 for a short video)."""
    n_segments(n_frames, T)  # validates
    if n_frames <= T:
        return 0
    return int(rng.integers(0, n_frames - T + 1))


def loop_pad(
    frames: np.ndarray | None, audio: np.ndarray | None, T: int, spf: int
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """Repeat a short clip from its start until it has ``T`` frames.

    ``frames`` is (N, ...) and ``audio`` (N * spf,); either may be None (a modality that is
    not read). Frame ``k`` of the result is frame ``k mod N`` with its ``spf`` audio samples,
    so picture and sound stay in sync. Returns ``(frames, audio, padded_frames)``; a clip of
    at least T frames comes back unchanged with 0.
    """
    if frames is None and audio is None:
        raise ValueError("loop_pad needs frames or audio")
    n = len(frames) if frames is not None else len(audio) // spf
    if audio is not None and len(audio) != n * spf:
        raise ValueError(f"audio has {len(audio)} samples, expected {n} x {spf}")
    if n < 1:
        raise ValueError("cannot pad an empty clip")
    if n >= T:
        return frames, audio, 0
    idx = np.arange(T) % n
    return (None if frames is None else frames[idx],
            None if audio is None else np.asarray(audio).reshape(n, spf)[idx].reshape(-1), T - n)
