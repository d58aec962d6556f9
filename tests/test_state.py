"""What a TorchDetector saves: the model's whole state (BatchNorm statistics included) minus
its frozen modules; restoring it (best-validation snapshot, --resume) gives the scores of the
model that was trained in memory; a corrupt checkpoint is named."""

from __future__ import annotations

import io
import json
import shutil
import types
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avbench import hookimpl
from avbench.detector import InputSpec
from avbench.engine import train as train_mod
from avbench.errors import PluginError
from avbench.testing import run_cli, temporary_plugin
from avbench.torch_detector import TorchConfig, TorchDetector

FRAMES = 16
FEATURES = 3 * FRAMES


def _load_tinydet() -> types.ModuleType:
    """The engine tests' detector module (a --plugins-dir file, not a package): its features."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "_tinydet_for_state", Path(__file__).parent / "plugins" / "tinydet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_tinydet = _load_tinydet()


# -- a small BatchNorm detector with a frozen stem -------------------------------------------
@dataclass
class BNConfig(TorchConfig):
    epochs: int = 3
    batch_size: int = 8
    lr: float = 3e-3
    size: int = 32
    hidden: int = 16
    num_workers: int = 0
    #: keep the frozen stem in eval mode (False lets its BatchNorm statistics drift).
    stem_eval: bool = True


class BNModel(nn.Module):
    def __init__(self, hidden: int, stem_eval: bool) -> None:
        super().__init__()
        # a frozen "backbone": fixed weights from its own seed, so every build is the same
        g = torch.Generator().manual_seed(1234)
        self.stem = nn.Sequential(nn.Linear(FEATURES, FEATURES), nn.BatchNorm1d(FEATURES))
        with torch.no_grad():
            self.stem[0].weight.copy_(torch.eye(FEATURES) + 0.05 * torch.randn(
                FEATURES, FEATURES, generator=g))
            self.stem[0].bias.zero_()
        self.stem.requires_grad_(False)
        self.stem_eval = stem_eval
        # what learns: BatchNorm with a small momentum, so lost statistics stay visible
        self.net = nn.Sequential(nn.Linear(FEATURES, hidden), nn.BatchNorm1d(hidden, momentum=0.05),
                                 nn.ReLU(), nn.Linear(hidden, 2))

    def train(self, mode: bool = True) -> BNModel:
        super().train(mode)
        if self.stem_eval:
            self.stem.eval()
        return self

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.net(self.stem(_tinydet.frame_features(video, audio)))


class BNDetector(TorchDetector):
    Config = BNConfig

    def input_spec(self) -> InputSpec:
        return InputSpec(frames=FRAMES, size=self.config.size)

    def build_model(self) -> BNModel:
        return BNModel(self.config.hidden, self.config.stem_eval)

    def loss(self, model, batch):
        loss = F.cross_entropy(model(batch["video"], batch["audio"]).float(), batch["label"])
        return loss, {}

    def scores(self, model, batch):
        return {"score": model(batch["video"], batch["audio"]).float().softmax(-1)[:, 1]}


def _plugin() -> types.ModuleType:
    mod = types.ModuleType("bn_state_plugin")

    @hookimpl
    def avbench_register_detectors(register):
        register("bndet", BNDetector, description="BatchNorm state test detector")

    mod.avbench_register_detectors = avbench_register_detectors
    return mod


SAVED = ["net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias", "net.1.running_mean",
         "net.1.running_var", "net.1.num_batches_tracked", "net.3.weight", "net.3.bias"]


# -- the state itself -------------------------------------------------------------------------
def test_state_is_the_whole_model_but_its_frozen_modules():
    det = BNDetector()
    assert det.frozen_modules() == ("stem",)
    assert det.saved_keys() == SAVED
    state = det.state_dict()
    assert list(state) == SAVED
    assert all(v.device.type == "cpu" for v in state.values())
    # the old rule (requires_grad only) kept 6 of these 9 keys: no BatchNorm statistics
    assert set(SAVED) - set(det.trainable_names()) == {
        "net.1.running_mean", "net.1.running_var", "net.1.num_batches_tracked"}


def test_loaded_state_restores_the_batchnorm_statistics():
    det = BNDetector()
    det.model.train()
    with torch.no_grad():
        det.model.net(torch.randn(32, FEATURES) * 3 + 1)  # moves the running statistics
    other = BNDetector()
    other.load_state_dict(det.state_dict())
    x = torch.randn(5, FEATURES)
    det.model.eval()
    other.model.eval()
    torch.testing.assert_close(other.model.net(x), det.model.net(x), rtol=0, atol=0)
    assert int(other.model.net[1].num_batches_tracked) == 1


def test_load_is_strict_about_saved_keys_and_lets_frozen_ones_be_absent():
    det = BNDetector()
    state = det.state_dict()
    missing = {k: v for k, v in state.items() if k != "net.1.running_var"}
    with pytest.raises(ValueError, match=r"missing key 'net\.1\.running_var'"):
        det.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected key 'net\.9\.weight'"):
        det.load_state_dict({**state, "net.9.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"'net\.0\.bias' has shape \(3,\)"):
        det.load_state_dict({**state, "net.0.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"'net\.0\.bias' is a list"):
        det.load_state_dict({**state, "net.0.bias": [0.0]})
    # frozen keys are rebuilt, so they may be absent; present, they load like the rest
    full = {k: v.clone() for k, v in det.model.state_dict().items()}
    full["stem.1.running_mean"] += 1.0
    det.load_state_dict(full)
    assert float(det.model.stem[1].running_mean[0]) == pytest.approx(1.0)


def test_frozen_modules_can_be_declared_and_are_checked():
    class Declared(BNDetector):
        def frozen_modules(self):
            return ("stem.0",)  # the stem's BatchNorm is saved

    det = Declared()
    assert "stem.1.running_mean" in det.state_dict() and "stem.0.weight" not in det.state_dict()

    class Nothing(BNDetector):
        def frozen_modules(self):
            return ()

    assert set(Nothing().state_dict()) == set(Nothing().model.state_dict())

    class Typo(BNDetector):
        def frozen_modules(self):
            return ("stme",)

    with pytest.raises(PluginError, match=r"names 'stme', which is not a submodule"):
        Typo().state_dict()

    class Learns(BNDetector):
        def frozen_modules(self):
            return ("net",)

    with pytest.raises(PluginError, match=r"parameter 'net\.0\.weight' has requires_grad=True"):
        Learns().state_dict()


def test_avprompt_saves_its_prompts_and_heads_only():
    testkit = pytest.importorskip("avbench_avprompt.plugin")
    from avbench.registry import DetectorRegister

    reg = DetectorRegister()
    reg.current_plugin = "avprompt"
    testkit.avbench_register_detectors(reg)
    small = {"backbone": "tiny", "prompt_dim": 16, "fusion_dim": 32, "head_hidden": 16,
             "frames": 4}
    for name, towers in (("avprompt", ("visual.tower", "audio.encoder")),
                         ("avprompt-audio-only", ("audio.encoder",)),
                         ("avprompt-visual-only", ("visual.tower",))):
        det = reg.items[name].create(small)
        assert det.frozen_modules() == towers
        state = det.state_dict()
        assert not any(k.startswith(tuple(t + "." for t in towers)) for k in state)
        # nothing but what learns: the saved size is the trainable parameter count
        assert sorted(state) == sorted(det.trainable_names()), name
        assert sum(v.numel() for v in state.values()) == det.parameter_counts()["trainable"]


# -- through the engine ----------------------------------------------------------------------
def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--detector", "bndet", "--protocol", "intra", "--data", f"fakeavceleb={root}",
            "--out", str(out), "--quiet", *extra]


def _only_run(out: Path) -> Path:
    runs = sorted(out.rglob("run.json"))
    assert len(runs) == 1, runs
    return runs[0].parent


def _force_best(monkeypatch: pytest.MonkeyPatch, aucs: list[float]) -> None:
    """Validation runs as always, but its AUC at epoch e is ``aucs[e]`` (a known best epoch)."""
    real = train_mod._val_metrics

    def val_metrics(det, val, ctx, segments):
        m = real(det, val, ctx, segments)
        epoch = len(ctx.log_path.read_text().splitlines()) if ctx.log_path.exists() else 0
        return {**m, "auc": aucs[epoch]}  # epochs.jsonl holds a line per epoch done

    monkeypatch.setattr(train_mod, "_val_metrics", val_metrics)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Stop the run (as Ctrl-C would) as epoch ``epoch`` (0-based) starts."""
    real = train_mod.epoch_draws

    def draws(labels, n, seed, e, balance):
        if e == epoch:
            raise KeyboardInterrupt
        return real(labels, n, seed, e, balance)

    monkeypatch.setattr(train_mod, "epoch_draws", draws)


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "state.pt", weights_only=True)


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b) == SAVED
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_best_validation_restore_scores_like_the_model_in_memory(synthetic_root, tmp_path,
                                                                 monkeypatch):
    _force_best(monkeypatch, [0.9, 0.6, 0.3])  # epoch 1 is the best of 3
    with temporary_plugin(_plugin(), "bn-state"):
        best = run_cli(_args(synthetic_root, tmp_path / "best", "--set", "epochs=3"))
        assert best.exit_code == 0, best.output
        # the model in memory after epoch 1 of the same training
        mem = run_cli(_args(synthetic_root, tmp_path / "mem", "--set", "epochs=1",
                            "--set", "select=last"))
        assert mem.exit_code == 0, mem.output
    best_dir, mem_dir = _only_run(tmp_path / "best"), _only_run(tmp_path / "mem")
    info = json.loads((best_dir / "run.json").read_text())
    assert info["checkpoint"]["checkpoint"] == "best-val" and info["checkpoint"]["epoch"] == 1
    pd.testing.assert_frame_equal(pd.read_csv(best_dir / "scores.csv"),
                                  pd.read_csv(mem_dir / "scores.csv"))
    _assert_same_state(_state(best_dir), _state(mem_dir))
    # the checkpoint holds the statistics too (of the last epoch, and of the best one)
    ck = torch.load(best_dir / "checkpoints" / "last.pt", weights_only=True)
    assert list(ck["model"]) == SAVED and list(ck["best_state"]) == SAVED
    assert int(ck["model"]["net.1.num_batches_tracked"]) == 3 * int(
        ck["best_state"]["net.1.num_batches_tracked"])
    assert sorted(p.name for p in (best_dir / "checkpoints").iterdir()) == ["last.pt"]


