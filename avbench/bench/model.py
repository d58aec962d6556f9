"""The model half of ``avbench bench``: avprompt against the floor set by its frozen towers.

* Training: one engine step of avprompt (bf16 autocast on CUDA, fp32 on CPU, as the engine
  runs it: loss of Eq. 16, backward, Adam step) against the **floor**: the same frozen towers
  alone, with one learnable tensor added to CLIP's patch embeddings (before ``ln_pre``) and
  one to Whisper's token embeddings (after its conv stem), and a heads-free loss (mean
  square of the frame features and of the audio tokens). Backward must traverse every
  frozen layer to reach those tensors, as it must to reach avprompt's first-layer prompts, so
  no prompt method can train faster than this.
* Evaluation: avprompt's scores against the bare forward of the towers (open_clip's own
  ``VisionTransformer.forward`` on the frames, Whisper's stem and blocks on the segment's
  mel frames).

The floor and bare forward run the towers' attention through the same path as avprompt
(:func:`avbench_avprompt.model.use_fused_attention`), so that the ratio measures the prompt
method and nothing else; the rows "with open_clip's stock attention" show the same floor
through ``nn.MultiheadAttention``'s own forward.

avprompt's last CLIP layer computes its output at position 1 only, the one output it reads
(:func:`avbench_avprompt.model._block_at_one_position`). The floor and the bare forward run
open_clip's layers whole, as the library ships them. The same saving is open to them (their
last layer needs the class token alone), so the FLOPs of such a pruned floor and bare forward
are counted too: avprompt's FLOPs against them are the method's own cost ratio.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (CPU flash attention
is given torch's own SDPA formulas, which it lacks).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

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

#: the projection: FakeAVCeleb's intra train split (three ethnic groups) and the paper's 15
#: epochs, one segment per video per epoch.
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


def build_detector(backbone: str, batch: int) -> Any:
    """avprompt as the plugin registry creates it, with randomly initialised towers."""
    from avbench.plugins import get_plugins

    info = get_plugins().detector("avprompt")
    return info.create({"backbone": backbone, "clip_weights": "random",
                        "whisper_weights": "random", "batch_size": batch})


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


class BackboneFloor(nn.Module):
    """avprompt's frozen towers alone, each with one learnable input tensor (the floor)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        vis, aud = model.visual, model.audio
        if vis is None or aud is None:
            raise ValueError("the floor needs both of avprompt's branches")
        self.tower = vis.tower
        self.encoder = aud.encoder
        self._log_mel = aud.log_mel
        self.n_tokens = aud.n_tokens
        self.register_buffer("pixel_mean", model.pixel_mean.clone(), persistent=False)
        self.register_buffer("pixel_std", model.pixel_std.clone(), persistent=False)
        dev = self.tower.class_embedding.device
        self.delta_v = nn.Parameter(torch.zeros_like(self.tower.positional_embedding))
        self.delta_a = nn.Parameter(torch.zeros(self.n_tokens, aud.width, device=dev))
        #: compute the last CLIP layer at the class token alone (FLOP reference only)
        self.prune_last = False

    def images(self, video: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = video.shape
        return (video.reshape(b * t, c, h, w).float() - self.pixel_mean) / self.pixel_std

    def audio_tokens(self, audio: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        x = torch.nn.functional.gelu(enc.conv1(self._log_mel(audio)))
        x = torch.nn.functional.gelu(enc.conv2(x)).transpose(1, 2)
        return x + enc.positional_embedding[: self.n_tokens].to(x.dtype)

    def run_audio(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.encoder.blocks:
            x = block(x)
        return self.encoder.ln_post(x)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features with the learnable inputs: (B, T, D_v) frame features, (B, N_a, D_a)."""
        b, frames = video.shape[:2]
        x = self.embed(video, self.delta_v)
        f_v = self.run_visual(x).reshape(b, frames, -1)
        f_a = self.run_audio(self.audio_tokens(audio) + self.delta_a.to(x.dtype))
        return f_v, f_a

    def embed(self, video: torch.Tensor, delta: torch.Tensor | None = None) -> torch.Tensor:
        """CLIP's patch and class embeddings (plus ``delta`` on the positions), ``ln_pre``."""
        t = self.tower
        x = t.conv1(self.images(video)).flatten(2).transpose(1, 2)
        cls = t.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        pos = t.positional_embedding if delta is None else t.positional_embedding + delta
        return t.ln_pre(torch.cat([cls, x], dim=1) + pos.to(x.dtype))

    def run_visual(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP's blocks on embedded tokens, then ``ln_post`` of the class token."""
        from avbench_avprompt._fast import block_at_one_position as _block_at_one_position

        blocks = self.tower.transformer.resblocks
        for i, block in enumerate(blocks):
            if self.prune_last and i == len(blocks) - 1:
                return self.tower.ln_post(_block_at_one_position(block, x, 0))
            x = block(x)
        return self.tower.ln_post(x[:, 0])

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        f_v, f_a = self(batch["video"], batch["audio"])
        return f_v.float().square().mean() + f_a.float().square().mean()

    def bare(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The towers' plain forward (evaluation floor)."""
        if self.prune_last:  # open_clip's forward, the last layer at the class token alone
            pooled = self.run_visual(self.embed(video))
            return pooled @ self.tower.proj, self.run_audio(self.audio_tokens(audio))
        return self.tower(self.images(video)), self.run_audio(self.audio_tokens(audio))


@contextlib.contextmanager
def stock_attention(module: nn.Module) -> Iterator[None]:
    """Run ``module``'s ``nn.MultiheadAttention`` layers through their stock forward."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.MultiheadAttention) and "forward" in m.__dict__:
            saved.append((m, m.__dict__.pop("forward")))
    try:
        yield
    finally:
        for m, f in saved:
            m.forward = f


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
    and :func:`avbench.engine.evaluate.evaluate_torch`)."""

    def __init__(self, det: Any, device: str, batch: int, seed: int = 0) -> None:
        from avbench.engine.evaluate import autocast_for, keep_freed_memory

        self.malloc_tuned = keep_freed_memory(device)  # as fit_torch and evaluate_torch do
        self.det = det
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.model = det.model.to(self.device)
        self.floor = BackboneFloor(self.model).to(self.device)
        self.autocast = lambda: autocast_for(det.config.amp, device)
        self.amp = "bf16" if self.autocast().__class__ is torch.autocast else "fp32"
        opt = det.configure_optimizers(self.model, 1)
        self.optimizer = opt[0] if isinstance(opt, tuple) else opt
        self.floor_optimizer = torch.optim.Adam(self.floor.parameters(), lr=det.config.lr)
        self.spec = det.input_spec()
        self.batch = batch
        cpu = make_batch(self.spec, batch, seed)
        self.cpu_batch = {k: (v.pin_memory() if self.cuda else v) for k, v in cpu.items()}

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def _to_device(self) -> dict[str, torch.Tensor]:
        from avbench.engine.evaluate import to_device

        return to_device(self.cpu_batch, self.device)

    # training
    def _avprompt_loss(self) -> torch.Tensor:
        self.model.train()
        batch = self._to_device()
        with self.autocast():
            loss, _ = self.det.loss(self.model, batch)
        return loss

    def _floor_loss(self) -> torch.Tensor:
        batch = self._to_device()
        with self.autocast():
            return self.floor.loss(batch)

    def train_avprompt(self) -> None:
        loss = self._avprompt_loss()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        float(loss.detach())

    def train_floor(self) -> None:
        loss = self._floor_loss()
        loss.backward()
        self.floor_optimizer.step()
        self.floor_optimizer.zero_grad(set_to_none=True)
        float(loss.detach())

    def train_floor_stock(self) -> None:
        with stock_attention(self.floor):
            self.train_floor()

    # evaluation
    def eval_avprompt(self) -> None:
        self.model.eval()
        with torch.inference_mode():
            batch = self._to_device()
            with self.autocast():
                out = self.det.scores(self.model, batch)
            for v in out.values():
                v.float().cpu()

    def eval_bare(self) -> None:
        with torch.inference_mode():
            batch = self._to_device()
            with self.autocast():
                out = self.floor.bare(batch["video"], batch["audio"])
            for v in out:
                v.float().cpu()

    def eval_bare_stock(self) -> None:
        with stock_attention(self.floor):
            self.eval_bare()

    # FLOPs of one step (forward + backward for training, as executed)
    def flops(self) -> dict[str, int]:
        def grad(loss_fn: Any) -> None:
            loss_fn().backward()

        out = {
            "train_avprompt": count_flops(lambda: grad(self._avprompt_loss)),
            "train_floor": count_flops(lambda: grad(self._floor_loss)),
            "eval_avprompt": count_flops(self.eval_avprompt),
            "eval_bare": count_flops(self.eval_bare),
        }
        self.floor.prune_last = True
        try:
            out["train_floor_pruned"] = count_flops(lambda: grad(self._floor_loss))
            out["eval_bare_pruned"] = count_flops(self.eval_bare)
        finally:
            self.floor.prune_last = False
        self.optimizer.zero_grad(set_to_none=True)
        self.floor_optimizer.zero_grad(set_to_none=True)
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


def bench_model(steps: Steps, reps: int, *, stock: bool = True,
                eval_reps: int | None = None) -> dict[str, Any]:
    """Seconds per clip (training, ``reps`` repetitions) and per segment (evaluation,
    ``eval_reps``, default ``reps``), ratios and FLOPs."""
    b = steps.batch
    faults: list[int] = []
    fns = {"avprompt": _counting_faults(steps.train_avprompt, faults), "floor": steps.train_floor}
    if stock:
        fns["floor_stock"] = steps.train_floor_stock
    train = interleaved(fns, reps, sync=steps.sync)
    faults = faults[1:]  # the warm-up step allocates for the first time
    fns = {"avprompt": steps.eval_avprompt, "bare": steps.eval_bare}
    if stock:
        fns["bare_stock"] = steps.eval_bare_stock
    evals = interleaved(fns, eval_reps or reps, sync=steps.sync)
    flops = steps.flops()
    t_step = median(train["avprompt"])
    out: dict[str, Any] = {
        "batch": b,
        "amp": steps.amp,
        "threads": torch.get_num_threads(),
        "malloc_tuned": steps.malloc_tuned,
        "train": {
            "step_s": t_step,
            "avprompt_s_per_clip": t_step / b,
            "floor_s_per_clip": median(train["floor"]) / b,
            "ratio": paired_ratio(train["avprompt"], train["floor"]),
            "ratio_of_min": min_ratio(train["avprompt"], train["floor"]),
            "flops_per_clip": flops["train_avprompt"] / b,
            "floor_flops_per_clip": flops["train_floor"] / b,
            "flop_ratio": flops["train_avprompt"] / max(flops["train_floor"], 1),
            "pruned_floor_flops_per_clip": flops["train_floor_pruned"] / b,
            "flop_ratio_vs_pruned": flops["train_avprompt"] / max(flops["train_floor_pruned"], 1),
            "achieved_tflops": flops["train_avprompt"] / t_step / 1e12,
            "page_faults_per_step": int(median([float(f) for f in faults])) if faults else None,
            "runs_s": train["avprompt"],
            "floor_runs_s": train["floor"],
        },
        "eval": {
            "avprompt_s_per_segment": median(evals["avprompt"]) / b,
            "bare_s_per_segment": median(evals["bare"]) / b,
            "ratio": paired_ratio(evals["avprompt"], evals["bare"]),
            "ratio_of_min": min_ratio(evals["avprompt"], evals["bare"]),
            "flops_per_segment": flops["eval_avprompt"] / b,
            "bare_flops_per_segment": flops["eval_bare"] / b,
            "flop_ratio": flops["eval_avprompt"] / max(flops["eval_bare"], 1),
            "pruned_bare_flops_per_segment": flops["eval_bare_pruned"] / b,
            "flop_ratio_vs_pruned": flops["eval_avprompt"] / max(flops["eval_bare_pruned"], 1),
            "runs_s": evals["avprompt"],
            "bare_runs_s": evals["bare"],
        },
        "reps": reps,
        "eval_reps": eval_reps or reps,
    }
    if stock:
        out["train"]["floor_stock_s_per_clip"] = median(train["floor_stock"]) / b
        out["train"]["floor_stock_vs_floor"] = paired_ratio(train["floor_stock"], train["floor"])
        out["eval"]["bare_stock_s_per_segment"] = median(evals["bare_stock"]) / b
        out["eval"]["bare_stock_vs_bare"] = paired_ratio(evals["bare_stock"], evals["bare"])
    return out


def cuda_memory(steps: Steps) -> dict[str, Any]:
    """Peak CUDA memory above what is allocated before one training / evaluation step."""
    out: dict[str, Any] = {"method": "torch.cuda.max_memory_allocated", "batch": steps.batch}
    for what, fn in (("train", steps.train_avprompt), ("eval", steps.eval_avprompt)):
        steps.sync()
        torch.cuda.reset_peak_memory_stats(steps.device)
        base = torch.cuda.memory_allocated(steps.device)
        fn()
        steps.sync()
        out[f"{what}_peak_bytes"] = int(torch.cuda.max_memory_allocated(steps.device) - base)
    return out


def projection(step_s: float, batch: int, loader: dict[str, Any] | None) -> dict[str, Any]:
    """A 15-epoch ``intra`` training on FakeAVCeleb's train split, from the measured step.

    With loader workers, loading overlaps the step (the slower of the two sets the pace);
    without (workers = 0), each batch is loaded before its step. Validation is not included.
    """
    segments = FAKEAVCELEB_TRAIN_VIDEOS * EPOCHS
    steps = math.ceil(segments / batch)
    load_s = None
    per_step = step_s
    if loader is not None:
        rate = loader["engine_workers_segments_per_s"]
        load_s = batch / rate
        per_step = max(step_s, load_s) if loader["engine_workers"] > 0 else step_s + load_s
    return {
        "videos": FAKEAVCELEB_TRAIN_VIDEOS,
        "epochs": EPOCHS,
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

