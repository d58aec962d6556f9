"""`avbench run` with the built-in baselines, end to end, and what it writes."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from avbench.config import config_hash
from avbench.metrics import metrics_from_frame
from avbench.results import SCHEMA_VERSION
from avbench.testing import run_cli


@pytest.fixture(scope="module")
def runs(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for det in ("sync-corr", "mfcc-logreg"):
        r = run_cli(["run", "-d", det, "-p", "intra", "--data", f"fakeavceleb={synthetic_root}",
                     "--out", str(out), "--quiet", "--seed", "3"])
        assert r.exit_code == 0, r.output
    return out


def _run_dir(out, det):
    (d,) = [p.parent for p in (out / "intra" / "all" / det).rglob("run.json")]
    return d


@pytest.mark.slow
@pytest.mark.parametrize("det", ["sync-corr", "mfcc-logreg"])
def test_baselines_write_complete_result_folders(runs, det):
    d = _run_dir(runs, det)
    info = json.loads((d / "run.json").read_text())
    assert info["status"] == "complete" and info["seed"] == 3
    for key in ("detector", "protocol", "splits", "datasets", "versions", "timings",
                "skipped_media", "checkpoint", "git_commit", "device"):
        assert key in info
    assert len(info["detector"]["config_hash"]) == 16
    # the hash of the config the run records (it was once the hash of {} for every run)
    assert info["detector"]["config_hash"] == config_hash(info["detector"]["config"])
    assert info["detector"]["config"] and info["detector"]["config_hash"] != config_hash({})
    assert info["identity"]["config_hash"] == info["detector"]["config_hash"]
    assert info["identity"]["seed"] == 3 and info["schema"] == SCHEMA_VERSION
    assert info["datasets"]["fakeavceleb"]["fingerprint"]
    scores = pd.read_csv(d / "scores.csv")
    assert len(scores) == info["splits"]["test"]["n"] == info["n_test_videos"]
    if det == "mfcc-logreg":
        assert info["checkpoint"]["checkpoint"] == "best-val"
        state = np.load(d / "state.npz")
        assert len(state.files) > 0
        assert scores["score_a"].notna().all()
    else:  # training-free, but its threshold is calibrated on val: that is its state
        assert info["checkpoint"]["checkpoint"] == "none"
        state = np.load(d / "state.npz")
        assert state.files == ["r_neutral"]
        assert float(state["r_neutral"]) == info["checkpoint"]["notes"]["r_neutral"]
    # the ids of every video fit saw, as eval checks them: they hash to the recorded splits
    fit = json.loads((d / "fit_videos.json").read_text())
    assert sorted(fit) == ["train", "val"]
    for name, entry in fit.items():
        assert entry["hash"] == info["splits"][name]["hash"]
        assert len(entry["ids"]) == info["splits"][name]["n"]


@pytest.mark.slow
@pytest.mark.parametrize("det", ["sync-corr", "mfcc-logreg"])
def test_metrics_equal_scikit_learn_on_the_written_scores(runs, det):
    d = _run_dir(runs, det)
    df = pd.read_csv(d / "scores.csv")
    m = json.loads((d / "metrics.json").read_text())["metrics"]
    y, s = df["label"].to_numpy(), df["score"].to_numpy()
    assert abs(m["auc"]["value"] - roc_auc_score(y, s)) < 1e-9
    assert abs(m["ap"]["value"] - average_precision_score(y, s)) < 1e-9
    assert abs(m["acc"]["value"] - accuracy_score(y, s >= 0.5)) < 1e-9
    again = metrics_from_frame(df, seed=3)  # the run's seed: the same intervals
    assert again["auc"].lo == pytest.approx(m["auc"]["ci95"][0], abs=1e-12)
    assert again["auc"].hi == pytest.approx(m["auc"]["ci95"][1], abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["rich", "markdown", "latex", "csv"])
def test_table_1_from_the_run_folders_in_every_format(runs, fmt):
    r = run_cli(["table", "--table", "1", "--results", str(runs), "--format", fmt])
    assert r.exit_code == 0, r.output
    assert "sync-corr" in r.stdout and "mfcc-logreg" in r.stdout and "AVFF" in r.stdout
    r = run_cli(["table", "--protocol", "intra", "--results", str(runs), "--format", fmt,
                 "--no-published"])
    assert "AVFF" not in r.stdout and "sync-corr" in r.stdout


def _corrupt_copy(src, dst):
    shutil.copytree(src, dst)
    test_ids = [line.split(",") for line in (dst / "meta_data.csv").read_text().splitlines()[1:]]
    euro = ["/".join(r[9].split("/")[1:]) + "/" + r[8] for r in test_ids
            if r[6] == "Caucasian (European)" and r[3] == "wav2lip"]
    (dst / euro[0]).write_bytes(b"")  # zero bytes
    data = (dst / euro[1]).read_bytes()
    (dst / euro[1]).write_bytes(data[: len(data) // 3])  # truncated
    return euro[:2]


@pytest.mark.slow
def test_a_run_over_bad_media_completes_and_reports_it(synthetic_root, tmp_path):
    root = tmp_path / "FakeAVCeleb_v1.2"
    bad = _corrupt_copy(synthetic_root, root)
    r = run_cli(["run", "-d", "sync-corr", "-p", "intra", "--data", f"fakeavceleb={root}",
                 "--out", str(tmp_path / "res"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "2 video(s) could not be decoded and are skipped" in r.stdout
    (run_json,) = (tmp_path / "res").rglob("run.json")
    info = json.loads(run_json.read_text())
    assert info["status"] == "complete"
    sk = info["skipped_media"]
    assert sk["count"] == 2 and set(sk["by_kind"]) == {"empty", "truncated"}
    assert {x["id"] for x in sk["items"]} == set(bad)
    assert all(x["split"] == "test" and x["reason"] for x in sk["items"])
    scores = pd.read_csv(run_json.parent / "scores.csv")
    assert not set(bad) & set(scores["id"])
    assert info["splits"]["test"]["n_used"] == info["splits"]["test"]["n"] - 2

    r = run_cli(["run", "-d", "sync-corr", "-p", "intra", "--data", f"fakeavceleb={root}",
                 "--out", str(tmp_path / "res2"), "--quiet", "--on-bad-media", "fail"])
    assert r.exit_code == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "2 bad file(s)" in line


def test_fit_never_sees_a_test_video(synthetic_root, tmp_path):
    import types

    from avbench import hookimpl
    from avbench.detector import Detector, FitInfo
    from avbench.testing import temporary_plugin

    seen: dict[str, set] = {}

    class Spy(Detector):
        def fit(self, train, val, ctx):
            seen["train"] = {r.id for r in train.records}
            seen["val"] = {r.id for r in val.records}
            for _batch in train.iter_batches(64):  # and what the data actually holds
                seen["train"] |= set(_batch.ids)
            return FitInfo(checkpoint="none")

        def predict(self, batch, ctx):
            return {"score": np.full(len(batch), 0.5)}

    plugin = types.SimpleNamespace()

    @hookimpl
    def avbench_register_detectors(register):
        register("spy", Spy)

    plugin.avbench_register_detectors = avbench_register_detectors
    with temporary_plugin(plugin, "spy-plugin"):
        r = run_cli(["run", "-d", "spy", "-p", "cross-manip", "--fold", "RVFA", "--data",
                     f"fakeavceleb={synthetic_root}", "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    (run_json,) = tmp_path.rglob("run.json")
    test_ids = set(pd.read_csv(run_json.parent / "scores.csv")["id"])
    assert test_ids and seen["train"] and seen["val"]
    assert not (seen["train"] | seen["val"]) & test_ids


@pytest.mark.slow
def test_data_check_lists_every_unreadable_file(synthetic_root, tmp_path):
    root = tmp_path / "FakeAVCeleb_v1.2"
    bad = _corrupt_copy(synthetic_root, root)
    r = run_cli(["data", "check", "--data", f"fakeavceleb={root}"])
    assert r.exit_code == 1, r.output
    assert "2 of 319 file(s) cannot be decoded" in r.stdout
    for vid in bad:
        assert vid in r.stdout
    assert "by category" in r.stdout and "FVRA-WL" in r.stdout
    r = run_cli(["data", "check", "--data", f"fakeavceleb={synthetic_root}", "--no-decode"])
    assert r.exit_code == 0 and "319 videos" in r.stdout


@pytest.mark.slow
def test_rich_tables_never_truncate_numbers_on_narrow_terminals(runs):
    r = run_cli(["table", "--table", "1", "--results", str(runs)], env={"COLUMNS": "60"})
    assert r.exit_code == 0
    assert "…" not in r.stdout and "mfcc-logreg" in r.stdout


@pytest.mark.slow
def test_a_set_run_records_what_it_changed_and_is_a_row_of_its_own(runs, synthetic_root,
                                                                   tmp_path):
    """run.json's config_changes is what --set changed from the detector's default (nothing
    for a default run); the table labels the row by it, beside the default's row."""
    out = tmp_path / "results"
    shutil.copytree(runs, out)
    r = run_cli(["run", "-d", "sync-corr", "-p", "intra", "--data", f"fakeavceleb={synthetic_root}",
                 "--out", str(out), "--quiet", "--seed", "3", "--set", "max_lag=0"])
    assert r.exit_code == 0, r.output
    changes = {}
    for path in (out / "intra" / "all" / "sync-corr").rglob("run.json"):
        info = json.loads(path.read_text())["detector"]
        changes[info["config_hash"]] = info["config_changes"]
    assert sorted(changes.values(), key=len) == [{}, {"max_lag": 0}]
    r = run_cli(["table", "--table", "1", "--results", str(out), "--format", "csv",
                 "--no-published"])
    assert r.exit_code == 0, r.output
    methods = [row["Method"] for row in csv.DictReader(io.StringIO(r.stdout))]
    assert {"sync-corr", "sync-corr [max_lag=0]"} <= set(methods), r.stdout
