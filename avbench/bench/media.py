"""The media half of ``avbench bench``: test media, decoding, and the loader over them
(the prepared cache's own section is :mod:`avbench.bench.cache`).

Everything is measured on media the bench writes itself (:func:`make_media`), so that a clean
install can run it: speech-like audio and a moving face-like picture with some noise, encoded
as h264 + AAC mp4, in three source formats:

* ``native``: 224x224 at 25 fps with 16 kHz mono audio, the format of FakeAVCeleb's
  VoxCeleb2-derived clips: the pipeline has no resizing or resampling to do;
* ``rate``: 224x224 at 29.97 fps with 44.1 kHz stereo audio, FakeAVCeleb's other common
  form (its clips are face crops, mostly 224x224, at 23.98 to 29.97 fps; 44.1 kHz stereo
  audio is reported): frame-rate conversion, downmix and audio resampling;
* ``resample``: 320x240 at 29.97 fps with 44.1 kHz stereo audio: every step of the pipeline
  works, scaling + centre crop included. No dataset avbench reads comes in this size
  (FakeAVCeleb is 224x224, KoDF 1920x1080 with face cropping), so the pipeline target is not
  judged on it; it is shown for what resizing costs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from avbench.bench._timing import (
    interleaved_per_item,
    median,
    min_ratio,
    paired_ratio,
)


@dataclass(frozen=True)
class MediaKind:
    name: str
    width: int
    height: int
    fps: Fraction
    sample_rate: int
    channels: int
    #: whether the "within 1.6x of bare decode" target is judged on this format
    judged: bool = True
    why: str = ""

    def describe(self) -> str:
        fps = float(self.fps)
        fps_s = f"{fps:.0f}" if fps == int(fps) else f"{fps:.2f}"
        layout = "mono" if self.channels == 1 else "stereo"
        return (f"{self.width}x{self.height} {fps_s} fps, {self.sample_rate / 1000:g} kHz "
                f"{layout}")


def media_kinds(size: int) -> list[MediaKind]:
    """The three source formats, for a model reading ``size`` x ``size`` frames."""
    wide = (size * 10 // 7) // 2 * 2  # 224 -> 320
    tall = (wide * 3 // 4) // 2 * 2  # 320 -> 240
    ntsc = Fraction(30000, 1001)
    return [
        MediaKind("native", size, size, Fraction(25), 16000, 1),
        MediaKind("rate", size, size, ntsc, 44100, 2),
        MediaKind("resample", wide, tall, ntsc, 44100, 2, judged=False,
                  why="not a dataset's frame size; shows the cost of resizing"),
    ]


def _frames(rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    """(n, H, W, 3) uint8: a drifting gradient background, a face-like ellipse that moves and
    a mouth that opens, plus mild noise (so the encoder has detail to code)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 180, 3).astype(np.float32)
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for k in range(n):
        t = k / 25.0
        cx = width * (0.5 + 0.08 * np.sin(0.7 * t))
        cy = height * (0.5 + 0.05 * np.cos(0.9 * t))
        rx, ry = 0.22 * width, 0.3 * height
        face = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.0
        mouth_open = 0.02 + 0.03 * (1 + np.sin(9.0 * t))
        mouth = (((x - cx) / (0.35 * rx)) ** 2 + ((y - cy - 0.45 * ry) / (mouth_open * height)) ** 2) < 1
        img = base[None, None, :] + 40 * np.sin(x[..., None] / 23.0 + t + np.arange(3)) * np.cos(
            y[..., None] / 31.0 - 0.5 * t
        )
        img[face] = (200, 160, 130)
        img[mouth] = (90, 30, 40)
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        out[k] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _voice(rng: np.random.Generator, seconds: float, rate: int, channels: int) -> np.ndarray:
    """Speech-like audio: a gliding harmonic tone with syllable-rate amplitude, and noise."""
    t = np.arange(round(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    tone = sum(np.sin(h * phase) / h for h in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t)) ** 2
    x = 0.15 * tone * envelope + 0.01 * rng.standard_normal(len(t))
    x = x.astype(np.float32)
    if channels == 2:
        x = np.stack([x, 0.8 * x], axis=1)
    return x


def make_media(folder: Path, kinds: list[MediaKind], clips: int, seconds: float,
               seed: int = 0) -> dict[str, list[Path]]:
    """Write ``clips`` mp4 files of ``seconds`` per kind into ``folder``."""
    from avbench.datasets.synth.writer import write_av

    out: dict[str, list[Path]] = {}
    for kind in kinds:
        paths = []
        for i in range(clips):
            rng = np.random.default_rng([seed, i, kind.width, kind.sample_rate])
            n = round(seconds * float(kind.fps))
            path = folder / kind.name / f"clip{i:02d}.mp4"
            write_av(path, _frames(rng, n, kind.width, kind.height),
                     _voice(rng, seconds, kind.sample_rate, kind.channels),
                     fps=kind.fps, sample_rate=kind.sample_rate)
            paths.append(path)
        out[kind.name] = paths
    return out


# --------------------------------------------------------------------------------------------
# decoding


def decode_only(path: Path) -> int:
    """Bare decoding: PyAV demuxes and decodes both streams in one thread (as the pipeline
    does) and nothing is converted. Returns the number of frames."""
    import av

    n = 0
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        vs.thread_type = "NONE"
        for _frame in container.decode(vs, container.streams.audio[0]):
            n += 1
    return n


def naive_decode(path: Path) -> list[np.ndarray]:
    """What decoding "to arrays" looks like with PyAV's conveniences: every frame through
    ``to_ndarray`` (RGB at the source size; audio in its source format and rate)."""
    import av

    arrays: list[np.ndarray] = []
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        vs.thread_type = "NONE"
        for frame in container.decode(vs, container.streams.audio[0]):
            if isinstance(frame, av.VideoFrame):
                arrays.append(frame.to_ndarray(format="rgb24"))
            else:
                arrays.append(frame.to_ndarray())
    return arrays


def pipeline_decode(path: Path, pipeline: Any, frames: int) -> int:
    """The media pipeline: :func:`avbench.media.decode.decode` (decode, 25 fps, 16 kHz mono,
    resize + centre crop), then the clip cut into its evaluation segments."""
    from avbench.media.decode import decode
    from avbench.media.segments import eval_starts, loop_pad

    clip = decode(path, pipeline)
    spf = clip.samples_per_frame
    video, audio = clip.frames, clip.audio
    if clip.n_frames < frames:
        video, audio, _ = loop_pad(video, audio, frames, spf)
    segments = [(video[s : s + frames], audio[s * spf : (s + frames) * spf])
                for s in eval_starts(len(video), frames)]
    return len(segments)


def bench_decode(media: dict[str, list[Path]], kinds: list[MediaKind], pipeline: Any,
                 frames: int, reps: int, seconds: float) -> dict[str, Any]:
    """Seconds per video of bare decoding (the floor), PyAV's to_ndarray and the pipeline,
    per source format, in this process and one thread each (a process per core is how
    ``avbench data prepare --workers`` runs on a bigger machine); wall and CPU time."""
    out: dict[str, Any] = {}
    for kind in kinds:
        paths = media[kind.name]
        cpu_per: dict[str, list[float]] = {}
        # the contenders take turns on each video: one video takes 20-80 ms, so the runs
        # compared are a fraction of a second apart on a machine whose load changes
        per = interleaved_per_item({
            "floor": decode_only,
            "naive": naive_decode,
            "pipeline": lambda p: pipeline_decode(p, pipeline, frames),
        }, paths, reps, cpu=cpu_per)
        out[kind.name] = {
            "source": kind.describe(),
            "judged": kind.judged,
            "why_not_judged": kind.why,
            "clips": len(paths),
            "clip_seconds": seconds,
            "floor_s": median(per["floor"]),
            "naive_s": median(per["naive"]),
            "pipeline_s": median(per["pipeline"]),
            "pipeline_vs_floor": paired_ratio(per["pipeline"], per["floor"]),
            "pipeline_vs_floor_min": min_ratio(per["pipeline"], per["floor"]),
            "pipeline_vs_naive": paired_ratio(per["pipeline"], per["naive"]),
            "floor_cpu_s": median(cpu_per["floor"]),
            "pipeline_cpu_s": median(cpu_per["pipeline"]),
            "pipeline_vs_floor_cpu": paired_ratio(cpu_per["pipeline"], cpu_per["floor"]),
            "realtime_factor": seconds / median(per["pipeline"]),
        }
    return out


# --------------------------------------------------------------------------------------------
# the prepared cache


def prepare_media(media: dict[str, list[Path]], folder: Path, pipeline: Any, spec: Any) -> Any:
    """Prepare every test clip into a fresh cache under ``folder``; a VideoSet over them."""
    from avbench.media.cache import PreparedCache, prepare
    from avbench.media.videoset import VideoSet
    from avbench.records import VideoRecord

    cache = PreparedCache(folder)
    items = [(f"{kind}/{p.name}", p) for kind, paths in media.items() for p in paths]
    res = prepare(items, pipeline, cache, workers=0, progress=False)
    if res.problems:
        raise RuntimeError(f"bench media could not be prepared: {res.problems[0]}")
    records = [VideoRecord(id=vid, dataset="bench", label=i % 2, label_v=i % 2, label_a=0)
               for i, (vid, _) in enumerate(items)]
    return VideoSet(records, res.entries, cache, spec)


# --------------------------------------------------------------------------------------------
# the DataLoader


def _loader_rate(videoset: Any, workers: int, batch: int, n_batches: int, device: str) -> float:
    """Segments per second the engine's DataLoader delivers (after its first batch, which
    pays for starting the workers)."""
    from avbench.engine.device import make_loader
    from avbench.media.torchdata import train_segments

    draws = np.arange(batch * (n_batches + 1)) % len(videoset)
    dataset = train_segments(videoset, draws, seed=0)
    micro = [list(range(i, i + batch)) for i in range(0, len(draws), batch)]
    loader = make_loader(dataset, batch_sampler=micro, workers=workers, device=device)
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    count = 0
    for b in it:
        count += int(b["label"].shape[0])
    seconds = time.perf_counter() - t
    del it, loader
    return count / seconds


def bench_loader(videoset: Any, batch: int, device: str, engine_workers: int,
                 n_batches: int) -> dict[str, Any]:
    """Loader throughput over ``videoset`` (:func:`prepare_media`): in the main process, one
    worker, and the engine's worker count."""
    rates = {
        "main_process_segments_per_s": _loader_rate(videoset, 0, batch, n_batches, device),
        "one_worker_segments_per_s": _loader_rate(videoset, 1, batch, n_batches, device),
    }
    if engine_workers > 1:
        rates["engine_workers_segments_per_s"] = _loader_rate(
            videoset, engine_workers, batch, n_batches * engine_workers, device)
    elif engine_workers == 1:
        rates["engine_workers_segments_per_s"] = rates["one_worker_segments_per_s"]
    else:
        rates["engine_workers_segments_per_s"] = rates["main_process_segments_per_s"]
    return {"engine_workers": engine_workers, "batch": batch, **rates}
