"""torch Datasets over a :class:`~avbench.media.videoset.VideoSet` (DataLoader-ready).

Items are dicts: ``video`` uint8 (T, 3, H, W) and ``audio`` float32 (S,) when the set's
InputSpec reads them, and int64 scalars ``label``, ``label_v``, ``label_a``,
``video_index``, ``start``. Both datasets pickle small (each worker opens its own decoders
of the cache's entries when it first reads one), so they work with
``DataLoader(num_workers > 0)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from avbench.media.segments import random_start
from avbench.media.videoset import VideoSet


def segment_item(videoset: VideoSet, i: int, start: int) -> dict[str, torch.Tensor]:
    """Segment (i, start) of ``videoset`` as a dict of tensors."""
    video, audio = videoset.segment(i, start)
    item: dict[str, torch.Tensor] = {}
    if video is not None:
        item["video"] = torch.from_numpy(video)
    if audio is not None:
        item["audio"] = torch.from_numpy(audio)
    item["label"] = torch.tensor(int(videoset.label[i]), dtype=torch.int64)
    item["label_v"] = torch.tensor(int(videoset.label_v[i]), dtype=torch.int64)
    item["label_a"] = torch.tensor(int(videoset.label_a[i]), dtype=torch.int64)
    item["video_index"] = torch.tensor(int(i), dtype=torch.int64)
    item["start"] = torch.tensor(int(start), dtype=torch.int64)
    return item


def _index(k: Any, n: int) -> int:
    k = int(k)
    if k < 0:
        k += n
    if not 0 <= k < n:
        raise IndexError(f"index {k} out of range for {n} items")
    return k


class TrainSegments(Dataset):
    """Item ``k``: a random segment of video ``draws[k]``.

    The start comes from ``np.random.default_rng([seed, k])``, so an item depends only on
    (seed, k): not on the worker that loads it, DDP sharding, batch size or resuming.
    ``draws`` (video indices, e.g. a balanced sample for one epoch) is chosen by the caller.
    """

    def __init__(self, videoset: VideoSet, draws: Any, seed: int) -> None:
        self.videoset = videoset
        self.draws = np.asarray(draws, dtype=np.int64).reshape(-1)
        if len(self.draws) and (self.draws.min() < 0 or self.draws.max() >= len(videoset)):
            raise IndexError(f"draws hold video indices outside [0, {len(videoset)})")
        self.seed = int(seed)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")

    def __len__(self) -> int:
        return len(self.draws)

    def start(self, k: int) -> tuple[int, int]:
        """(video index, start frame) of item ``k``."""
        k = _index(k, len(self))
        i = int(self.draws[k])
        rng = np.random.default_rng([self.seed, k])
        return i, random_start(self.videoset.n_frames(i), self.videoset.spec.frames, rng)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i, start = self.start(k)
        return segment_item(self.videoset, i, start)


class EvalSegments(Dataset):
    """Item ``k``: evaluation segment ``k`` of :meth:`VideoSet.eval_index` (every
    non-overlapping segment of every video, in order)."""

    def __init__(self, videoset: VideoSet) -> None:
        self.videoset = videoset
        self.video_index, self.starts = videoset.eval_index()

    def __len__(self) -> int:
        return len(self.video_index)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        k = _index(k, len(self))
        return segment_item(self.videoset, int(self.video_index[k]), int(self.starts[k]))
