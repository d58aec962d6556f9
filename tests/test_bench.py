"""``avbench bench``: it runs every section, writes every figure, times any registered torch
detector (``-d``) against the floor it offers, and the core imports no plugin. Behaviour
only: no timing is asserted."""

from __future__ import annotations

import ast
import json
import os
import types
from pathlib import Path

import pytest

from avbench import hookimpl
from avbench.testing import run_cli, temporary_plugin

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

SECTION_KEYS = {
    "decode": {"source", "clips", "clip_seconds", "floor_s", "naive_s", "pipeline_s",
               "pipeline_vs_floor", "pipeline_vs_naive", "floor_cpu_s", "pipeline_cpu_s",
               "pipeline_vs_floor_cpu", "realtime_factor", "pipeline_vs_floor_min"},
    "cache": {"format", "footage", "mb_per_s", "psnr_db_mean", "segments_per_core_s",
              "cores_per_h100", "prepare_clips_per_core_s", "fakeavceleb_prepare_minutes",
              "fakeavceleb_disk_gb", "verify_cpu_s_per_clip"},
    "loader": {"engine_workers", "batch", "main_process_segments_per_s",
               "one_worker_segments_per_s", "engine_workers_segments_per_s"},
    "loader_vs_model": {"train_consumes_segments_per_s", "loader_delivers_segments_per_s",
                        "headroom", "keeps_up"},
    "memory": {"method", "batch", "train_peak_bytes", "eval_peak_bytes"},
    "projection": {"videos", "epochs", "segments", "batch", "steps", "step_s", "seconds",
                   "loader_bound"},
    "cli": {"help_s", "help_min_s", "runs_s", "command"},
}
#: the model section's figures for any torch detector, and those with a floor
TRAIN_KEYS = {"step_s", "s_per_clip", "flops_per_clip", "achieved_tflops", "mfu", "peak_tflops",
              "runs_s"}
EVAL_KEYS = {"s_per_segment", "flops_per_segment", "runs_s"}
TRAIN_FLOOR_KEYS = {"floor", "floor_s_per_clip", "ratio", "ratio_of_min", "floor_flops_per_clip",
                    "flop_ratio", "floor_runs_s", "references"}
EVAL_FLOOR_KEYS = {"floor", "floor_s_per_segment", "ratio", "ratio_of_min",
                   "floor_flops_per_segment", "flop_ratio", "floor_runs_s", "references"}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    pytest.importorskip("avbench_avprompt")
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    r = run_cli(["bench", "--smoke", "--quick", "--set", "backbone=tiny", "--device", "cpu",
                 "--json", str(path)])
    assert r.exit_code == 0, r.output + r.stderr
    return r, json.loads(path.read_text())


@pytest.mark.slow
def test_every_section_runs_and_the_json_holds_every_figure(full_run):
    r, doc = full_run
    assert doc["settings"]["sections"] == ["decode", "cache", "loader", "model", "memory", "cli"]
    assert set(doc["decode"]) == {"native", "rate", "resample"}
    # the pipeline target is judged on the datasets' frame size, not on the resize showcase
    assert [doc["decode"][k]["judged"] for k in ("native", "rate", "resample")] == [
        True, True, False]
    for kind in doc["decode"].values():
        assert SECTION_KEYS["decode"] <= set(kind)
        assert kind["pipeline_s"] > 0 and kind["naive_s"] > 0 and kind["floor_s"] > 0
    for section, keys in SECTION_KEYS.items():
        if section != "decode":
            assert keys <= set(doc[section]), (section, keys - set(doc[section]))
    model = doc["model"]
    assert model["detector"] == "avprompt" and doc["settings"]["set"] == {"backbone": "tiny"}
    assert doc["settings"]["detector_settings"]["clip_weights"] == "random"  # bench_settings
    assert set(model["train"]) >= TRAIN_KEYS | TRAIN_FLOOR_KEYS
    assert set(model["eval"]) >= EVAL_KEYS | EVAL_FLOOR_KEYS
    # avprompt's floor and its two references (the stock attention is timed, the pruned
    # towers are counted in FLOPs only)
    assert model["train"]["floor"] == "frozen towers"
    for part, per in (("train", "clip"), ("eval", "segment")):
        m = model[part]
        stock, pruned = m["references"]
        assert "stock attention" in stock["name"] and stock["timed"]
        assert stock[f"s_per_{per}"] > 0 and stock["vs_floor"] > 0
        assert "class token" in pruned["name"] and not pruned["timed"]
        assert f"s_per_{per}" not in pruned
        # both models really ran and FLOPs were counted: against towers whose last layer is
        # pruned as avprompt's is, the prompts add work, never remove it; against the whole
        # towers the pruning saves work (a large share of a 2-layer tiny tower)
        assert pruned["flop_ratio"] > 1.0
        assert pruned[f"flops_per_{per}"] < m[f"floor_flops_per_{per}"]
        assert stock[f"flops_per_{per}"] > 0
        assert m["flop_ratio"] > 0 and m["ratio"] > 0
    assert doc["memory"]["train_peak_bytes"] > 0
    for key in ("date", "cpu", "cores", "torch", "python", "device"):
        assert doc["machine"][key] is not None
    names = [t["name"] for t in doc["targets"]]
    assert any("train step" in n for n in names) and any("--help" in n for n in names)
    assert any("utilisation" in n for n in names)  # listed as not measured without CUDA
    # the table names the measurements and the targets
    assert "floor: frozen towers" in r.output and "targets" in r.output
    assert "stock attention" in r.output and "class token" in r.output


