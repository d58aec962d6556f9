"""``TorchDetector``: a detector whose plugin supplies only the model, the loss and the optimiser.

The engine (``avbench.engine``) owns everything else: epochs, one random segment of every
training video per epoch (or class-balanced draws), gradient accumulation, bf16 autocast on
CUDA, gradient clipping, model selection on the validation split, checkpoints and resume, DDP, progress bars, and the
batched evaluation over every segment.

A plugin implements:

- ``build_model()`` -> ``nn.Module`` (frozen backbones included; set ``requires_grad=False``
  on what must not learn);
- optionally ``frozen_modules()`` -> names of the submodules left out of the saved state (by
  default the outermost submodules whose parameters all have ``requires_grad=False``);
- ``loss(model, batch)`` -> ``(loss tensor, {name: float})`` for a training batch;
- ``scores(model, batch)`` -> ``{"score": P(fake) (B,), "score_v": ..., "score_a": ...}``;
- optionally ``configure_optimizers(model, steps_per_epoch)`` (default: Adam over the
  trainable parameters at ``config.lr``, no schedule).

A batch is a dict of tensors on the run's device: ``video`` uint8 (B, T, 3, H, W) and/or
``audio`` float32 (B, S) (as the InputSpec asks), ``label``, ``label_v``, ``label_a`` int64 (B,)
and ``video_index`` int64 (B,).

Saved state (``state.pt``, checkpoints, the best-validation snapshot): the model's whole
``state_dict()``, parameters and persistent buffers (BatchNorm statistics) alike, minus the
keys under ``frozen_modules()``.

For ``avbench bench -d NAME``, which times any torch detector's training step and evaluation
on random batches shaped by its InputSpec, a detector may also offer:

- ``bench_floors(model)`` -> a list of :class:`BenchFloor`: the cost it cannot optimise away
  (say, its frozen backbone's forward and backward), which the bench times it against;
- ``bench_settings``: config overrides the bench applies (e.g. random weights, so that timing
  needs no download).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from avbench.config import bounded
from avbench.detector import (
    Detector,
    DetectorConfig,
    FitInfo,
    RunContext,
    SegmentBatch,
    VideoSetLike,
)
from avbench.errors import PluginError


@dataclass
class TorchConfig(DetectorConfig):
    """Engine settings every torch detector has (``--set epochs=3`` etc.)."""

    epochs: int = bounded(15, ge=1)
    batch_size: int = bounded(16, ge=1)
    eval_batch_size: int = bounded(32, ge=1)
    lr: float = bounded(1e-4, gt=0)
    grad_accum: int = bounded(1, ge=1)
    #: the largest gradient norm; None or 0 = no clipping.
    clip_grad: float | None = bounded(None, ge=0, note="0 or none: no clipping")
    #: model selection: ``best`` = the epoch with the best validation AUC, ``last`` = the last.
    select: Literal["best", "last"] = "best"
    #: ``auto`` = bf16 autocast on CUDA, fp32 on CPU.
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    #: DataLoader workers; -1 = choose from the CPU count.
    num_workers: int = bounded(-1, ge=-1, note="-1: chosen from the CPU count")
    #: ``protocol`` = what the protocol says (``none`` for the built-in ones: every training
    #: video once per epoch); ``class`` = reals and fakes drawn with probability 1/2 each.
    balance: Literal["protocol", "class", "none"] = "protocol"
    #: training segments per epoch; 0 = one per training video.
    epoch_size: int = bounded(0, ge=0, note="0: one per training video")
    #: validation segments per video (a fixed, seeded choice; 0 = every segment). One per
    #: video keeps per-epoch validation cheaper than the epoch itself on FakeAVCeleb.
    val_segments: int = bounded(1, ge=0, note="0: every segment")

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch sizes and grad_accum must be >= 1")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``{"total", "trainable", "frozen"}``: the model's parameters (shared ones once),
    those with ``requires_grad`` and the rest."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


@dataclass
class BenchFloor:
    """A reference ``avbench bench`` times a torch detector against (see
    :meth:`TorchDetector.bench_floors`).

    ``loss(batch)`` is the training floor: a scalar whose backward reaches what the
    detector's own backward must reach (for prompts before the first layer of a frozen tower:
    a learnable tensor at that tower's input, so backward runs through every layer), the way
    the detector's ``loss`` takes a batch. The bench moves ``module`` to its device and trains
    its learnable parameters with Adam at the detector's ``lr``, under the engine's autocast.
    ``forward(batch)`` is the evaluation floor (e.g. the frozen towers' bare forward),
    returning a tensor, or a tuple, list or dict of tensors; the bench runs it under
    ``torch.inference_mode()``. With ``timed=False`` the reference is counted in FLOPs only.
    """

    name: str
    module: nn.Module
    loss: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    forward: Callable[[dict[str, torch.Tensor]], Any]
    timed: bool = True


class TorchDetector(Detector):
    """Subclass this for torch models; see the module docstring for what to implement."""

    Config: ClassVar[type] = TorchConfig
    #: how often the scheduler from configure_optimizers steps: per ``epoch`` or per ``step``.
    scheduler_interval: ClassVar[str] = "epoch"

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._model: nn.Module | None = None

    # -- what a plugin supplies ------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def scores(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def configure_optimizers(self, model: nn.Module, steps_per_epoch: int) -> Any:
        """Return an optimizer, or ``(optimizer, scheduler)``."""
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.config.lr)

    # -- optional, for ``avbench bench`` -----------------------------------------------------
    #: config overrides ``avbench bench`` applies after the registration's defaults and before
    #: the user's ``--set`` (e.g. random weights: timings do not depend on them, downloads do).
    bench_settings: ClassVar[Mapping[str, Any]] = {}

    def bench_floors(self, model: nn.Module) -> list[BenchFloor]:
        """What ``avbench bench`` times this detector against (default: nothing).

        The first entry is *the floor*: the cost no implementation of the method can avoid,
        e.g. the frozen backbone's forward and, for training, its backward down to the input;
        the bench reports the training step and the evaluation as ratios to it. Further
        entries are references shown beside it (timed, or counted in FLOPs only). ``model``
        is the built model on the bench's device; the floors may share its modules.
        """
        return []

    # -- provided --------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = self.build_model()
        return self._model

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        return parameter_counts(self.model)

    def fit(self, train: VideoSetLike, val: VideoSetLike, ctx: RunContext) -> FitInfo:
        from avbench.engine.train import fit_torch

        return fit_torch(self, train, val, ctx)

    def evaluate(self, data: VideoSetLike, ctx: RunContext) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from avbench.engine.evaluate import evaluate_torch

        return evaluate_torch(self, data, ctx)

    def predict(self, batch: SegmentBatch, ctx: RunContext) -> dict[str, np.ndarray]:
        from avbench.engine.device import batch_to_tensors

        model = self.model.to(ctx.device).eval()
        with torch.inference_mode():
            out = self.scores(model, batch_to_tensors(batch, ctx.device))
        return {k: v.detach().float().cpu().numpy() for k, v in out.items()}

    def frozen_modules(self) -> tuple[str, ...]:
        """Names of the submodules that are not saved (the frozen backbones).

        Their parameters and buffers are left out of :meth:`state_dict`: ``build_model()``
        must rebuild them identically (weights from files, or a fixed seed), and they must
        not change while training (keep them in eval mode; the engine checks their buffers).

        Default: the outermost submodules that hold parameters, all with
        ``requires_grad=False``. Override to name them yourself (e.g. to save a frozen
        module's BatchNorm statistics that training updates, leave it out).
        """
        out: list[str] = []
        for name, module in self.model.named_modules(remove_duplicate=False):
            if not name or any(name.startswith(f + ".") for f in out):
                continue
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                out.append(name)
        return tuple(out)

    def _frozen_prefixes(self) -> tuple[str, ...]:
        names = tuple(self.frozen_modules())
        model = self.model
        for name in names:
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise PluginError(
                    f"{type(self).__name__}.frozen_modules() names {name!r}, which is not a "
                    "submodule of its model"
                ) from None
            learns = [f"{name}.{n}" for n, p in module.named_parameters() if p.requires_grad]
            if learns:
                raise PluginError(
                    f"{type(self).__name__}.frozen_modules() names {name!r}, but its parameter "
                    f"{learns[0]!r} has requires_grad=True (it would learn and not be saved)"
                )
        return tuple(n + "." for n in names)

    def _saved_state(self) -> dict[str, torch.Tensor]:
        """The model's ``state_dict()`` (parameters and persistent buffers) minus the keys
        under :meth:`frozen_modules`, in the model's order (the tensors themselves)."""
        frozen = self._frozen_prefixes()
        return {k: v for k, v in self.model.state_dict().items() if not k.startswith(frozen)}

    def saved_keys(self) -> list[str]:
        """The keys of :meth:`state_dict` (see :meth:`_saved_state`)."""
        return list(self._saved_state())

    def state_dict(self) -> dict[str, Any]:
        """The model's whole state (parameters and buffers, BatchNorm statistics included)
        except its frozen parts, as CPU tensors (saved to ``state.pt`` and checkpoints)."""
        return {k: v.detach().cpu() for k, v in self._saved_state().items()}

    def check_state(self, state: Any) -> None:
        """Raise ``ValueError`` naming the first key that keeps ``state`` from loading: a saved
        key missing, a key the model does not have, a value that is not a tensor, or a shape
        that differs. Keys of frozen parts may be absent (they are rebuilt), or present."""
        who = type(self).__name__
        if not isinstance(state, dict):
            raise ValueError(f"state for {who} is a {type(state).__name__}, not a dict of tensors")
        model_state = self.model.state_dict()
        unexpected = [k for k in state if k not in model_state]
        if unexpected:
            raise ValueError(f"state does not fit {who}: unexpected key {unexpected[0]!r}"
                             + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        frozen = self._frozen_prefixes()
        missing = [k for k in model_state if not k.startswith(frozen) and k not in state]
        if missing:
            raise ValueError(f"state does not fit {who}: missing key {missing[0]!r}"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        for k, v in state.items():
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"state for {who}: {k!r} is a {type(v).__name__}, not a tensor")
            if v.shape != model_state[k].shape:
                raise ValueError(f"state does not fit {who}: {k!r} has shape {tuple(v.shape)}, "
                                 f"the model's is {tuple(model_state[k].shape)}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` saved; strict about its keys (see :meth:`check_state`)."""
        self.check_state(state)
        self.model.load_state_dict(state, strict=False)

    def describe(self) -> dict[str, Any]:
        return {"parameters": self.parameter_counts()}
