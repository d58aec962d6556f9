"""The training engine on a tiny torch detector and the synthetic benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from avbench.testing import run_cli

PLUGINS = Path(__file__).parent / "plugins"


def _run_args(root, out, *extra):
    return ["--plugins-dir", str(PLUGINS), "run", "--detector", "tinydet", "--protocol", "intra",
            "--data", f"fakeavceleb={root}", "--out", str(out), "--quiet", *extra]


def _only_run(out: Path) -> Path:
    runs = sorted(out.rglob("run.json"))
    assert len(runs) == 1, runs
    return runs[0].parent


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("engine")
    r = run_cli(_run_args(synthetic_root, out, "--set", "epochs=6", "--set", "select=last"))
    assert r.exit_code == 0, r.output
    return _only_run(out), r


@pytest.mark.slow
def test_loss_falls_and_epochs_are_logged(trained):
    run_dir, r = trained
    rows = [json.loads(x) for x in (run_dir / "epochs.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert all(x["val_auc"] is not None and x["segments_per_s"] > 0 for x in rows)
    # the time the step waited for data is logged, and is part of the epoch's training time
    assert all(0 < x["data_wait_s"] <= x["train_s"] for x in rows)
    assert "epoch 6 | loss" in r.stdout  # plain lines in quiet mode


@pytest.mark.slow
def test_run_folder_is_complete_and_honest(trained, synthetic_root):
    run_dir, _ = trained
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["checkpoint"]["checkpoint"] == "last"
    assert info["protocol"]["name"] == "intra" and info["protocol"]["version"] == "1.1"
    assert set(info["splits"]) == {"train", "val", "test"}
    assert all(len(s["hash"]) == 16 for s in info["splits"].values())
    assert info["detector"]["config"]["epochs"] == 6
    assert info["skipped_media"]["count"] == 0
    scores = pd.read_csv(run_dir / "scores.csv")
    assert len(scores) == info["splits"]["test"]["n"]
    assert scores["score"].between(0, 1).all() and (scores["n_segments"] >= 1).all()
    # the model's state is saved (tinydet has no buffers and nothing frozen; see
    # tests/test_state.py), and it loads with weights_only=True
    import torch

    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert set(state) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    ck = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ck["epoch"] == 5 and "optimizer" in ck and "rng" in ck
    assert list(ck["model"]) == list(state)  # select=last: state.pt is the last epoch's
    for k, v in state.items():
        assert torch.equal(ck["model"][k], v), k
    # no path of this machine in the run record: not the dataset root, not the output folder
    text = (run_dir / "run.json").read_text()
    assert str(Path.home()) not in text
    assert str(synthetic_root) not in text and str(run_dir.parents[3]) not in text
    assert "fakeavceleb=<path>" in info["command"]


@pytest.mark.slow
def test_best_on_validation_is_the_default_and_recorded(synthetic_root, tmp_path):
    r = run_cli(_run_args(synthetic_root, tmp_path, "--set", "epochs=2"))
    assert r.exit_code == 0, r.output
    info = json.loads((_only_run(tmp_path) / "run.json").read_text())
    assert info["checkpoint"]["checkpoint"] == "best-val"
    assert info["checkpoint"]["selection"] == "validation AUC"
    assert info["checkpoint"]["epoch"] in (1, 2)


def test_nan_loss_stops_with_a_clear_message(synthetic_root, tmp_path):
    r = run_cli(_run_args(synthetic_root, tmp_path, "--set", "epochs=3",
                          "--set", "nan_after=30"))
    assert r.exit_code == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: non-finite loss (nan) at epoch 2"), r.stderr
    assert "last good checkpoint (epoch 1)" in line
    run_dir = _only_run(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "non-finite loss" in info["error"]
    assert (run_dir / "checkpoints" / "last.pt").exists()
    assert not (run_dir / "scores.csv").exists()


def _cli(args, env):
    return [sys.executable, "-m", "avbench", *args], {**os.environ, **env}


@pytest.mark.slow
def test_resume_after_a_kill_mid_epoch_equals_an_uninterrupted_run(synthetic_root, tmp_path,
                                                                    avbench_cache):
    env = {"AVBENCH_CACHE": str(avbench_cache), "CUDA_VISIBLE_DEVICES": ""}
    slow = ("--set", "epochs=3", "--set", "step_sleep=0.12", "--set", "select=last")
    ref = run_cli(_run_args(synthetic_root, tmp_path / "ref", "--set", "epochs=3",
                            "--set", "select=last"))
    assert ref.exit_code == 0, ref.output

    cmd, full_env = _cli(_run_args(synthetic_root, tmp_path / "cut", *slow), env)
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    log = None
    while time.time() < deadline and proc.poll() is None:
        logs = list((tmp_path / "cut").rglob("epochs.jsonl"))
        if logs and logs[0].read_text().count("\n") >= 1:
            log = logs[0]
            break
        time.sleep(0.1)
    assert log is not None, "the run never finished its first epoch"
    time.sleep(1.0)  # well inside epoch 2 (each epoch takes several seconds here)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_dir = log.parent
    assert json.loads((run_dir / "run.json").read_text())["status"] == "incomplete"
    assert log.read_text().count("\n") == 1

    r = run_cli(_run_args(synthetic_root, tmp_path / "cut", *slow[:2], "--set", "select=last",
                          "--set", "step_sleep=0.12", "--resume"))
    assert r.exit_code == 0, r.output
    assert _only_run(tmp_path / "cut") == run_dir
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["resumed"] is True
    a = pd.read_csv(_only_run(tmp_path / "ref") / "scores.csv")
    b = pd.read_csv(run_dir / "scores.csv")
    pd.testing.assert_frame_equal(a, b)
    assert (run_dir / "epochs.jsonl").read_text().count("\n") == 3


@pytest.mark.slow
def test_two_process_gloo_run_equals_one_process(synthetic_root, tmp_path, avbench_cache):
    env = {"AVBENCH_CACHE": str(avbench_cache), "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1"}
    args = ("--set", "epochs=2", "--set", "select=last", "--set", "batch_size=8")
    one = run_cli(_run_args(synthetic_root, tmp_path / "one", *args))
    assert one.exit_code == 0, one.output
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "avbench", *_run_args(synthetic_root, tmp_path / "two", *args)]
    p = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    run_dir = _only_run(tmp_path / "two")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == 2 and info["status"] == "complete"
    a = pd.read_csv(_only_run(tmp_path / "one") / "scores.csv")
    b = pd.read_csv(run_dir / "scores.csv")
    assert list(a["id"]) == list(b["id"])
    assert (a["score"] - b["score"]).abs().max() < 1e-5


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_run_marked_incomplete(synthetic_root, tmp_path, avbench_cache):
    env = {"AVBENCH_CACHE": str(avbench_cache), "CUDA_VISIBLE_DEVICES": ""}
    cmd, full_env = _cli(_run_args(synthetic_root, tmp_path, "--set", "epochs=3",
                                   "--set", "step_sleep=0.12"), env)
    # a shell's background jobs start with SIGINT ignored; give the child the default
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.rglob("epochs.jsonl")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    info = json.loads((_only_run(tmp_path) / "run.json").read_text())
    assert info["status"] == "incomplete" and "--resume" in info["error"]
