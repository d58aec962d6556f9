"""``AVPromptDetector``: the paper's method on avbench's ``TorchDetector`` contract.

The plugin supplies the model (:mod:`avbench_avprompt.model`), the loss (Eq. 16) and the
optimiser/schedule; avbench's engine runs the loop (one random segment of every training
video per epoch, checkpoints, evaluation over every segment). Every registered
variant is this class with other config defaults (see :mod:`avbench_avprompt.plugin`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avbench.detector import InputSpec
from avbench.torch_detector import TorchDetector
from avbench_avprompt.backbones import build_backbones
from avbench_avprompt.config import FPS, SAMPLE_RATE, AVPromptConfig
from avbench_avprompt.losses import cmfm_loss, segment_cmfm_loss
from avbench_avprompt.model import AVPromptModel, AVPromptOutput


def p_fake(logits: Tensor) -> Tensor:
    """Softmax probability of the fake class (index 1)."""
    return logits.float().softmax(dim=-1)[:, 1]


class AVPromptDetector(TorchDetector):
    """Multi-task audio-visual prompt learning (Miao et al., AAAI 2025).

    Scores: ``score`` is the fusion head's P(fake) (for a single-branch variant, its one head's);
    ``score_v`` and ``score_a`` are the visual and audio heads' P(fake), trained on ``label_v``
    and ``label_a``, whenever those heads exist.
    """

    Config: ClassVar[type] = AVPromptConfig
    scheduler_interval: ClassVar[str] = "epoch"

    def __init__(self, config: AVPromptConfig | None = None) -> None:
        super().__init__(config)
        self.config: AVPromptConfig
        self._provenance: dict[str, Any] | None = None

    # -- what it reads ---------------------------------------------------------------------
    def input_spec(self) -> InputSpec:
        c = self.config
        modalities = tuple(
            m for m, on in (("video", c.visual_branch), ("audio", c.audio_branch)) if on
        )
        return InputSpec(
            frames=c.frames,
            size=c.preset.image_size,
            fps=FPS,
            sample_rate=SAMPLE_RATE,
            modalities=modalities,
        )

    # -- the model ---------------------------------------------------------------------------
    def build_model(self) -> AVPromptModel:
        towers = build_backbones(self.config)
        self._provenance = towers.provenance
        return AVPromptModel(self.config, towers.visual, towers.audio)

    def frozen_modules(self) -> tuple[str, ...]:
        """The CLIP and Whisper towers: rebuilt from their weights, never saved (the saved
        state is the prompts, the alignment convolutions and the heads)."""
        towers = {id(m) for m in self.model.backbones().values()}
        return tuple(n for n, m in self.model.named_modules(remove_duplicate=False)
                     if n and id(m) in towers)

    def _forward(self, model: nn.Module, batch: dict[str, Tensor]) -> AVPromptOutput:
        return model(video=batch.get("video"), audio=batch.get("audio"))

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """L = L_v + L_a + L_f + L_CMFM (Eq. 16), each term present only where its part is.

        L_v is cross-entropy on ``label_v``, L_a on ``label_a``, L_f on ``label``; L_CMFM uses
        ``label`` (a segment is fake when either stream is).
        """
        c = self.config
        out = self._forward(model, batch)
        terms: dict[str, Tensor] = {}
        if out.logits_v is not None:
            terms["loss_v"] = F.cross_entropy(out.logits_v.float(), batch["label_v"])
        if out.logits_a is not None:
            terms["loss_a"] = F.cross_entropy(out.logits_a.float(), batch["label_a"])
        if out.logits_f is not None:
            terms["loss_f"] = F.cross_entropy(out.logits_f.float(), batch["label"])
        if c.cmfm != "off":
            assert out.f_v_aligned is not None and out.f_a_aligned is not None
            matching = cmfm_loss if c.cmfm == "frame" else segment_cmfm_loss
            terms["loss_cmfm"] = matching(
                out.f_v_aligned, out.f_a_aligned, batch["label"], c.alpha, c.beta, c.gamma
            )
        total = torch.stack(list(terms.values())).sum()
        return total, {name: float(value.detach()) for name, value in terms.items()}

    def scores(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = self._forward(model, batch)
        scores: dict[str, Tensor] = {}
        if out.logits_v is not None:
            scores["score_v"] = p_fake(out.logits_v)
        if out.logits_a is not None:
            scores["score_a"] = p_fake(out.logits_a)
        if out.logits_f is not None:
            scores["score"] = p_fake(out.logits_f)
        else:  # a single-branch variant: its one head decides
            scores["score"] = scores["score_v"] if "score_v" in scores else scores["score_a"]
        return scores

    def frame_features(self, batch: Any, ctx: Any = None) -> tuple[Any, Any]:
        """The aligned per-frame features f'_v and f'_a (Eqs. 12-13) of each segment, the
        pair the frame-level CMFM loss (Eq. 14) compares: two float32 arrays (B, T, D_f).

        ``batch`` is a :class:`avbench.detector.SegmentBatch`, as ``predict`` takes it;
        ``ctx`` gives the device (default: the CPU). A variant without both branches has
        no aligned features: ValueError.
        """
        from avbench.engine.device import autocast_for, batch_to_tensors

        if self.model.conv_v is None or self.model.conv_a is None:
            raise ValueError(f"{self.name} has no audio-visual frame features: it needs both "
                             f"branches (visual_branch and audio_branch)")
        device = getattr(ctx, "device", None) or "cpu"
        model = self.model.to(device).eval()
        with torch.inference_mode(), autocast_for(self.config.amp, device):
            out = self._forward(model, batch_to_tensors(batch, device))
        assert out.f_v_aligned is not None and out.f_a_aligned is not None
        return (out.f_v_aligned.float().cpu().numpy(), out.f_a_aligned.float().cpu().numpy())

    def configure_optimizers(self, model: nn.Module, steps_per_epoch: int) -> Any:
        """Adam at ``lr`` (1e-4), x ``lr_decay`` (0.1) from epoch ``lr_decay_epoch`` (12) on.

        The engine steps the scheduler once per epoch, after it; MultiStepLR counts those
        steps, so the first decayed epoch (counting from 1) is milestone + 1.
        """
        c = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=c.lr)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[c.lr_decay_epoch - 1], gamma=c.lr_decay
        )
        return optimizer, scheduler

    # -- avbench bench ------------------------------------------------------------------------
    #: timing needs no pretrained weights: the bench builds the towers at random.
    bench_settings: ClassVar[dict[str, Any]] = {"clip_weights": "random", "whisper_weights": "random"}

    def bench_floors(self, model: nn.Module) -> list[Any]:
        """The frozen towers alone, and two references (see :mod:`avbench_avprompt.bench`)."""
        from avbench_avprompt.bench import tower_floors

        return tower_floors(model)

    # -- what a run records -------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        """Which backbones and weights the model uses: resolved (file, SHA-256) once built."""
        if self._provenance is not None:
            return self._provenance
        return build_backbones(self.config, weights=False).provenance

    def describe(self) -> dict[str, Any]:
        """Parameter counts, backbones and weights, and the variant's switches.

        Counting does not need the weights: before the model is built, the architecture is
        built on the ``meta`` device (no memory, nothing read or downloaded), and the
        provenance names the weights asked for; once built, it names the files used.
        """
        c = self.config
        if self._model is not None:
            model, provenance = self._model, self.provenance()
        else:
            towers = build_backbones(c, weights=False)
            model = AVPromptModel(c, towers.visual, towers.audio)
            provenance = towers.provenance
        return {
            "method": "AVPrompt (Miao et al., AAAI 2025)",
            "parameters": count_parameters(model),
            "provenance": provenance,
            "weights_loaded": self._model is not None,
            "variant": {
                "audio_branch": c.audio_branch,
                "visual_branch": c.visual_branch,
                "loss_v": c.loss_v,
                "loss_a": c.loss_a,
                "cmfm": c.cmfm,
                "vpt": c.vpt,
            },
        }


def count_parameters(model: AVPromptModel) -> dict[str, Any]:
    """Total, trainable and frozen counts, and the trainable ones by part."""
    from avbench.torch_detector import parameter_counts

    by_part: dict[str, int] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            depth = 2 if name.startswith(("visual.", "audio.")) else 1
            part = ".".join(name.split(".")[:depth])  # e.g. visual.prompts, audio.fc, head_f
            by_part[part] = by_part.get(part, 0) + p.numel()
    return {**parameter_counts(model), "trainable_by_part": by_part}
