"""The prepared-cache half of ``avbench bench``: bytes per second of video and PSNR, the
segment read rate per core, the preparation rate per core, and projections.

Synthetic frames compress far better than footage, so the cache is measured on
real-looking clips (:func:`photo_frames`): a slow pan and zoom over one of scikit-image's
photographs (the astronaut, the cat, the coffee cup) with sensor noise, encoded as h264 + AAC
mp4 at crf 23 the way datasets ship, then run through the media pipeline. Where scikit-image
is missing (it is a dev extra) the bench says so and falls back to its synthetic clips.
Rates per core are clips or segments per CPU second of the process doing the work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

#: FakeAVCeleb (the scale that preparation is projected to)
FAKEAVCELEB_CLIPS = 21_544
FAKEAVCELEB_MEAN_SECONDS = 5.5
PROJECT_CORES = 16
#: segments per second one H100 trains on (avprompt, ViT-B/16 backbones, ~35% MFU)
H100_SEGMENTS_PER_S = 1_200
PHOTOS = ("astronaut", "chelsea", "coffee")


def photo_frames(photo: str, n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: a pan and zoom over a scikit-image photograph, with a
    little noise (sigma 2 grey levels) that changes every frame."""
    from skimage import data
    from skimage.transform import resize

    img = getattr(data, photo)()
    rng = np.random.default_rng([seed, n, size])
    h, w = img.shape[:2]
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for k in range(n):
        t = k / max(n, 1)
        side = int(min(h, w) * (0.6 + 0.2 * np.sin(2 * np.pi * t)))
        y = int((h - side) * (0.5 + 0.4 * np.sin(2.6 * np.pi * t)))
        x = int((w - side) * (0.5 + 0.4 * np.cos(2 * np.pi * t)))
        f = resize(img[y : y + side, x : x + side], (size, size), order=1,
                   anti_aliasing=True, preserve_range=True)
        out[k] = np.clip(f + rng.normal(0, 2.0, f.shape), 0, 255).astype(np.uint8)
    return out


def make_footage(folder: Path, clips: int, seconds: float, size: int) -> tuple[list[Path], str]:
    """``clips`` real-looking mp4 files (cycling through :data:`PHOTOS`) and what they are;
    the bench's synthetic clips where scikit-image is not installed."""
    from avbench.bench.media import _voice
    from avbench.datasets.synth.writer import write_av

    try:
        import skimage  # noqa: F401
    except ImportError:
        from avbench.bench.media import make_media, media_kinds

        files = make_media(folder, media_kinds(size)[:1], clips, seconds)
        return next(iter(files.values())), "synthetic frames (scikit-image is not installed)"
    n = round(seconds * 25)
    paths = []
    for i in range(clips):
        photo = PHOTOS[i % len(PHOTOS)]
        path = folder / f"{photo}{i:02d}.mp4"
        write_av(path, photo_frames(photo, n, size, seed=i),
                 _voice(np.random.default_rng(i), seconds, 16000, 1), fps=25, sample_rate=16000)
        paths.append(path)
    names = ", ".join(sorted({PHOTOS[i % len(PHOTOS)] for i in range(clips)}))
    return paths, f"scikit-image photographs ({names}) panned and zoomed, noise sigma 2, crf 23"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of each frame's PSNR in dB (frames equal: 100)."""
    err = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = err.reshape(len(err), -1).mean(axis=1)
    return float(np.mean(np.where(mse > 0, 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12)),
                                  100.0)))


def _cpu() -> float:
    """CPU seconds of this process, all its threads."""
    return time.process_time()


