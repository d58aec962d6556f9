"""A detector whose ``scores()``/``predict()`` returns something other than probabilities is
named in one line, with its plugin, the method and the video (exit 1), never as avbench's
"internal error"."""

from __future__ import annotations

import types

import numpy as np
import pytest

from avbench import hookimpl
from avbench.detector import Detector, InputSpec, RunContext, SegmentBatch, check_scores
from avbench.errors import DetectorOutputError
from avbench.plugins import get_plugins
from avbench.testing import run_cli, temporary_plugin


class BadPredict(Detector):
    trainable = False
    value = 12.3

    def input_spec(self):
        return InputSpec(frames=4, size=16, modalities=("audio",))

    def predict(self, batch, ctx):
        out = np.full(len(batch), 0.5)
        out[-1] = self.value
        return {"score": out}


def _plugin(**detectors):
    plugin = types.SimpleNamespace()

    @hookimpl
    def avbench_register_detectors(register):
        for name, cls in detectors.items():
            register(name, cls, description="returns bad scores", modality="A")

    plugin.avbench_register_detectors = avbench_register_detectors
    return plugin


class _Videos:
    """Two batches of segments of videos v0..v3, as ``VideoSet.iter_batches`` gives them."""

    def iter_batches(self, batch_size):
        for first in (0, 2):
            ids = [f"v{first}", f"v{first + 1}"]
            z = np.zeros(2, dtype=np.int64)
            yield SegmentBatch(video_index=np.array([first, first + 1]), ids=ids, start=z,
                               label=z, label_v=z, label_a=z)


@pytest.mark.parametrize(("value", "shown"), [(12.3, "12.3"), (-0.5, "-0.5"),
                                              (float("nan"), "nan"), (float("inf"), "inf")])
def test_predict_outside_0_1_names_detector_plugin_method_and_video(value, shown):
    bad = type("BadPredictV", (BadPredict,), {"value": value})
    with temporary_plugin(_plugin(badpredict=bad), "bad-plugin"):
        det = get_plugins().detector("badpredict").create()
        with pytest.raises(DetectorOutputError) as e:
            det.evaluate(_Videos(), RunContext())
    assert str(e.value) == (
        f"detector 'badpredict' (plugin 'bad-plugin'): predict() returned score {shown} for "
        "video v1; scores must be probabilities in [0, 1] (apply a sigmoid)")
    assert e.value.exit_code == 1


def test_check_scores_names_the_method_and_counts_the_rest():
    out = {"score": np.full(3, 0.5), "score_a": np.array([0.1, 2.0, 3.0])}
    with pytest.raises(DetectorOutputError) as e:
        check_scores(out, 3, "detector 'x'", method="scores", ids=["a", "b", "c"])
    assert str(e.value) == ("detector 'x': scores() returned score_a 2 for video b (and 1 more "
                            "in this batch); scores must be probabilities in [0, 1] "
                            "(apply a sigmoid)")
    with pytest.raises(DetectorOutputError, match=r"scores\(\) returned score of shape \(2,\), "
                                                  r"expected \(3,\)"):
        check_scores({"score": np.zeros(2)}, 3, "detector 'x'", method="scores")
    with pytest.raises(DetectorOutputError, match="returned unknown key 'logit'"):
        check_scores({"score": np.zeros(3), "logit": np.zeros(3)}, 3, "detector 'x'")
    with pytest.raises(DetectorOutputError, match="returned no 'score'"):
        check_scores({"score_v": np.zeros(3)}, 3, "detector 'x'")
    check_scores({"score": np.array([0.0, 0.5, 1.0])}, 3, "detector 'x'")  # the edges are fine


def _torch_bad_scores():
    from torch import nn

    from avbench.torch_detector import TorchConfig, TorchDetector

    class BadScore(TorchDetector):
        Config = TorchConfig

        def input_spec(self):
            return InputSpec(frames=4, size=16, modalities=("audio",))

        def build_model(self):
            return nn.Linear(1, 1)

        def loss(self, model, batch):
            x = batch["audio"][:, :1]
            return model(x).pow(2).mean(), {}

        def scores(self, model, batch):  # a logit, not a probability
            return {"score": model(batch["audio"][:, :1])[:, 0] * 0 + 12.3}

    return BadScore


@pytest.mark.slow
@pytest.mark.parametrize(("name", "method"), [("badscore", "scores"), ("badpredict", "predict")])
def test_a_run_with_bad_scores_ends_in_one_line_blaming_the_plugin(synthetic_root, tmp_path,
                                                                   name, method):
    args = ["run", "-d", name, "-p", "cross-manip", "--fold", "RVFA", "--data",
            f"fakeavceleb={synthetic_root}", "--out", str(tmp_path), "--quiet", "--workers", "0"]
    if name == "badscore":
        args += ["--set", "epochs=1"]
    with temporary_plugin(_plugin(badscore=_torch_bad_scores(), badpredict=BadPredict), "x"):
        r = run_cli(args)
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: detector {name!r} (plugin 'x'): {method}() returned "
                               "score 12.3 for video "), lines[0]
    assert lines[0].endswith("; scores must be probabilities in [0, 1] (apply a sigmoid)")
    assert "internal error" not in r.output and "Traceback" not in r.output
