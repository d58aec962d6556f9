"""avprompt's floor for ``avbench bench`` (:meth:`AVPromptDetector.bench_floors`).

The floor is the frozen towers alone. For training, one learnable tensor is added to CLIP's
embedded patches (after ``ln_pre``, the input of its first layer) and one to Whisper's token
embeddings (after its conv stem), with a heads-free loss (mean square of the frame features and of the audio tokens):
backward must traverse every frozen layer to reach those tensors, as it must to reach
avprompt's first-layer prompts, so no prompt method can train faster than this. For
evaluation, the towers' bare forward: open_clip's own ``VisionTransformer.forward`` on the
frames, Whisper's stem and blocks on the segment's mel frames.

The towers are avprompt's own modules, so the floor runs their attention through the same
path as avprompt (with ``fast``, the fused attention of :mod:`avbench_avprompt._fast`) and
the ratio measures the prompt method and nothing else. Two references come with it:

* the floor through open_clip's stock attention (when ``fast`` installed the fused one);
* in FLOPs only, the floor whose last CLIP layer computes the class token alone: avprompt's
  last layer computes its output at position 1 alone (with ``fast``), and the same saving
  is open to the towers, so avprompt's FLOPs against this reference are the method's own
  cost ratio.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from avbench.torch_detector import BenchFloor
from avbench_avprompt._fast import (
    block_at_one_position,
    prunable,
    stock_attention,
    uses_fused_attention,
)
from avbench_avprompt.model import AVPromptModel


class TowersFloor(nn.Module):
    """avprompt's frozen towers alone (those its config has), each with one learnable tensor
    added to its embedded input: CLIP's after ``ln_pre``, Whisper's after its conv stem."""

    def __init__(self, model: AVPromptModel) -> None:
        super().__init__()
        vis, aud = model.visual, model.audio
        self.tower = vis.tower if vis is not None else None
        self.encoder = aud.encoder if aud is not None else None
        # avprompt's own normalisation and embeddings (methods: its prompts are no part of
        # the floor's modules)
        self._images = model.images
        if vis is not None:
            self._embed_v = vis.embed
            self.delta_v = nn.Parameter(torch.zeros_like(vis.tower.positional_embedding))
        if aud is not None:
            self._embed_a = aud.embed
            dev = aud.encoder.conv1.weight.device
            self.delta_a = nn.Parameter(torch.zeros(aud.n_tokens, aud.width, device=dev))

    def run_visual(self, x: Tensor, prune: bool = False) -> Tensor:
        """CLIP's blocks on embedded tokens, then ``ln_post`` of the class token; with
        ``prune``, the last block computes the class token alone."""
        blocks = self.tower.transformer.resblocks
        for i, block in enumerate(blocks):
            if prune and i == len(blocks) - 1:
                return self.tower.ln_post(block_at_one_position(block, x, 0))
            x = block(x)
        return self.tower.ln_post(x[:, 0])

    def run_audio(self, x: Tensor) -> Tensor:
        for block in self.encoder.blocks:
            x = block(x)
        return self.encoder.ln_post(x)

    def loss(self, batch: dict[str, Tensor], prune: bool = False) -> Tensor:
        """The training floor: mean squares of the features reached from the learnable inputs."""
        terms = []
        if self.tower is not None:
            x = self._embed_v(self._images(batch["video"]))
            f_v = self.run_visual(x + self.delta_v.to(x.dtype), prune)
            terms.append(f_v.float().square().mean())
        if self.encoder is not None:
            x = self._embed_a(batch["audio"])
            terms.append(self.run_audio(x + self.delta_a.to(x.dtype)).float().square().mean())
        return torch.stack(terms).sum()

    def bare(self, batch: dict[str, Tensor], prune: bool = False) -> tuple[Tensor, ...]:
        """The evaluation floor: the towers' plain forward (open_clip's own for CLIP)."""
        out = []
        if self.tower is not None:
            images = self._images(batch["video"])
            if prune:  # open_clip's forward, the last layer at the class token alone
                x = self._embed_v(images)
                out.append(self.run_visual(x, prune=True) @ self.tower.proj)
            else:
                out.append(self.tower(images))
        if self.encoder is not None:
            out.append(self.run_audio(self._embed_a(batch["audio"])))
        return tuple(out)


def tower_floors(model: AVPromptModel) -> list[BenchFloor]:
    """The floor (the frozen towers) and its references, for ``avbench bench``."""
    floor = TowersFloor(model)
    out = [BenchFloor("frozen towers", floor, floor.loss, floor.bare)]
    if uses_fused_attention(floor):

        def stock_loss(batch: dict[str, Tensor]) -> Tensor:
            with stock_attention(floor):
                return floor.loss(batch)

        def stock_bare(batch: dict[str, Tensor]) -> Any:
            with stock_attention(floor):
                return floor.bare(batch)

        out.append(BenchFloor("frozen towers, open_clip's stock attention", floor, stock_loss,
                              stock_bare))
    if floor.tower is not None and prunable(floor.tower.transformer.resblocks[-1]):
        out.append(BenchFloor(
            "frozen towers, the last CLIP layer at the class token alone", floor,
            lambda batch: floor.loss(batch, prune=True),
            lambda batch: floor.bare(batch, prune=True), timed=False))
    return out