def test_resume_scores_like_an_uninterrupted_run(synthetic_root, tmp_path, monkeypatch):
    _force_best(monkeypatch, [0.5, 0.9, 0.3])  # epoch 2 is the best of 3
    with temporary_plugin(_plugin(), "bn-state"):
        ref = run_cli(_args(synthetic_root, tmp_path / "ref"))
        assert ref.exit_code == 0, ref.output
        with monkeypatch.context() as m:
            _interrupt_at(m, 2)
            cut = run_cli(_args(synthetic_root, tmp_path / "cut"))
        assert cut.exit_code == 130, cut.output
        run_dir = _only_run(tmp_path / "cut")
        assert json.loads((run_dir / "run.json").read_text())["status"] == "incomplete"
        again = run_cli(_args(synthetic_root, tmp_path / "cut", "--resume"))
        assert again.exit_code == 0, again.output
    assert _only_run(tmp_path / "cut") == run_dir
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["resumed"] is True
    assert info["checkpoint"]["epoch"] == 2
    ref_dir = _only_run(tmp_path / "ref")
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "scores.csv"),
                                  pd.read_csv(ref_dir / "scores.csv"))
    _assert_same_state(_state(run_dir), _state(ref_dir))


def test_a_frozen_module_that_changes_stops_the_run(synthetic_root, tmp_path):
    with temporary_plugin(_plugin(), "bn-state"):
        r = run_cli(_args(synthetic_root, tmp_path, "--set", "epochs=1",
                          "--set", "stem_eval=false"))
    assert r.exit_code == 2, r.output
    line = r.stderr.strip().splitlines()[-1]
    assert "buffer 'stem.1.running_mean' of a frozen module changed in epoch 1" in line, line