def bench_prepared_cache(paths: list[Path], footage: str, folder: Path, pipeline: Any,
                         frames: int, reads: int) -> dict[str, Any]:
    """Prepare ``paths`` into a fresh cache (one process, timed per clip in CPU seconds),
    then measure size, PSNR against the pipeline's output, verification and segment reads."""
    from avbench.media.cache import CACHE_FORMAT, PreparedCache, prepare
    from avbench.media.decode import decode

    cache = PreparedCache(folder)
    decode_cpu, prepare_cpu, prepare_wall, psnrs, entries = [], [], [], [], []
    seconds_of_video, cache_bytes, raw_bytes = 0.0, 0, 0
    for i, path in enumerate(paths):
        t = _cpu()
        clip = decode(path, pipeline)
        decode_cpu.append(_cpu() - t)
        t, w = _cpu(), time.perf_counter()
        res = prepare([(str(i), path)], pipeline, cache, workers=0, progress=False)
        prepare_cpu.append(_cpu() - t)
        prepare_wall.append(time.perf_counter() - w)
        if res.problems:
            raise RuntimeError(f"bench footage could not be prepared: {res.problems[0]}")
        entry = res.entries[str(i)]
        entries.append(entry)
        seconds_of_video += entry.n_frames / entry.fps
        cache_bytes += sum(f["size"] for f in entry.meta["files"].values())  # (meta.json not)
        raw_bytes += clip.frames.nbytes + clip.audio.nbytes
        psnrs.append(psnr(cache.load(entry).frames, clip.frames))

    t = _cpu()
    for e in entries:  # the check prepare makes of every entry it uses
        damage = cache.check_entry(e.key)[1]
        if damage:
            raise RuntimeError(f"bench cache entry {e.dir}: {damage}")
    verify_s = (_cpu() - t) / len(entries)
    rates = _segment_rates(folder, entries, frames, reads)

    mb_per_s = cache_bytes / 1e6 / seconds_of_video
    prep_per_clip = float(np.median(prepare_cpu))
    clips_per_core_s = 1.0 / prep_per_clip
    clip_s = FAKEAVCELEB_MEAN_SECONDS
    scale = clip_s / (seconds_of_video / len(entries))  # per clip of the mean length
    projected_s = FAKEAVCELEB_CLIPS * prep_per_clip * scale / PROJECT_CORES
    any_rate = rates["any_start"]
    return {
        "format": CACHE_FORMAT,
        "footage": footage,
        "clips": len(entries),
        "seconds_of_video": seconds_of_video,
        "frame_size": f"{entries[0].width}x{entries[0].height}",
        "mb_per_s": mb_per_s,
        "raw_mb_per_s": raw_bytes / 1e6 / seconds_of_video,
        "ratio_to_raw": cache_bytes / raw_bytes,
        "psnr_db_mean": float(np.mean(psnrs)),
        "psnr_db_min": float(np.min(psnrs)),
        "segment_reads": reads,
        "segments_per_core_s": any_rate,
        "keyframe_segments_per_core_s": rates["keyframe_start"],
        "cores_per_h100": H100_SEGMENTS_PER_S / any_rate,
        "decode_cpu_s_per_clip": float(np.median(decode_cpu)),
        "prepare_cpu_s_per_clip": prep_per_clip,
        "prepare_wall_s_per_clip": float(np.median(prepare_wall)),
        "prepare_clips_per_core_s": clips_per_core_s,
        "verify_cpu_s_per_clip": verify_s,
        "fakeavceleb_clips": FAKEAVCELEB_CLIPS,
        "fakeavceleb_cores": PROJECT_CORES,
        "fakeavceleb_prepare_minutes": projected_s / 60,
        "fakeavceleb_disk_gb": FAKEAVCELEB_CLIPS * clip_s * mb_per_s / 1e3,
        "fakeavceleb_raw_disk_gb": FAKEAVCELEB_CLIPS * clip_s * raw_bytes / 1e9 / seconds_of_video,
    }


def _segment_rates(folder: Path, entries: list[Any], frames: int,
                   reads: int) -> dict[str, float]:
    """Random ``frames``-frame segments (video and audio) read per CPU second, starting at
    any frame (``any_start``, training) and at keyframes (``keyframe_start``, evaluation)."""
    from avbench.media.cache import GOP, PreparedCache

    rates = {}
    rng = np.random.default_rng(0)
    for name, aligned in (("any_start", False), ("keyframe_start", True)):
        reader = PreparedCache(folder)  # a fresh reader: its decoder is made on first use
        out = np.empty((frames, 3, entries[0].height, entries[0].width), dtype=np.uint8)
        audio = np.empty(frames * entries[0].samples_per_frame, dtype=np.float32)
        picks = rng.integers(0, len(entries), reads)
        t = _cpu()
        for j in picks:
            e = entries[int(j)]
            last = e.n_frames - frames
            start = (int(rng.integers(0, last // GOP + 1)) * GOP if aligned
                     else int(rng.integers(0, last + 1)))
            reader.read_frames(e, start, out)
            reader.read_audio(e, start * e.samples_per_frame, audio)
        rates[name] = reads / (_cpu() - t)
    return rates
