"""A split's videos over prepared cache entries: what ``Detector.fit`` and ``evaluate`` read.

:class:`VideoSet` implements :class:`avbench.detector.VideoSetLike`. A segment is read from
its compressed entry (:meth:`~avbench.media.cache.PreparedCache.read_frames`), only in the
modalities the detector's :class:`~avbench.detector.InputSpec` reads; it may start at any
frame (evaluation segments start at multiples of 16, each a GOP of its own:
docs/decisions.md). A video shorter than one segment is loop-padded to ``spec.frames``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from avbench.detector import InputSpec, SegmentBatch
from avbench.errors import ConfigError
from avbench.media.cache import CacheEntry, PreparedCache
from avbench.media.decode import Pipeline
from avbench.media.segments import eval_starts, loop_pad, random_start
from avbench.records import VideoRecord


def pipeline_for_spec(spec: InputSpec, **kwargs: Any) -> Pipeline:
    """The :class:`Pipeline` that prepares media for a detector reading ``spec``
    (``max_seconds`` / ``face_crop`` as keyword arguments)."""
    return Pipeline(fps=spec.fps, sample_rate=spec.sample_rate, size=spec.size, **kwargs)


class VideoSet:
    """The videos of ``records`` (in that order), read from their prepared ``entries``.

    Every record needs an entry (drop and report unusable videos before building a set), and
    every entry must have been prepared at the ``spec``'s fps, sample rate and size;
    otherwise a :class:`avbench.errors.ConfigError` says what differs.
    """

    def __init__(self, records: Sequence[VideoRecord], entries: dict[str, CacheEntry],
                 cache: PreparedCache, spec: InputSpec) -> None:
        self.records: list[VideoRecord] = list(records)
        self.spec, self.cache = spec, cache
        missing = [r.id for r in self.records if r.id not in entries]
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(self.records)} videos have no prepared entry "
                f"(first: {missing[0]}); leave unusable videos out (and report them) before "
                "building a VideoSet")
        self._entries = [entries[r.id] for r in self.records]
        want = (spec.fps, spec.sample_rate, spec.size, spec.size)
        bad = sorted({got for e in self._entries
                      if (got := (e.fps, e.sample_rate, e.height, e.width)) != want})
        if bad:
            fps, sr, h, w = bad[0]
            raise ConfigError(
                f"prepared media (fps={fps}, sample_rate={sr}, size={h}x{w}) do not match what "
                f"the detector reads (fps={spec.fps}, sample_rate={spec.sample_rate}, "
                f"size={spec.size}x{spec.size}); prepare them with Pipeline(fps={spec.fps}, "
                f"sample_rate={spec.sample_rate}, size={spec.size})")
        self._n = np.array([e.n_frames for e in self._entries], dtype=np.int64)
        self.label, self.label_v, self.label_a = (
            np.array([getattr(r, name) for r in self.records], dtype=np.int64)
            for name in ("label", "label_v", "label_a"))

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"VideoSet({len(self)} videos, {int(self._n.sum())} frames, spec={self.spec})"

    def n_frames(self, i: int) -> int:
        """Frames of video ``i`` as prepared (before padding)."""
        return int(self._n[i])

    def padded_frames(self, i: int) -> int:
        """Frames loop padding adds to video ``i`` (0 unless it is shorter than a segment)."""
        return max(0, self.spec.frames - int(self._n[i]))

    def eval_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(video index, start frame) of every evaluation segment of every video, in order."""
        starts = [eval_starts(int(n), self.spec.frames) for n in self._n]
        return (np.repeat(np.arange(len(self), dtype=np.int64), [len(s) for s in starts]),
                np.concatenate([np.zeros(0, dtype=np.int64), *starts]))

    def _read(self, i: int, start: int, video: np.ndarray | None,
              audio: np.ndarray | None) -> None:
        """Copy segment (i, start) into ``video`` and ``audio`` (either may be None)."""
        entry, T = self._entries[i], self.spec.frames
        n, spf = entry.n_frames, entry.samples_per_frame
        if not (start == 0 if n < T else 0 <= start <= n - T):
            raise ValueError(f"video {i} ({n} frames) has no {T}-frame segment at {start}")
        m = min(n, T)  # frames read; a short video's are then loop-padded to T
        v = None if video is None else self.cache.read_frames(entry, start, video[:m])
        a = None if audio is None else self.cache.read_audio(entry, start * spf, audio[: m * spf])
        if n < T:
            v, a, _ = loop_pad(v, a, T, spf)
            for out, padded in ((video, v), (audio, a)):
                if out is not None:
                    out[...] = padded

    def segment(self, i: int, start: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Segment of video ``i`` at ``start``: (video uint8 (T, 3, H, W), audio float32 (S,)),
        None for a modality the spec does not read."""
        b = self.batch([i], [start])
        return (None if b.video is None else b.video[0]), (None if b.audio is None else b.audio[0])

    def batch(self, video_index: Any, start: Any) -> SegmentBatch:
        """The segments (video_index[j], start[j]) as one :class:`SegmentBatch`."""
        vi = np.asarray(video_index, dtype=np.int64).reshape(-1)
        st = np.asarray(start, dtype=np.int64).reshape(-1)
        if vi.shape != st.shape:
            raise ValueError("video_index and start differ in length")
        spec = self.spec
        video = np.empty((len(vi), spec.frames, 3, spec.size, spec.size), dtype=np.uint8) \
            if spec.reads_video else None
        audio = np.empty((len(vi), spec.samples), dtype=np.float32) if spec.reads_audio else None
        for j in range(len(vi)):
            self._read(int(vi[j]), int(st[j]), None if video is None else video[j],
                       None if audio is None else audio[j])
        return SegmentBatch(video_index=vi, ids=[self.records[int(i)].id for i in vi], start=st,
                            label=self.label[vi], label_v=self.label_v[vi],
                            label_a=self.label_a[vi], video=video, audio=audio)

    def iter_batches(self, batch_size: int) -> Iterator[SegmentBatch]:
        """Every non-overlapping segment of every video, in order, ``batch_size`` at a time
        (batches run across video boundaries)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        vi, st = self.eval_index()
        for b in range(0, len(vi), batch_size):
            yield self.batch(vi[b : b + batch_size], st[b : b + batch_size])

    def random_segments(self, indices: Any, rng: np.random.Generator) -> SegmentBatch:
        """One random segment of each video in ``indices`` (training)."""
        vi = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self.batch(vi, [random_start(int(self._n[i]), self.spec.frames, rng) for i in vi])
