"""The model half of ``avbench bench``: a torch detector's training step and evaluation,
against the floor the detector offers.

Any registered :class:`~avbench.torch_detector.TorchDetector` can be timed (``-d NAME``), on a
random batch shaped by its InputSpec (uint8 frames, audio, half the segments labelled fake):

* Training: one engine step, as :func:`avbench.engine.train.fit_torch` runs it (the engine's
  autocast: bf16 on CUDA, fp32 on CPU; the detector's ``loss``, backward, the step of the
  optimiser from its ``configure_optimizers``).
* Evaluation: the detector's ``scores`` in eval mode under ``torch.inference_mode()``, as
  :func:`avbench.engine.evaluate.evaluate_torch` runs them.
* Floors: what the detector's optional ``bench_floors(model)`` returns
  (:class:`~avbench.torch_detector.BenchFloor`). The first is timed in turn with the
  detector's step and evaluation, and the ratios to it are reported; further references are
  timed the same way or, with ``timed=False``, counted in FLOPs only. A detector without
  floors gets its own times and FLOPs.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (CPU flash attention
is given torch's own SDPA formulas, which it lacks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from avbench.bench._timing import interleaved, median, min_ratio, paired_ratio

#: dense bf16 tensor-core peak TFLOP/s (vendor datasheets, no sparsity), matched in order
#: against ``torch.cuda.get_device_name``; override with ``--peak-tflops``.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
)

#: the projection: FakeAVCeleb's intra train split (three ethnic groups) and, unless the
#: detector's config says otherwise, the paper's 15 epochs, one segment per video per epoch.
FAKEAVCELEB_TRAIN_VIDEOS = 12_800
EPOCHS = 15


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS:
        if key == "A10":
            if "A10" in device_name and "A100" not in device_name and "A10G" not in device_name:
                return value
        elif key in device_name:
            return value
    return None


# --------------------------------------------------------------------------------------------
# building


def build_detector(name: str, settings: Mapping[str, Any], batch: int) -> Any:
    """The registered torch detector ``name`` as ``avbench run`` creates it: registration
    defaults, then the class's ``bench_settings``, then ``settings`` (``--set``), with
    ``batch_size`` set to the bench's batch."""
    from avbench.errors import ConfigError
    from avbench.plugins import get_plugins
    from avbench.torch_detector import TorchDetector

    info = get_plugins().detector(name)
    cls = info.load()
    if not issubclass(cls, TorchDetector):
        raise ConfigError(f"-d {name}: {cls.__name__} is not a TorchDetector (the bench times "
                          "the training step and evaluation of torch detectors)")
    return info.create({**cls.bench_settings, **settings, "batch_size": batch})


