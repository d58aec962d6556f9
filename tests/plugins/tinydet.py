"""A tiny torch detector for the engine's tests (loaded with --plugins-dir or inline).

Features per frame: mouth-region motion energy, mouth-region brightness and audio RMS;
a small MLP on top. ``step_sleep`` slows each step so a test can kill a run mid-epoch;
``nan_after`` makes the loss NaN after that many steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avbench import hookimpl
from avbench.detector import InputSpec
from avbench.torch_detector import TorchConfig, TorchDetector


@dataclass
class TinyConfig(TorchConfig):
    epochs: int = 3
    batch_size: int = 8
    lr: float = 3e-3
    size: int = 32
    hidden: int = 16
    step_sleep: float = 0.0
    nan_after: int = 0


class TinyModel(nn.Module):
    def __init__(self, frames: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * frames, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, video, audio):
        return self.net(frame_features(video, audio))


def frame_features(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """(B, 3 * T): per frame, mouth-region motion energy and brightness, and audio RMS."""
    b, t = video.shape[:2]
    grey = video.float().mean(dim=2) / 255.0
    h, w = grey.shape[-2:]
    mouth = grey[:, :, int(0.6 * h): int(0.95 * h), int(0.25 * w): int(0.75 * w)]
    level = mouth.mean(dim=(2, 3))
    motion = (mouth[:, 1:] - mouth[:, :-1]).abs().mean(dim=(2, 3))
    motion = torch.cat([motion[:, :1], motion], dim=1)
    rms = audio.view(b, t, -1).pow(2).mean(dim=2).sqrt()
    return torch.cat([10 * motion, level, 10 * rms], dim=1)


class TinyDetector(TorchDetector):
    Config = TinyConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.steps = 0

    def input_spec(self):
        return InputSpec(frames=16, size=self.config.size)

    def build_model(self):
        return TinyModel(16, self.config.hidden)

    def loss(self, model, batch):
        self.steps += 1
        if self.config.step_sleep:
            time.sleep(self.config.step_sleep)
        logits = model(batch["video"], batch["audio"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        if self.config.nan_after and self.steps > self.config.nan_after:
            loss = loss * float("nan")
        return loss, {"ce": float(loss.detach())}

    def scores(self, model, batch):
        return {"score": model(batch["video"], batch["audio"]).float().softmax(-1)[:, 1]}


@hookimpl
def avbench_register_detectors(register):
    register("tinydet", TinyDetector, description="engine test detector")