@pytest.mark.slow
def test_targets_on_a_tiny_cpu_run_are_not_judged(full_run):
    _, doc = full_run
    by = {t["name"]: t for t in doc["targets"]}
    train = by["avprompt train step / floor"]
    assert train["met"] is None  # a smoke run is judged on nothing
    decode = [t for n, t in by.items() if n.startswith("media pipeline")]
    assert len(decode) == 3
    assert [t["met"] is None for t in decode] == [False, False, True]
    assert decode[2]["note"]
    mfu = next(t for n, t in by.items() if "utilisation" in n)
    assert mfu["met"] is None and mfu["value"] is None


def test_only_runs_the_sections_asked_for(tmp_path):
    path = tmp_path / "b.json"
    pytest.importorskip("avbench_avprompt")
    r = run_cli(["bench", "--smoke", "--set", "backbone=tiny", "--only", "decode,cli",
                 "--reps", "1", "--json", str(path)])
    assert r.exit_code == 0, r.output + r.stderr
    doc = json.loads(path.read_text())
    assert doc["settings"]["sections"] == ["decode", "cli"]
    assert doc["decode"] is not None and doc["cli"] is not None
    for section in ("cache", "loader", "model", "memory", "projection", "loader_vs_model"):
        assert doc[section] is None


def test_bad_options_end_in_one_line():
    r = run_cli(["bench", "--only", "gpu"])
    assert r.exit_code != 0
    assert r.stderr.strip().splitlines() == [
        "error: --only 'gpu': choose from decode, cache, loader, model, memory, cli"]
    pytest.importorskip("avbench_avprompt")
    r = run_cli(["bench", "--set", "backbone=huge", "--only", "cli"])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and "backbone" in lines[0], r.stderr
    r = run_cli(["bench", "-d", "no-such-detector", "--only", "cli"])
    assert r.exit_code == 2 and "unknown detector 'no-such-detector'" in r.stderr
    r = run_cli(["bench", "-d", "sync-corr", "--only", "cli"])  # not a torch detector
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and "not a TorchDetector" in lines[0], r.stderr


def test_peak_table_and_projection():
    from avbench.bench.model import peak_tflops, projection

    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA A10") == 125.0
    assert peak_tflops("Some Future GPU") is None
    p = projection(0.05, 32, {"engine_workers": 8, "engine_workers_segments_per_s": 1000.0})
    assert p["segments"] == 15 * 12_800 and p["steps"] == 6000
    assert p["seconds"] == pytest.approx(6000 * 0.05) and not p["loader_bound"]
    slow = projection(0.05, 32, {"engine_workers": 8, "engine_workers_segments_per_s": 320.0})
    assert slow["loader_bound"] and slow["seconds"] == pytest.approx(6000 * 0.1)
    serial = projection(0.05, 32, {"engine_workers": 0, "engine_workers_segments_per_s": 3200.0})
    assert serial["seconds"] == pytest.approx(6000 * 0.06)