def make_batch(spec: Any, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training batch as the engine hands it over (CPU tensors), half real, half fake."""
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(batch) % 2
    out = {
        "label": label,
        "label_v": label.clone(),
        "label_a": (torch.arange(batch) // 2) % 2 * label,
        "video_index": torch.arange(batch),
    }
    if spec.reads_video:
        out["video"] = torch.randint(0, 256, (batch, spec.frames, 3, spec.size, spec.size),
                                     generator=g, dtype=torch.uint8)
    if spec.reads_audio:
        out["audio"] = 0.1 * torch.randn(batch, spec.samples, generator=g)
    return out


def _fetch(out: Any) -> None:
    """Bring every tensor of an output to the host, as evaluation does with scores."""
    if isinstance(out, torch.Tensor):
        out.float().cpu()
    elif isinstance(out, Mapping):
        for v in out.values():
            _fetch(v)
    elif isinstance(out, list | tuple):
        for v in out:
            _fetch(v)


# --------------------------------------------------------------------------------------------
# FLOPs


def _register_cpu_sdpa_flops() -> None:
    """FlopCounterMode knows the CUDA attention kernels but not CPU flash attention."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd not in fc.flop_registry:
        @fc.register_flop_formula(fwd)
        def _fwd(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                 out_shape: Any = None, **kwargs: Any) -> int:
            return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    if bwd is not None and bwd not in fc.flop_registry:
        @fc.register_flop_formula(bwd)
        def _bwd(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any,
                 *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
            return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def count_flops(fn: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_sdpa_flops()
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------------------------
# steps


class Steps:
    """The timed steps, as the engine runs them (see :func:`avbench.engine.train.fit_torch`
    and :func:`avbench.engine.evaluate.evaluate_torch`), and the detector's floors."""

    def __init__(self, det: Any, device: str, batch: int, seed: int = 0) -> None:
        from avbench.engine.device import autocast_for
        from avbench.errors import PluginError

        self.det = det
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.model = det.model.to(self.device)
        self.autocast = lambda: autocast_for(det.config.amp, device)
        self.amp = "bf16" if self.autocast().__class__ is torch.autocast else "fp32"
        opt = det.configure_optimizers(self.model, 1)
        self.optimizer = opt[0] if isinstance(opt, tuple) else opt
        self.floors = list(det.bench_floors(self.model))
        if self.floors and not self.floors[0].timed:
            raise PluginError(f"{det.name}.bench_floors(): the first floor "
                              f"({self.floors[0].name!r}) is the one timed against: timed=True")
        self._optimizers: dict[int, torch.optim.Optimizer] = {}
        for floor in self.floors:
            floor.module.to(self.device)
            params = [p for p in floor.module.parameters() if p.requires_grad]
            if not params:
                raise PluginError(f"{det.name}.bench_floors(): {floor.name!r} has no learnable "
                                  "parameter, so its backward would reach nothing")
            if id(floor.module) not in self._optimizers:
                self._optimizers[id(floor.module)] = torch.optim.Adam(params, lr=det.config.lr)
        self.spec = det.input_spec()
        self.batch = batch
        cpu = make_batch(self.spec, batch, seed)
        self.cpu_batch = {k: (v.pin_memory() if self.cuda else v) for k, v in cpu.items()}

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _to_device(self) -> dict[str, torch.Tensor]:
        from avbench.engine.device import to_device

        return to_device(self.cpu_batch, self.device)

    # training
    def _loss(self) -> torch.Tensor:
        self.model.train()
        batch = self._to_device()
        with self.autocast():
            loss, _ = self.det.loss(self.model, batch)
        return loss

    def _floor_loss(self, floor: Any) -> torch.Tensor:
        batch = self._to_device()
        with self.autocast():
            return floor.loss(batch)

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())

    def train(self) -> None:
        """One training step of the detector."""
        self._step(self._loss(), self.optimizer)

    def train_floor(self, floor: Any) -> None:
        self._step(self._floor_loss(floor), self._optimizers[id(floor.module)])

    # evaluation
    def evaluate(self) -> None:
        """The detector's scores of one batch."""
        self.model.eval()
        with torch.inference_mode():
            batch = self._to_device()
            with self.autocast():
                _fetch(self.det.scores(self.model, batch))

    def eval_floor(self, floor: Any) -> None:
        with torch.inference_mode():
            batch = self._to_device()
            with self.autocast():
                _fetch(floor.forward(batch))

    # FLOPs of one step (forward + backward for training, as executed)
    def flops(self) -> dict[str, Any]:
        def grad(loss_fn: Any) -> None:
            loss_fn().backward()

        out: dict[str, Any] = {
            "train": count_flops(lambda: grad(self._loss)),
            "eval": count_flops(self.evaluate),
            "floors": [
                {"train": count_flops(lambda f=f: grad(lambda: self._floor_loss(f))),
                 "eval": count_flops(lambda f=f: self.eval_floor(f))}
                for f in self.floors
            ],
        }
        self.optimizer.zero_grad(set_to_none=True)
        for opt in self._optimizers.values():
            opt.zero_grad(set_to_none=True)
        return out


def _minor_faults() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def _counting_faults(fn: Any, out: list[int]) -> Any:
    """``fn``, recording the page faults (minor: memory handed to the process) of each call."""

    def run() -> None:
        before = _minor_faults()
        fn()
        after = _minor_faults()
        if before is not None and after is not None:
            out.append(after - before)

    return run


def _reference(floor: Any, flops: dict[str, int], own: dict[str, int], b: int,
               runs: dict[str, list[float]] | None, floor_runs: dict[str, list[float]],
               part: str) -> dict[str, Any]:
    per = "clip" if part == "train" else "segment"
    ref: dict[str, Any] = {"name": floor.name, "timed": floor.timed,
                           f"flops_per_{per}": flops[part] / b,
                           "flop_ratio": own[part] / max(flops[part], 1)}
    if runs is not None:
        ref[f"s_per_{per}"] = median(runs[part]) / b
        ref["vs_floor"] = paired_ratio(runs[part], floor_runs[part])
    return ref


def bench_model(steps: Steps, reps: int, eval_reps: int | None = None) -> dict[str, Any]:
    """Seconds per clip (training, ``reps`` repetitions) and per segment (evaluation,
    ``eval_reps``, default ``reps``), FLOPs, and the ratios to the detector's floors."""
    b = steps.batch
    faults: list[int] = []
    floors = steps.floors
    timed = {f"floor {i}": f for i, f in enumerate(floors) if f.timed}
    train = interleaved({"detector": _counting_faults(steps.train, faults),
                         **{k: (lambda f=f: steps.train_floor(f)) for k, f in timed.items()}},
                        reps, sync=steps.sync)
    faults = faults[1:]  # the warm-up step allocates for the first time
    evals = interleaved({"detector": steps.evaluate,
                         **{k: (lambda f=f: steps.eval_floor(f)) for k, f in timed.items()}},
                        eval_reps or reps, sync=steps.sync)
    flops = steps.flops()
    t_step = median(train["detector"])
    tr: dict[str, Any] = {
        "step_s": t_step,
        "s_per_clip": t_step / b,
        "flops_per_clip": flops["train"] / b,
        "achieved_tflops": flops["train"] / t_step / 1e12,
        "page_faults_per_step": int(median([float(f) for f in faults])) if faults else None,
        "runs_s": train["detector"],
    }
    ev: dict[str, Any] = {
        "s_per_segment": median(evals["detector"]) / b,
        "flops_per_segment": flops["eval"] / b,
        "runs_s": evals["detector"],
    }
    if floors:
        floor, ff = floors[0], flops["floors"][0]
        for part, got, runs, per in (("train", tr, train, "clip"), ("eval", ev, evals, "segment")):
            mine, theirs = runs["detector"], runs["floor 0"]
            got.update({
                "floor": floor.name,
                f"floor_s_per_{per}": median(theirs) / b,
                "ratio": paired_ratio(mine, theirs),
                "ratio_of_min": min_ratio(mine, theirs),
                f"floor_flops_per_{per}": ff[part] / b,
                "flop_ratio": flops[part] / max(ff[part], 1),
                "floor_runs_s": theirs,
            })
        for part, got, runs in (("train", tr, train), ("eval", ev, evals)):
            got["references"] = [
                _reference(f, flops["floors"][i], flops, b,
                           {part: runs[f"floor {i}"]} if f.timed else None,
                           {part: runs["floor 0"]}, part)
                for i, f in enumerate(floors) if i > 0
            ]
    return {
        "detector": steps.det.name,
        "batch": b,
        "amp": steps.amp,
        "threads": torch.get_num_threads(),
        "train": tr,
        "eval": ev,
        "reps": reps,
        "eval_reps": eval_reps or reps,
    }


def cuda_memory(steps: Steps) -> dict[str, Any]:
    """Peak CUDA memory above what is allocated before one training / evaluation step."""
    out: dict[str, Any] = {"method": "torch.cuda.max_memory_allocated", "batch": steps.batch}
    for what, fn in (("train", steps.train), ("eval", steps.evaluate)):
        steps.sync()
        torch.cuda.reset_peak_memory_stats(steps.device)
        base = torch.cuda.memory_allocated(steps.device)
        fn()
        steps.sync()
        out[f"{what}_peak_bytes"] = int(torch.cuda.max_memory_allocated(steps.device) - base)
    return out


def projection(step_s: float, batch: int, loader: dict[str, Any] | None,
               epochs: int = EPOCHS) -> dict[str, Any]:
    """An ``epochs``-epoch ``intra`` training on FakeAVCeleb's train split, from the
    measured step.

    With loader workers, loading overlaps the step (the slower of the two sets the pace);
    without (workers = 0), each batch is loaded before its step. Validation is not included.
    """
    segments = FAKEAVCELEB_TRAIN_VIDEOS * epochs
    steps = math.ceil(segments / batch)
    load_s = None
    per_step = step_s
    if loader is not None:
        rate = loader["engine_workers_segments_per_s"]
        load_s = batch / rate
        per_step = max(step_s, load_s) if loader["engine_workers"] > 0 else step_s + load_s
    return {
        "videos": FAKEAVCELEB_TRAIN_VIDEOS,
        "epochs": epochs,
        "segments": segments,
        "batch": batch,
        "steps": steps,
        "step_s": step_s,
        "load_s_per_batch": load_s,
        "loader_bound": bool(load_s is not None and load_s > step_s),
        "seconds": steps * per_step,
    }


def loader_vs_model(loader: dict[str, Any], step_s: float, batch: int) -> dict[str, Any]:
    consumes = batch / step_s
    delivers = loader["engine_workers_segments_per_s"]
    return {
        "train_consumes_segments_per_s": consumes,
        "loader_delivers_segments_per_s": delivers,
        "headroom": delivers / consumes,
        "keeps_up": bool(delivers >= consumes),
    }

