"""``avbench plugin new NAME``: a working third-party detector plugin package.

The package holds a pyproject.toml with the entry point, a small torch detector that learns
from mouth-region motion and audio energy, and a test that trains and evaluates it on the
synthetic benchmark through the real CLI.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from avbench.errors import AvbenchError

_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}$")

PYPROJECT = '''[build-system]
requires = ["hatchling>=1.21"]
build-backend = "hatchling.build"

[project]
name = "avbench-{name}"
version = "0.1.0"
description = "{name}: an audio-visual deepfake detector for avbench"
requires-python = ">=3.10"
dependencies = ["avbench>=0.1", "torch"]

[project.optional-dependencies]
test = ["pytest"]

# avbench finds the plugin through this entry point (group "avbench").
[project.entry-points.avbench]
{name} = "{pkg}.plugin"

[tool.hatch.build.targets.wheel]
packages = ["{pkg}"]
'''

PLUGIN = '''"""Registers the {name} detector with avbench.

Keep this module light: avbench imports it to list plugins, so the detector is named by an
import string and only imported when a run needs it.
"""

from avbench import hookimpl


@hookimpl
def avbench_register_detectors(register):
    register(
        "{name}",
        "{pkg}.detector:{cls}",
        description="Mouth-motion and audio-energy features, a small MLP (edit me)",
        modality="AV",
    )
'''

DETECTOR = '''"""The {name} detector: the engine trains it; this file only defines model, loss and scores.

Batches arrive as tensors: ``video`` uint8 (B, T, 3, H, W), ``audio`` float32 (B, S) at
16 kHz (640 samples per frame), ``label``/``label_v``/``label_a`` int64 (B,), 1 = fake.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avbench.detector import InputSpec
from avbench.torch_detector import TorchConfig, TorchDetector


@dataclass
class {cls}Config(TorchConfig):
    """Defaults; override with ``avbench run ... --set hidden=64``."""

    hidden: int = 32
    size: int = 64
    epochs: int = 3
    batch_size: int = 8
    lr: float = 1e-3


class {cls}Model(nn.Module):
    def __init__(self, frames: int, hidden: int) -> None:
        super().__init__()
        # per frame: mouth-region motion energy and audio RMS -> 2 features per frame
        self.net = nn.Sequential(nn.Linear(2 * frames, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b, t = video.shape[:2]
        grey = video.float().mean(dim=2) / 255.0  # (B, T, H, W)
        h, w = grey.shape[-2:]
        mouth = grey[:, :, int(0.6 * h) : int(0.9 * h), int(0.25 * w) : int(0.75 * w)]
        motion = (mouth[:, 1:] - mouth[:, :-1]).abs().mean(dim=(2, 3))
        motion = torch.cat([motion[:, :1], motion], dim=1)  # (B, T)
        rms = audio.view(b, t, -1).pow(2).mean(dim=2).sqrt()  # (B, T)
        feats = torch.cat([motion / (motion.std(dim=1, keepdim=True) + 1e-6),
                           rms / (rms.std(dim=1, keepdim=True) + 1e-6)], dim=1)
        return self.net(feats)


class {cls}(TorchDetector):
    Config = {cls}Config

    def input_spec(self) -> InputSpec:
        return InputSpec(frames=16, size=self.config.size)

    def build_model(self) -> nn.Module:
        return {cls}Model(self.input_spec().frames, self.config.hidden)

    def loss(self, model, batch):
        logits = model(batch["video"], batch["audio"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        return loss, {{"ce": loss.item()}}

    def scores(self, model, batch):
        logits = model(batch["video"], batch["audio"])
        return {{"score": logits.float().softmax(dim=-1)[:, 1]}}
'''

TEST = '''"""Trains and evaluates {name} on avbench's synthetic benchmark through the CLI."""

import json

from avbench.testing import run_cli, synthetic_benchmark  # noqa: F401 (pytest fixture)


def test_{pkg}_runs_end_to_end(synthetic_benchmark, tmp_path):
    result = run_cli([
        "run", "--detector", "{name}", "--protocol", "intra",
        "--data", f"fakeavceleb={{synthetic_benchmark}}", "--out", str(tmp_path / "results"),
        "--set", "epochs=1", "--quiet",
    ])
    assert result.exit_code == 0, result.stderr
    runs = list((tmp_path / "results").rglob("run.json"))
    assert len(runs) == 1
    info = json.loads(runs[0].read_text())
    assert info["status"] == "complete"
    assert info["detector"]["name"] == "{name}"
'''

README = '''# avbench-{name}

A detector plugin for [avbench](https://pypi.org/project/avbench/).

    pip install -e .
    avbench plugins                     # lists {name}
    avbench run --detector {name} --protocol intra --data fakeavceleb=synthetic
    pytest                              # trains on the synthetic benchmark

Edit `{pkg}/detector.py`: the engine gives you training (segment sampling, AMP,
checkpoints, resume, DDP) and evaluation; you write the model, the loss and the scores.
'''


def new_plugin(name: str, directory: Path | None = None, *,
               taken: Collection[str] = ()) -> Path:
    """Write a plugin package ``avbench-NAME`` whose detector is ``name``. ``taken`` holds the
    detector names registered now: a name among them, or one whose distribution is installed,
    is refused (installing the package would shadow or replace that plugin)."""
    from importlib.metadata import PackageNotFoundError, distribution

    if not _NAME.match(name):
        raise AvbenchError(
            f"plugin name {name!r}: use 2-41 lowercase letters, digits or hyphens, starting "
            "with a letter"
        )
    if name in taken:
        raise AvbenchError(f"plugin name {name!r} is a registered detector already; choose "
                           "another name")
    try:
        distribution(f"avbench-{name}")
    except PackageNotFoundError:
        pass
    else:
        raise AvbenchError(f"plugin name {name!r}: the package avbench-{name} is installed "
                           "already (installing the new one would replace it); choose another "
                           "name")
    pkg = "avbench_" + name.replace("-", "_")
    cls = "".join(p.capitalize() for p in name.split("-")) + "Detector"
    root = Path(directory) if directory is not None else Path(f"avbench-{name}")
    if root.exists() and any(root.iterdir()):
        raise AvbenchError(f"{root}: folder exists and is not empty")
    files = {
        "pyproject.toml": PYPROJECT,
        f"{pkg}/__init__.py": '"""{name}: an avbench detector plugin."""\n',
        f"{pkg}/plugin.py": PLUGIN,
        f"{pkg}/detector.py": DETECTOR,
        f"tests/test_{pkg}.py": TEST,
        "README.md": README,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(name=name, pkg=pkg, cls=cls), encoding="utf-8")
    return root