def test_targets_are_judged_from_the_figures():
    from avbench.bench.report import targets

    doc = {
        "settings": {"device": "cuda", "smoke": False},
        "model": {"detector": "mydet", "batch": 32, "train": {"ratio": 1.1, "mfu": 0.4},
                  "eval": {"ratio": 1.05}},
        "projection": {"seconds": 600.0, "batch": 32, "epochs": 15},
        "loader_vs_model": {"headroom": 2.0, "keeps_up": True},
    }
    got = {t["name"]: t["met"] for t in targets(doc)}
    assert got["bf16 train step, model FLOPs utilisation"] is True
    assert got["projected 15-epoch intra training"] is True
    assert got["mydet train step / floor"] is None  # a CPU target
    doc["model"]["train"]["mfu"] = 0.2
    doc["projection"]["seconds"] = 1500.0
    got = {t["name"]: t["met"] for t in targets(doc)}
    assert got["bf16 train step, model FLOPs utilisation"] is False
    assert got["projected 15-epoch intra training"] is False
    doc["settings"]["device"] = "cpu"
    got = {t["name"]: t["met"] for t in targets(doc)}
    assert got["mydet train step / floor"] is True and got["mydet evaluation / floor"] is True
    doc["model"]["eval"]["ratio"] = 1.2
    assert {t["name"]: t["met"] for t in targets(doc)}["mydet evaluation / floor"] is False
    doc["settings"]["smoke"] = True  # judged on nothing
    assert {t["met"] for t in targets(doc) if "floor" in t["name"]} == {None}
    # a detector without a floor has no floor targets
    del doc["model"]["train"]["ratio"], doc["model"]["eval"]["ratio"]
    assert not [t for t in targets(doc) if "floor" in t["name"]]

def test_per_item_interleaving_alternates_and_pairs_runs():
    from avbench.bench._timing import interleaved_per_item

    calls: list[tuple[str, int]] = []
    fns = {name: (lambda item, name=name: calls.append((name, item))) for name in "ab"}
    cpu: dict[str, list[float]] = {}
    times = interleaved_per_item(fns, [1, 2, 3], reps=2, warmup=1, cpu=cpu)
    assert calls[:2] == [("a", 1), ("b", 1)]  # the warm-up, untimed
    timed = calls[2:]
    assert [item for _, item in timed] == [1, 1, 2, 2, 3, 3] * 2
    assert [name for name, _ in timed[:4]] == ["a", "b", "b", "a"]  # order alternates
    assert all(len(v) == 6 for v in (*times.values(), *cpu.values()))


# -- any torch detector ------------------------------------------------------------------------


