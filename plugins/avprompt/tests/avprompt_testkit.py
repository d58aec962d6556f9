"""Helpers shared by the avprompt tests: tiny backbones, small batches, the registered names.

Everything runs on the ``tiny`` preset (real open_clip and whisper classes at toy sizes with
random weights); nothing is downloaded (conftest.py sets HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

from typing import Any

import torch
from avbench_avprompt import plugin

from avbench.registry import DetectorRegister

#: small learnable sizes on top of the tiny towers, to keep every test fast.
SMALL = {"backbone": "tiny", "prompt_dim": 16, "fusion_dim": 32, "head_hidden": 16, "frames": 4}

#: (label_v, label_a) of successive fake segments: FVRA, RVFA, FVFA.
FAKE_KINDS = ((1, 0), (0, 1), (1, 1))


def registered() -> DetectorRegister:
    """The detectors the plugin registers, through its own hook (no entry point needed)."""
    reg = DetectorRegister()
    reg.current_plugin = "avprompt"
    plugin.avbench_register_detectors(reg)
    return reg


def make_detector(name: str = "avprompt", **overrides: Any) -> Any:
    """Create a registered detector the way avbench does: registration defaults, then --set."""
    torch.manual_seed(0)
    return registered().items[name].create({**SMALL, **overrides})


def make_batch(detector: Any, labels: tuple[int, ...] = (0, 1, 1, 0), seed: int = 0) -> dict:
    """A training batch as the engine builds it, holding what the detector's InputSpec reads."""
    spec = detector.input_spec()
    g = torch.Generator().manual_seed(seed)
    kinds = iter(FAKE_KINDS * len(labels))
    streams = [next(kinds) if y else (0, 0) for y in labels]
    b = len(labels)
    batch = {
        "label": torch.tensor(labels),
        "label_v": torch.tensor([v for v, _ in streams]),
        "label_a": torch.tensor([a for _, a in streams]),
        "video_index": torch.arange(b),
    }
    if spec.reads_video:
        batch["video"] = torch.randint(
            0, 256, (b, spec.frames, 3, spec.size, spec.size), generator=g, dtype=torch.uint8
        )
    if spec.reads_audio:
        batch["audio"] = 0.1 * torch.randn(b, spec.samples, generator=g)
    return batch


def train_step(detector: Any, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimiser step on the detector's loss (Eq. 16); returns the loss and its terms."""
    model = detector.model.train()
    optimizer, _ = detector.configure_optimizers(model, 1)
    optimizer.zero_grad()
    loss, logs = detector.loss(model, batch)
    loss.backward()
    optimizer.step()
    return loss, logs
