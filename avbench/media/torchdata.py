"""torch Datasets over a :class:`~avbench.media.videoset.VideoSet` (DataLoader-ready).

Items are dicts: ``video`` uint8 (T, 3, H, W) and ``audio`` float32 (S,) when the set's
InputSpec reads them, and int64 scalars ``label``, ``label_v``, ``label_a``,
``video_index``, ``start``. A dataset pickles small (each worker opens its own decoders of
the cache's entries when it first reads one), so it works with ``DataLoader(num_workers > 0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avbench.media.segments import random_start
from avbench.media.videoset import VideoSet


class Segments(Dataset):
    """Item ``k``: the segment of video ``video_index[k]`` at frame ``starts[k]``."""

    def __init__(self, videoset: VideoSet, video_index: Any, starts: Any) -> None:
        self.videoset = videoset
        self.video_index = np.asarray(video_index, dtype=np.int64).reshape(-1)
        self.starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        if self.video_index.shape != self.starts.shape:
            raise ValueError("video_index and starts differ in length")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        b = self.videoset.batch([self.video_index[k]], [self.starts[k]])
        item = {name: torch.from_numpy(x[0]) for name, x in (("video", b.video), ("audio", b.audio))
                if x is not None}
        for name in ("label", "label_v", "label_a", "video_index", "start"):
            item[name] = torch.tensor(int(getattr(b, name)[0]), dtype=torch.int64)
        return item


def train_segments(videoset: VideoSet, draws: Any, seed: int) -> Segments:
    """Item ``k``: a random segment of video ``draws[k]``.

    Its start comes from ``np.random.default_rng([seed, k])``, so an item depends only on
    (seed, k): not on the worker that loads it, DDP sharding, batch size or resuming.
    ``draws`` (video indices, e.g. a balanced sample for one epoch) is chosen by the caller.
    """
    draws = np.asarray(draws, dtype=np.int64).reshape(-1)
    if len(draws) and (draws.min() < 0 or draws.max() >= len(videoset)):
        raise IndexError(f"draws hold video indices outside [0, {len(videoset)})")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    T, seed = videoset.spec.frames, int(seed)
    starts = [random_start(videoset.n_frames(i), T, np.random.default_rng([seed, k]))
              for k, i in enumerate(draws)]
    return Segments(videoset, draws, starts)


def eval_segments(videoset: VideoSet) -> Segments:
    """Every evaluation segment of :meth:`VideoSet.eval_index` (every non-overlapping
    segment of every video, in order)."""
    return Segments(videoset, *videoset.eval_index())