def _third_party_plugin(with_floor: bool) -> types.ModuleType:
    """A plugin as a third party would write it: a tiny torch detector (a frozen linear
    'backbone' on each frame's mean colour, a learnable head), with or without a floor."""
    from torch import nn

    from avbench.detector import InputSpec
    from avbench.torch_detector import BenchFloor, TorchConfig, TorchDetector

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Linear(3, 32).requires_grad_(False)
            self.head = nn.Linear(32, 2)

        def features(self, video, delta=None):
            x = video.float().mean(dim=(3, 4)) / 255.0  # (B, T, 3)
            return self.backbone(x if delta is None else x + delta).mean(dim=1)

        def forward(self, video):
            return self.head(self.features(video))

    class Floor(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.delta = nn.Parameter(torch.zeros(3))

        def loss(self, batch):
            return self.net.features(batch["video"], self.delta).square().mean()

        def bare(self, batch):
            return self.net.features(batch["video"])

    class ThirdParty(TorchDetector):
        Config = TorchConfig

        def input_spec(self):
            return InputSpec(frames=4, size=16, modalities=("video",))

        def build_model(self):
            return Net()

        def loss(self, model, batch):
            loss = torch.nn.functional.cross_entropy(model(batch["video"]), batch["label"])
            return loss, {"ce": float(loss.detach())}

        def scores(self, model, batch):
            return {"score": model(batch["video"]).softmax(-1)[:, 1]}

    class WithFloor(ThirdParty):
        bench_settings = {"lr": 0.01}

        def bench_floors(self, model):
            floor = Floor(model)
            return [BenchFloor("frozen linear", floor, floor.loss, floor.bare),
                    BenchFloor("frozen linear, FLOPs only", floor, floor.loss, floor.bare,
                               timed=False)]

    mod = types.ModuleType("third_party_bench_plugin")

    @hookimpl
    def avbench_register_detectors(register):
        register("thirdparty", WithFloor if with_floor else ThirdParty, description="bench test")

    mod.avbench_register_detectors = avbench_register_detectors
    return mod


@pytest.mark.parametrize("with_floor", [False, True])
def test_bench_times_a_third_party_torch_detector(tmp_path, with_floor):
    path = tmp_path / "b.json"
    with temporary_plugin(_third_party_plugin(with_floor), "third-party"):
        r = run_cli(["bench", "-d", "thirdparty", "--only", "model", "--device", "cpu",
                     "--reps", "2", "--batch", "4", "--json", str(path)])
    assert r.exit_code == 0, r.output
    doc = json.loads(path.read_text())
    model = doc["model"]
    assert model["detector"] == "thirdparty" and model["batch"] == 4
    tr, ev = model["train"], model["eval"]
    assert set(tr) >= TRAIN_KEYS and set(ev) >= EVAL_KEYS
    assert len(tr["runs_s"]) == len(ev["runs_s"]) == 2  # --reps
    assert tr["step_s"] > 0 and ev["s_per_segment"] > 0
    assert tr["flops_per_clip"] > ev["flops_per_segment"] > 0  # backward counted in training
    assert doc["projection"]["epochs"] == 15 and doc["projection"]["step_s"] == tr["step_s"]
    assert "train step, thirdparty" in r.stdout and "evaluation" in r.stdout
    names = [t["name"] for t in doc["targets"]]
    if not with_floor:
        assert not set(tr) & TRAIN_FLOOR_KEYS and not set(ev) & EVAL_FLOOR_KEYS
        assert not any("floor" in n for n in names) and "floor" not in r.stdout
        return
    assert doc["settings"]["detector_settings"] == {"lr": 0.01}
    assert set(tr) >= TRAIN_FLOOR_KEYS and set(ev) >= EVAL_FLOOR_KEYS
    assert tr["floor"] == ev["floor"] == "frozen linear" and "floor: frozen linear" in r.stdout
    assert len(tr["floor_runs_s"]) == 2 and tr["ratio"] > 0 and ev["ratio"] > 0
    # the floor's training backward reaches its input through the frozen layer
    assert tr["floor_flops_per_clip"] > ev["floor_flops_per_segment"] > 0
    (ref,) = tr["references"]
    assert ref["name"] == "frozen linear, FLOPs only" and "s_per_clip" not in ref
    assert ref["flops_per_clip"] == tr["floor_flops_per_clip"]
    assert "thirdparty train step / floor" in names


def test_a_floor_that_cannot_train_is_refused_in_one_line():
    from avbench.bench.model import Steps
    from avbench.errors import PluginError
    from avbench.torch_detector import BenchFloor

    with temporary_plugin(_third_party_plugin(False), "third-party"):
        from avbench.bench.model import build_detector

        det = build_detector("thirdparty", {}, 2)
    frozen = det.model.backbone
    det.bench_floors = lambda model: [BenchFloor("no params", frozen, None, None)]
    with pytest.raises(PluginError, match="'no params' has no learnable parameter"):
        Steps(det, "cpu", 2)
    det.bench_floors = lambda model: [BenchFloor("flops only", det.model, None, None,
                                                 timed=False)]
    with pytest.raises(PluginError, match=r"the first floor .* timed=True"):
        Steps(det, "cpu", 2)


def test_the_core_imports_no_plugin():
    """avbench (the bench included) never imports an in-repo plugin's package."""
    root = Path(__file__).resolve().parents[1] / "avbench"
    plugins = {p.name for p in (root.parent / "plugins").glob("*/avbench_*")}
    assert "avbench_avprompt" in plugins
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [(path.name, n) for n in names if n.split(".")[0] in plugins]
    assert not found
