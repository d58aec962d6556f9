"""A split's videos over prepared cache entries: what ``Detector.fit`` and ``evaluate`` read.

:class:`VideoSet` implements :class:`avbench.detector.VideoSetLike`. A segment is read from
its compressed entry (:meth:`~avbench.media.cache.PreparedCache.read_frames`: the packets
from the keyframe before it, its audio samples, and only the modalities the detector's
:class:`~avbench.detector.InputSpec` reads); it may start at any frame (training draws any
start; evaluation segments start at multiples of 16, each a GOP of its own:
docs/decisions.md). A video shorter than one segment is loop-padded to ``spec.frames``
frames, reported by :meth:`VideoSet.padded_frames`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from avbench.detector import InputSpec, SegmentBatch
from avbench.errors import ConfigError
from avbench.media.cache import CacheEntry, PreparedCache
from avbench.media.decode import Clip, Pipeline
from avbench.media.segments import eval_starts, loop_pad, random_start
from avbench.media.segments import n_segments as _n_segments
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
        self._eval: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"VideoSet({len(self)} videos, {int(self._n.sum())} frames, spec={self.spec})"

    # ---- per video

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def entry(self, i: int) -> CacheEntry:
        return self._entries[i]

    def n_frames(self, i: int) -> int:
        """Frames of video ``i`` as prepared (before padding)."""
        return int(self._n[i])

    def n_segments(self, i: int) -> int:
        return _n_segments(int(self._n[i]), self.spec.frames)

    def padded_frames(self, i: int) -> int:
        """Frames loop padding adds to video ``i`` (0 unless it is shorter than a segment)."""
        return max(0, self.spec.frames - int(self._n[i]))

    def clip(self, i: int) -> Clip:
        """Video ``i`` whole (every frame decoded), loop-padded to one segment when short."""
        clip = self.cache.load(self._entries[i])
        if clip.n_frames < self.spec.frames:
            clip.frames, clip.audio, clip.padded_frames = loop_pad(
                clip.frames, clip.audio, self.spec.frames, clip.samples_per_frame)
        return clip

    # ---- segments

    def eval_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(video index, start frame) of every evaluation segment of every video, in order."""
        if self._eval is None:
            T = self.spec.frames
            starts = [eval_starts(int(n), T) for n in self._n]
            vi = np.repeat(np.arange(len(self), dtype=np.int64), [len(s) for s in starts])
            st = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
            self._eval = (vi, st.astype(np.int64))
        return self._eval

    def _check_start(self, i: int, start: int) -> None:
        n, T = int(self._n[i]), self.spec.frames
        ok = start == 0 if n < T else 0 <= start <= n - T
        if not ok:
            raise ValueError(f"video {i} ({n} frames) has no {T}-frame segment at {start}")

    def _read(self, i: int, start: int, video_out: np.ndarray | None,
              audio_out: np.ndarray | None) -> None:
        """Copy segment (i, start) into the given arrays (either may be None)."""
        self._check_start(i, start)
        entry, T, n = self._entries[i], self.spec.frames, int(self._n[i])
        spf = entry.samples_per_frame
        if n >= T:
            if video_out is not None:
                self.cache.read_frames(entry, start, video_out)
            if audio_out is not None:
                self.cache.read_audio(entry, start * spf, audio_out)
            return
        frames = audio = None
        if video_out is not None:
            frames = np.empty((n, *video_out.shape[1:]), dtype=np.uint8)
            self.cache.read_frames(entry, 0, frames)
        if audio_out is not None:
            audio = self.cache.read_audio(entry, 0, np.empty(n * spf, dtype=np.float32))
        frames, audio, _ = loop_pad(frames, audio, T, spf)
        if video_out is not None:
            video_out[...] = frames
        if audio_out is not None:
            audio_out[...] = audio

    def _empty(self, *batch: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        spec = self.spec
        video = np.empty((*batch, spec.frames, 3, spec.size, spec.size), dtype=np.uint8) \
            if spec.reads_video else None
        audio = np.empty((*batch, spec.samples), dtype=np.float32) if spec.reads_audio else None
        return video, audio

    def segment(self, i: int, start: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Segment of video ``i`` at ``start``: (video uint8 (T, 3, H, W) or None, audio
        float32 (S,) or None), None for a modality the spec does not read."""
        video, audio = self._empty()
        self._read(int(i), int(start), video, audio)
        return video, audio

    def batch(self, video_index: Any, start: Any) -> SegmentBatch:
        """The segments (video_index[j], start[j]) as one :class:`SegmentBatch`."""
        vi = np.asarray(video_index, dtype=np.int64).reshape(-1)
        st = np.asarray(start, dtype=np.int64).reshape(-1)
        if vi.shape != st.shape:
            raise ValueError("video_index and start differ in length")
        video, audio = self._empty(len(vi))
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

    def random_starts(self, indices: Any, rng: np.random.Generator) -> np.ndarray:
        """One random start frame for each video in ``indices``."""
        return np.array([random_start(int(self._n[int(i)]), self.spec.frames, rng)
                         for i in np.asarray(indices).reshape(-1)], dtype=np.int64)

    def random_segments(self, indices: Any, rng: np.random.Generator) -> SegmentBatch:
        """One random segment of each video in ``indices`` (training)."""
        vi = np.asarray(indices, dtype=np.int64).reshape(-1)
        return self.batch(vi, self.random_starts(vi, rng))
