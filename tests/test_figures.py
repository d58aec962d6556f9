"""Fig. 3 (``avbench figure av-distance``): the distance, the detector method, the command, and
the report's section, on a trained tiny avprompt run (slow) and on hand-written runs (fast)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avbench.figures import frame_distances
from avbench.plugins import get_plugins
from avbench.results import RunRecord, run_folder
from avbench.tables.build import registered_protocols
from avbench.testing import run_cli

SMALL = ["--set", "backbone=tiny", "--set", "prompt_dim=16", "--set", "fusion_dim=32",
         "--set", "head_hidden=16", "--set", "frames=4"]


def test_frame_distance_is_one_minus_the_cosine_per_frame():
    v = np.array([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 0.0]]])
    a = np.array([[[3.0, 0.0], [-1.0, -1.0], [1.0, 0.0], [1.0, 0.0]]])
    got = frame_distances(v, a)
    assert got.shape == (1, 4)
    np.testing.assert_allclose(got[0], [0.0, 2.0, 1.0, 1.0])  # same, opposite, orthogonal, zero
    rng = np.random.default_rng(0)
    v, a = rng.normal(size=(3, 5, 7)), rng.normal(size=(3, 5, 7))
    cos = (v * a).sum(-1) / np.linalg.norm(v, axis=-1) / np.linalg.norm(a, axis=-1)
    np.testing.assert_allclose(frame_distances(v, a), 1 - cos, atol=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        frame_distances(v, a[:, :4])


def _hand_written_run(root: Path, detector: str, status: str = "complete") -> Path:
    protocol = registered_protocols()["cross-manip"]
    path = run_folder(root, "cross-manip", "RVFA", detector, "20250101-x")
    RunRecord(run_id="20250101-x", status=status, created="2025-01-01T00:00:00Z",
              detector_info={"name": detector, "config": {}, "config_hash": "0" * 16,
                             "input_spec": {"modalities": ["video", "audio"]}},
              protocol_info={"name": "cross-manip", "version": protocol.version,
                             "fold": "RVFA", "file_hash": protocol.file_hash},
              n_test_videos=0).write(path)
    return path


def test_a_detector_without_frame_features_is_one_line_exit_2(tmp_path):
    run = _hand_written_run(tmp_path / "results", "sync-corr")
    r = run_cli(["figure", "av-distance", "--from", str(run), "--data",
                 "fakeavceleb=/nonexistent", "--out", str(tmp_path / "f.png")])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [
        f"error: detector 'sync-corr' of {run} offers no frame_features method, so it has no "
        f"per-frame audio-visual features to compare"]
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("case, expected", [
    ("suffix", "give a .png or .svg file"),
    ("missing", "no run.json (not a run folder)"),
    ("incomplete", "the run is incomplete; only a complete run has the state to draw from"),
    ("single-branch", "reads only audio: no audio-visual features to compare"),
])
def test_bad_figure_arguments_are_one_line_exit_2(tmp_path, case, expected):
    run = _hand_written_run(tmp_path / "results", "avprompt",
                            status="incomplete" if case == "incomplete" else "complete")
    if case == "single-branch":
        run = _hand_written_run(tmp_path / "results", "avprompt-audio-only")
        f = run / "run.json"
        f.write_text(f.read_text().replace('"video",', ""))
    out = tmp_path / ("f.txt" if case == "suffix" else "f.png")
    src = tmp_path / "nothing" if case == "missing" else run
    r = run_cli(["figure", "av-distance", "--from", str(src), "--data",
                 "fakeavceleb=synthetic", "--out", str(out)])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def _tiny(name: str = "avprompt"):
    import torch

    torch.manual_seed(0)
    overrides = dict(item.split("=", 1) for item in SMALL[1::2])
    return get_plugins().detector(name).create(overrides)


def _segment_batch(det, n: int = 3):
    from avbench.detector import SegmentBatch

    spec = det.input_spec()
    rng = np.random.default_rng(1)
    return SegmentBatch(
        video_index=np.arange(n), ids=[f"v{i}" for i in range(n)], start=np.zeros(n, int),
        label=np.zeros(n, int), label_v=np.zeros(n, int), label_a=np.zeros(n, int),
        video=rng.integers(0, 256, (n, spec.frames, 3, spec.size, spec.size), dtype=np.uint8),
        audio=(0.1 * rng.normal(size=(n, spec.samples))).astype(np.float32))


def test_avprompt_frame_features_are_its_aligned_features_per_frame():
    import torch

    from avbench.engine.device import batch_to_tensors

    det = _tiny()
    batch = _segment_batch(det)
    v, a = det.frame_features(batch)
    assert v.shape == a.shape == (3, 4, 32) and v.dtype == np.float32
    with torch.inference_mode():
        out = det.model.eval()(**{k: t for k, t in batch_to_tensors(batch, "cpu").items()
                                  if k in ("video", "audio")})
    np.testing.assert_allclose(v, out.f_v_aligned.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a, out.f_a_aligned.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs both branches"):
        _tiny("avprompt-audio-only").frame_features(batch)


# --------------------------------------------------------------------------------------------
# A trained run


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("fig3") / "results"
    r = run_cli(["run", "-d", "avprompt", "-p", "cross-manip", "--fold", "RVFA", "--data",
                 f"fakeavceleb={synthetic_root}", "--out", str(out), "--quiet",
                 "--set", "epochs=1", *SMALL])
    assert r.exit_code == 0, r.output[-3000:]
    (run,) = out.glob("cross-manip/RVFA/avprompt/*")
    return out, run


@pytest.mark.slow
def test_the_figure_command_draws_every_test_video_per_category(trained, synthetic_root,
                                                                tmp_path):
    import torch
    import torch.nn.functional as F

    from avbench.engine.device import batch_to_tensors
    from avbench.figures import load_trained, scored_split
    from avbench.media.cache import PreparedCache, prepare
    from avbench.media.videoset import VideoSet, pipeline_for_spec

    _, run = trained
    data = f"fakeavceleb={synthetic_root}"
    svgs = []
    for name in ("a", "b"):
        r = run_cli(["figure", "av-distance", "--from", str(run), "--data", data, "--out",
                     str(tmp_path / f"{name}.svg"), "--csv", str(tmp_path / f"{name}.csv"),
                     "--quiet"])
        assert r.exit_code == 0, r.output
        svgs.append((tmp_path / f"{name}.svg").read_bytes())
    assert svgs[0] == svgs[1] and svgs[0].startswith(b"<?xml")  # the same bytes each time
    assert b"<dc:date>" not in svgs[0]
    assert "real" in r.stdout and "RVFA" in r.stdout
    df = pd.read_csv(tmp_path / "a.csv", dtype={"id": str})
    scores = pd.read_csv(next(run.glob("scores.csv")), dtype={"id": str})
    assert list(df["id"]) == list(scores["id"])  # every test video, in the split's order
    assert sorted(df["category"].unique()) == ["RVFA", "real"]
    assert df["distance"].between(0, 2).all()
    assert (df["n_segments"] == scores["n_segments"]).all()

    # one video's distance again, from the model's own forward and torch's cosine
    trained_det = load_trained(run, get_plugins())
    split, index = scored_split(trained_det, [data], get_plugins())
    det = trained_det.detector
    spec = det.input_spec()
    cache = PreparedCache()
    rec = split.records[0]
    res = prepare([(rec.id, index.root / rec.id)], pipeline_for_spec(spec), cache,
                  progress=False)
    (batch,) = VideoSet([rec], res.entries, cache, spec).iter_batches(1000)
    with torch.inference_mode():
        t = batch_to_tensors(batch, "cpu")
        out = det.model.eval()(video=t["video"], audio=t["audio"])
    want = (1 - F.cosine_similarity(out.f_v_aligned, out.f_a_aligned, dim=-1)).mean()
    assert df.loc[df["id"] == rec.id, "distance"].item() == pytest.approx(float(want),
                                                                         abs=1e-5)


@pytest.mark.slow
def test_the_report_draws_fig3_for_the_avprompt_run(trained, synthetic_root, tmp_path):
    results, run = trained
    r = run_cli(["report", "--results", str(results), "--out", str(tmp_path / "plain")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "plain" / "index.html").read_text("utf-8")
    part = page[page.index('id="av-distance"'):page.index('id="provenance"')]
    assert "Not drawn: the test videos are needed" in part
    assert run.relative_to(results).as_posix() in part
    assert "<img" not in part

    r = run_cli(["report", "--results", str(results), "--out", str(tmp_path / "drawn"),
                 "--data", f"fakeavceleb={synthetic_root}"])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "drawn" / "index.html").read_text("utf-8")
    part = page[page.index('id="av-distance"'):page.index('id="provenance"')]
    assert len(re.findall(r'<img alt="cross-manip / RVFA: avprompt" src="data:image/png;base64,',
                          part)) == 1
    assert "real: n=" in part and "RVFA: n=" in part
