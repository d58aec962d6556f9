"""``TorchDetector``: a detector whose plugin supplies only the model, the loss and the optimiser.

The engine (``avbench.engine``) owns everything else: epochs, class-balanced sampling of one
random segment per video, gradient accumulation, bf16 autocast on CUDA, gradient clipping,
model selection on the validation split, checkpoints and resume, DDP, progress bars, and the
batched evaluation over every segment.

A plugin implements:

- ``build_model()`` -> ``nn.Module`` (frozen backbones included; set ``requires_grad=False``
  on what must not learn);
- ``loss(model, batch)`` -> ``(loss tensor, {name: float})`` for a training batch;
- ``scores(model, batch)`` -> ``{"score": P(fake) (B,), "score_v": ..., "score_a": ...}``;
- optionally ``configure_optimizers(model, steps_per_epoch)`` (default: Adam over the
  trainable parameters at ``config.lr``, no schedule).

A batch is a dict of tensors on the run's device: ``video`` uint8 (B, T, 3, H, W) and/or
``audio`` float32 (B, S) (as the InputSpec asks), ``label``, ``label_v``, ``label_a`` int64 (B,)
and ``video_index`` int64 (B,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from avbench.detector import (
    Detector,
    DetectorConfig,
    FitInfo,
    RunContext,
    SegmentBatch,
    VideoSetLike,
)


@dataclass
class TorchConfig(DetectorConfig):
    """Engine settings every torch detector has (``--set epochs=3`` etc.)."""

    epochs: int = 15
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 1e-4
    grad_accum: int = 1
    clip_grad: float | None = None
    #: model selection: ``best`` = the epoch with the best validation AUC, ``last`` = the last.
    select: Literal["best", "last"] = "best"
    #: ``auto`` = bf16 autocast on CUDA, fp32 on CPU.
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    #: DataLoader workers; -1 = choose from the CPU count.
    num_workers: int = -1
    #: ``protocol`` = what the protocol says (class-balanced for the built-in ones).
    balance: Literal["protocol", "video", "none"] = "protocol"
    #: training segments per epoch; 0 = one per training video.
    epoch_size: int = 0
    #: validation segments per video (a fixed, seeded choice; 0 = every segment). One per
    #: video keeps per-epoch validation cheaper than the epoch itself on FakeAVCeleb.
    val_segments: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch sizes and grad_accum must be >= 1")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")


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

    # -- provided --------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = self.build_model()
        return self._model

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable, "frozen": total - trainable}

    def fit(self, train: VideoSetLike, val: VideoSetLike, ctx: RunContext) -> FitInfo:
        from avbench.engine.train import fit_torch

        return fit_torch(self, train, val, ctx)

    def evaluate(self, data: VideoSetLike, ctx: RunContext) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from avbench.engine.evaluate import evaluate_torch

        return evaluate_torch(self, data, ctx)

    def predict(self, batch: SegmentBatch, ctx: RunContext) -> dict[str, np.ndarray]:
        from avbench.engine.evaluate import batch_to_tensors

        model = self.model.to(ctx.device).eval()
        with torch.inference_mode():
            out = self.scores(model, batch_to_tensors(batch, ctx.device))
        return {k: v.detach().float().cpu().numpy() for k, v in out.items()}

    def state_dict(self) -> dict[str, Any]:
        """Only what learns (prompts, heads): frozen backbones are rebuilt, not saved."""
        trainable = set(self.trainable_names())
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items() if k in trainable}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        trainable = set(self.trainable_names())
        unknown = set(state) - trainable
        missing = trainable - set(state)
        if unknown or missing:
            raise ValueError(
                f"state does not fit {type(self).__name__}: unknown {sorted(unknown)[:5]}, "
                f"missing {sorted(missing)[:5]}"
            )
        self.model.load_state_dict(state, strict=False)

    def describe(self) -> dict[str, Any]:
        return {"parameters": self.parameter_counts()}