# -- corrupt checkpoints ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def interrupted(synthetic_root, tmp_path_factory):
    """An incomplete run stopped as epoch 2 of 2 started (checkpoint of epoch 1 in place)."""
    out = tmp_path_factory.mktemp("interrupted")
    mp = pytest.MonkeyPatch()
    try:
        _interrupt_at(mp, 1)
        with temporary_plugin(_plugin(), "bn-state"):
            r = run_cli(_args(synthetic_root, out, "--set", "epochs=2"))
    finally:
        mp.undo()
    assert r.exit_code == 130, r.output
    return out


def _rewrite(path: Path, edit) -> None:
    ck = torch.load(path, weights_only=True)
    edit(ck)
    buf = io.BytesIO()
    torch.save(ck, buf)
    path.write_bytes(buf.getvalue())


def _drop(d: dict, key: str) -> None:
    del d[key]


CORRUPTIONS = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                  "is truncated or not a torch checkpoint"),
    "garbage": (lambda p: p.write_bytes(b"\x00garbage" * 100), "is truncated or not a torch"),
    "empty": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "no-statistics": (lambda p: _rewrite(p, lambda ck: _drop(ck["model"], "net.1.running_mean")),
                      "model state: ValueError: state does not fit BNDetector: missing key "
                      "'net.1.running_mean'"),
    "best-snapshot": (lambda p: _rewrite(p, lambda ck: ck["best_state"].__setitem__(
        "net.1.running_var", torch.zeros(3))),
        "best-validation state: ValueError: state does not fit BNDetector: "
        "'net.1.running_var' has shape (3,)"),
    "no-optimizer": (lambda p: _rewrite(p, lambda ck: _drop(ck, "optimizer")),
                     "has no 'optimizer'"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_checkpoint_is_named_and_the_run_marked_failed(interrupted, tmp_path, kind,
                                                                 synthetic_root):
    out = tmp_path / "out"
    shutil.copytree(interrupted, out)
    run_dir = _only_run(out)
    last = run_dir / "checkpoints" / "last.pt"
    corrupt, reason = CORRUPTIONS[kind]
    corrupt(last)
    with temporary_plugin(_plugin(), "bn-state"):
        r = run_cli(_args(synthetic_root, out, "--set", "epochs=2", "--resume"))
    assert r.exit_code == 2, r.output
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: checkpoint {last}: {reason}"), line
    assert "Traceback" not in r.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["error_kind"] == "checkpoint"
    assert info["error"].startswith(f"CheckpointError: checkpoint {last}: {reason}"), info["error"]
    assert not (run_dir / "scores.csv").exists()
