"""``avbench bench``: where the wall time of a training run goes, measured in one run.

Sections (``--only`` picks some):

* ``decode``: bare PyAV decoding of test media (one thread, nothing converted: the floor)
  against the full media pipeline (decode, 25 fps, 16 kHz mono, resize + crop, segments);
* ``cache``: the compressed prepared cache on real-looking footage: size, PSNR, segment
  reads and preparation per core, projected to FakeAVCeleb (:mod:`avbench.bench.cache`);
* ``loader``: segments per second the engine's DataLoader delivers, against what a training
  step consumes;
* ``model``: a training step and an evaluation batch of the torch detector ``-d NAME``
  (default ``avprompt``, the reference plugin), against the floor the detector offers
  (``bench_floors``, see :mod:`avbench.bench.model`), FLOPs, and on CUDA the achieved TFLOP/s
  and model FLOPs utilisation; the projected ``intra`` training on FakeAVCeleb;
* ``memory``: peak memory of a training step and an evaluation batch;
* ``cli``: wall time of ``avbench --help``.

The detector is created as ``avbench run`` creates it, with its ``bench_settings`` (e.g.
random weights) and ``--set KEY=VALUE`` on top; the media sections use its InputSpec.

The bench writes the media it needs into a temporary folder, so it runs from a clean
install. Comparisons within a section run interleaved (see :mod:`avbench.bench._timing`), so
their ratios hold on a machine whose load changes.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from avbench.errors import ConfigError

SECTIONS = ("decode", "cache", "loader", "model", "memory", "cli")
JSON_VERSION = 1


@dataclass
class BenchOptions:
    quick: bool = False
    device: str = "auto"
    batch: int | None = None
    only: tuple[str, ...] = ()
    peak_tflops: float | None = None
    #: the registered torch detector to time
    detector: str = "avprompt"
    #: its config overrides (``--set KEY=VALUE``), on top of its ``bench_settings``
    settings: dict[str, str] = field(default_factory=dict)
    #: the smallest sizes (2 clips of 2 s, 2 repetitions): a check that the bench runs, for
    #: tests; its figures mean little and no target is judged
    smoke: bool = False
    reps: int | None = None
    workers: int | None = None
    progress: bool = True
    sections: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        only: list[str] = []
        for item in self.only:
            only.extend(s.strip() for s in item.split(",") if s.strip())
        bad = [s for s in only if s not in SECTIONS]
        if bad:
            raise ConfigError(f"--only {bad[0]!r}: choose from {', '.join(SECTIONS)}")
        self.sections = tuple(s for s in SECTIONS if not only or s in only)
        if self.batch is not None and self.batch < 1:
            raise ConfigError("--batch must be >= 1")
        if self.reps is not None and self.reps < 1:
            raise ConfigError("--reps must be >= 1")
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ConfigError("--peak-tflops must be > 0")


@dataclass(frozen=True)
class Profile:
    clips: int
    seconds: float
    media_reps: int
    model_reps: int
    cli_runs: int
    loader_segments: int
    #: repetitions of the evaluation comparison (a forward costs a third of a training
    #: step, and its ratio has a narrower margin: more repetitions settle its median)
    eval_reps: int = 0


def profile(opts: BenchOptions) -> Profile:
    if opts.smoke:
        p = Profile(clips=2, seconds=2.0, media_reps=2, model_reps=2, cli_runs=3,
                    loader_segments=16)
    # Decoding a format's clips takes about a second, so the media sections get more
    # repetitions than the model: on a shared 2-core machine single repetitions of the
    # decode ratios spread by +-0.2, and their median needs several to settle.
    elif opts.quick:
        p = Profile(clips=3, seconds=6.0, media_reps=9, model_reps=3, cli_runs=5,
                    loader_segments=48)
    else:
        p = Profile(clips=6, seconds=10.0, media_reps=11, model_reps=5, cli_runs=7,
                    loader_segments=128)
    if opts.reps is not None:
        p = Profile(p.clips, p.seconds, opts.reps, opts.reps, p.cli_runs, p.loader_segments,
                    opts.reps)
    elif not p.eval_reps:
        p = replace(p, eval_reps=2 * p.model_reps + 1)
    return p


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: torch sees no CUDA device")
        return device
    if device != "cpu":
        raise ConfigError(f"--device {device!r}: use auto, cpu or cuda[:N]")
    return device


def machine(device: str) -> dict[str, Any]:
    import torch

    from avbench.io import available_cores

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": available_cores(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
    }


def _help_seconds(runs: int) -> dict[str, Any]:
    """Wall time of ``avbench --help`` in a fresh process (the console script when found)."""
    script = Path(sys.executable).with_name("avbench")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "avbench"]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([*cmd, "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
        times.append(time.perf_counter() - t)
    from avbench.bench._timing import median

    return {"help_s": median(times), "help_min_s": min(times), "runs_s": times,
            "command": "avbench --help" if script.exists() else "python -m avbench --help"}


def run_bench(opts: BenchOptions, console: Any = None) -> dict[str, Any]:
    """Run the chosen sections; return the results (the JSON document)."""
    from rich.console import Console

    from avbench.bench import report
    from avbench.bench._timing import load_average

    console = console or Console(stderr=True)

    def say(msg: str) -> None:
        if opts.progress:
            console.print(f"[dim]bench:[/] {msg}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = resolve_device(opts.device)
    prof = profile(opts)
    cuda = device.startswith("cuda")
    batch = opts.batch or (32 if cuda else (1 if opts.quick or opts.smoke else 2))
    from avbench.bench.model import build_detector
    from avbench.config import config_hash

    det = build_detector(opts.detector, opts.settings, batch)  # bad settings end here
    spec = det.input_spec()
    doc: dict[str, Any] = {
        "version": JSON_VERSION,
        "machine": machine(device),
        "settings": {
            "quick": opts.quick, "smoke": opts.smoke, "detector": opts.detector,
            "set": dict(opts.settings), "device": device, "batch": batch,
            "sections": list(opts.sections), "clips_per_format": prof.clips,
            "clip_seconds": prof.seconds, "media_reps": prof.media_reps,
            "model_reps": prof.model_reps, "eval_reps": prof.eval_reps,
            "detector_settings": {**type(det).bench_settings, **opts.settings},
            "config_hash": config_hash(det.config),
        },
        **{s: None for s in ("decode", "cache", "loader", "model", "loader_vs_model",
                             "memory", "projection", "cli")},
    }
    doc["machine"]["load_before"] = load_average()
    started = time.perf_counter()

    needs_media = {"decode", "cache", "loader"} & set(opts.sections)
    work = Path(tempfile.mkdtemp(prefix="avbench-bench-")) if needs_media else None
    try:
        if needs_media:
            assert work is not None
            from avbench.bench import media as bm
            from avbench.media.videoset import pipeline_for_spec

            pipeline = pipeline_for_spec(spec)
            kinds = bm.media_kinds(spec.size)
            files: dict[str, list[Path]] = {}
            if {"decode", "loader"} & set(opts.sections):  # (the cache section writes its own)
                say(f"writing {prof.clips} test clips of {prof.seconds:g} s in each of "
                    f"{len(kinds)} formats")
                files = bm.make_media(work / "media", kinds, prof.clips, prof.seconds)
            if "decode" in opts.sections:
                say("decode: bare PyAV against the media pipeline")
                doc["decode"] = bm.bench_decode(files, kinds, pipeline, spec.frames,
                                                prof.media_reps, prof.seconds)
            if "cache" in opts.sections:
                from avbench.bench import cache as bc

                footage, what = bc.make_footage(work / "footage", prof.clips, prof.seconds,
                                                spec.size)
                say(f"cache: size, PSNR, segment reads and preparation on {what}")
                doc["cache"] = bc.bench_prepared_cache(footage, what, work / "cache-footage",
                                                       pipeline, spec.frames,
                                                       reads=100 * prof.clips)
            if "loader" in opts.sections:
                from avbench.engine.device import resolve_workers

                workers = opts.workers if opts.workers is not None else resolve_workers(-1)
                say(f"loader: DataLoader throughput (engine workers here: {workers})")
                videoset = bm.prepare_media(files, work / "cache", pipeline, spec)
                doc["loader"] = bm.bench_loader(videoset, batch, device, workers,
                                                max(4, prof.loader_segments // batch))
        if "model" in opts.sections:
            from avbench.bench import model as mm

            steps = mm.Steps(det, device, batch)
            against = f"against its floor ({steps.floors[0].name})" if steps.floors else "(no floor)"
            say(f"model: {opts.detector} {against}, batch {batch} on {device}")
            doc["model"] = mm.bench_model(steps, prof.model_reps, eval_reps=prof.eval_reps)
            train = doc["model"]["train"]
            if cuda:
                name = doc["machine"]["gpu"] or ""
                peak = opts.peak_tflops or mm.peak_tflops(name)
                train["peak_tflops"] = peak
                train["peak_source"] = ("--peak-tflops" if opts.peak_tflops else
                                        "table" if peak else None)
                train["mfu"] = train["achieved_tflops"] / peak if peak else None
            else:
                train["peak_tflops"] = opts.peak_tflops
                train["peak_source"] = "--peak-tflops" if opts.peak_tflops else None
                train["mfu"] = (train["achieved_tflops"] / opts.peak_tflops
                                if opts.peak_tflops else None)
            if "memory" in opts.sections and cuda:
                doc["memory"] = mm.cuda_memory(steps)
            epochs = int(getattr(det.config, "epochs", mm.EPOCHS))
            doc["projection"] = mm.projection(train["step_s"], batch, doc["loader"], epochs)
            if doc["loader"] is not None:
                doc["loader_vs_model"] = mm.loader_vs_model(doc["loader"], train["step_s"], batch)
            del steps
        if "memory" in opts.sections and not cuda:
            from avbench.bench.memory import measure_cpu

            say("memory: peak RSS of a training step and an evaluation batch (child processes)")
            doc["memory"] = measure_cpu(opts.detector, opts.settings, batch)
        elif "memory" in opts.sections and doc["memory"] is None:
            from avbench.bench import model as mm

            doc["memory"] = mm.cuda_memory(mm.Steps(det, device, batch))
        if "cli" in opts.sections:
            say("cli: avbench --help")
            doc["cli"] = _help_seconds(prof.cli_runs)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    doc["machine"]["load_after"] = load_average()
    doc["seconds"] = time.perf_counter() - started
    doc["targets"] = report.targets(doc)
    return doc
