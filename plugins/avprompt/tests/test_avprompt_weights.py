"""Weights: local checkpoints in each library's format, provenance, the offline error, size."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from avbench_avprompt.backbones import MissingWeightsError
from avbench_avprompt.config import PRESETS, AVPromptConfig
from avbench_avprompt.detector import AVPromptDetector
from avprompt_testkit import make_detector

from avbench.errors import ConfigError


def _tiny_clip():
    from avbench_avprompt.backbones import _clip_architecture

    torch.manual_seed(123)
    return _clip_architecture(PRESETS["tiny"])


def _tiny_whisper():
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(321)
    return Whisper(ModelDimensions(**PRESETS["tiny"].whisper_dims))


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clip_weights_load_from_an_open_clip_state_dict(tmp_path):
    clip = _tiny_clip()
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(clip.state_dict(), path)  # the format open_clip.load_checkpoint reads
    det = make_detector("avprompt-visual-only", clip_weights=str(path))
    loaded = det.model.visual.tower.state_dict()
    saved = clip.visual.state_dict()
    assert loaded.keys() == saved.keys()
    for k in saved:
        torch.testing.assert_close(loaded[k], saved[k], rtol=0, atol=0)
    prov = det.provenance()["clip"]
    assert prov["source"] == "file" and prov["file"] == path.name
    assert prov["sha256"] == _sha256(path)
    assert str(tmp_path) not in json.dumps(det.describe())  # no machine path in results


def test_whisper_weights_load_from_a_whisper_checkpoint(tmp_path):
    model = _tiny_whisper()
    path = tmp_path / "tiny.pt"
    torch.save(
        {"dims": dataclasses.asdict(model.dims), "model_state_dict": model.state_dict()}, path
    )  # the format whisper.load_model reads
    det = make_detector("avprompt-audio-only", whisper_weights=str(path))
    loaded = det.model.audio.encoder.state_dict()
    saved = model.encoder.state_dict()
    assert loaded.keys() == saved.keys()
    for k in saved:
        torch.testing.assert_close(loaded[k], saved[k], rtol=0, atol=0)
    prov = det.provenance()["whisper"]
    assert prov["source"] == "file" and prov["file"] == "tiny.pt"
    assert prov["sha256"] == _sha256(path)


def test_a_checkpoint_of_the_wrong_model_is_one_clear_error(tmp_path):
    model = _tiny_whisper()
    path = tmp_path / "whisper.pt"
    torch.save(
        {"dims": dataclasses.asdict(model.dims), "model_state_dict": model.state_dict()}, path
    )
    det = make_detector("avprompt-visual-only", clip_weights=str(path))
    with pytest.raises(MissingWeightsError) as e:
        _ = det.model
    assert "\n" not in str(e.value) and "whisper.pt" in str(e.value)

    det = AVPromptDetector(
        AVPromptConfig(visual_branch=False, cmfm="off", whisper_weights=str(path))
    )
    with pytest.raises(MissingWeightsError, match="backbone=full needs"):
        _ = det.model  # a tiny whisper is not Whisper base


def test_missing_files_and_random_weights_are_explicit(tmp_path):
    det = make_detector("avprompt", clip_weights=str(tmp_path / "nope.bin"))
    with pytest.raises(MissingWeightsError, match="no such file"):
        _ = det.model
    det = make_detector("avprompt")  # tiny: auto means random, and says so
    prov = det.provenance()
    assert prov["clip"]["weights"] == "random" and prov["whisper"]["weights"] == "random"
    assert issubclass(MissingWeightsError, ConfigError)


@pytest.mark.slow
def test_offline_without_cached_weights_is_one_clear_line(tmp_path):
    # A fresh process with empty caches: HF_HOME for open_clip, XDG_CACHE_HOME for whisper.
    script = textwrap.dedent(
        """
        import json
        from avbench.errors import ConfigError
        from avbench_avprompt.config import AVPromptConfig
        from avbench_avprompt.detector import AVPromptDetector
        out = {}
        for key, cfg in {
            "clip": AVPromptConfig(audio_branch=False, cmfm="off", clip_weights="openai"),
            "whisper": AVPromptConfig(visual_branch=False, cmfm="off", whisper_weights="base"),
        }.items():
            try:
                AVPromptDetector(cfg).model
                out[key] = None
            except ConfigError as e:
                out[key] = [type(e).__name__, str(e)]
        print(json.dumps(out))
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, setting in (("clip", "clip_weights"), ("whisper", "whisper_weights")):
        assert out[key] is not None, f"{key}: no error"
        kind, message = out[key]
        assert kind == "MissingWeightsError"
        assert "\n" not in message and "HF_HUB_OFFLINE=1" in message
        assert f"--set {setting}=PATH" in message
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in out["clip"][1]
    assert "base.pt" in out["whisper"][1]


def test_full_size_trainable_parameters_match_the_paper():
    # Counted on the architecture (meta device): no weights needed, nothing downloaded.
    det = AVPromptDetector(AVPromptConfig())
    counts = det.describe()["parameters"]
    assert abs(counts["trainable"] - 4.4e6) / 4.4e6 < 0.05  # "only 4.4M learnable parameters"
    assert counts["trainable"] == 4_471_430
    assert counts["frozen"] > 100_000_000  # ViT-B/32 image tower + Whisper-base encoder
    assert det._model is None  # describing did not build (or download) anything


@pytest.mark.slow
def test_full_size_random_build_counts_the_same():
    det = AVPromptDetector(AVPromptConfig(clip_weights="random", whisper_weights="random"))
    meta = det.describe()["parameters"]
    _ = det.model
    assert det.describe()["parameters"] == meta
    assert det.parameter_counts()["trainable"] == 4_471_430
