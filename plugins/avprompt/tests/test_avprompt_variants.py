"""The registered names: their table rows, and how each variant differs from the full model."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
import torch
from avbench_avprompt.losses import segment_cmfm_loss
from avprompt_testkit import make_batch, make_detector, registered, train_step

from avbench.errors import ConfigError

NAMES = [
    "avprompt",
    "avprompt-audio-only",
    "avprompt-visual-only",
    "avprompt-no-cmfm",
    "avprompt-no-la",
    "avprompt-no-lv",
    "avprompt-vpt-replace",
    "avprompt-segment-loss",
]


def test_the_ablation_tables_rows_are_these_configurations():
    """Tables 4 and 5 name their rows' detectors (protocols/tables/); each named detector
    is registered, and Table 4's check marks are what its resolved config does."""
    from avbench.tables.build import table_specs

    items = registered().items
    specs = table_specs()
    table4 = dict(specs[4].rows)
    table5 = dict(specs[5].rows)
    assert set(table4) | set(table5) <= set(items)
    assert set(table4) | set(table5) == set(NAMES)  # every variant fills a row
    for name, text in table4.items():
        cfg = make_detector(name).config
        assert (cfg.audio_branch, cfg.visual_branch, cfg.cmfm != "off") == (
            text["Audio Branch"], text["Visual Branch"], text["L_CMFM"]), name
        # Table 3's modality column follows the branches
        want = {(True, True): "AV", (True, False): "A", (False, True): "V"}
        assert items[name].modality == want[(cfg.audio_branch, cfg.visual_branch)], name
    full = make_detector("avprompt").config
    for name in table5:
        cfg = make_detector(name).config
        changed = {k for k in vars(full) if getattr(cfg, k) != getattr(full, k)}
        assert changed == set(items[name].defaults), name
    # One class for all: the variants are configurations, not copies.
    assert {items[n].factory for n in NAMES} == {"avbench_avprompt.detector:AVPromptDetector"}


def test_the_plugin_module_does_not_import_torch():
    code = (
        "import sys, avbench_avprompt.plugin as p; from avbench.registry import DetectorRegister;"
        " r = DetectorRegister(); p.avbench_register_detectors(r);"
        " assert len(r.items) == 8; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entry_point_is_declared():
    try:
        eps = metadata.entry_points(group="avbench")
    except Exception:  # pragma: no cover
        eps = []
    names = {ep.name: ep.value for ep in eps}
    if "avprompt" not in names:
        pytest.skip("avbench-avprompt is not installed (pip install -e plugins/avprompt)")
    assert names["avprompt"] == "avbench_avprompt.plugin"


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_trains_a_step(name):
    det = make_detector(name)
    batch = make_batch(det)
    before = {k: v.clone() for k, v in det.state_dict().items()}
    loss, logs = train_step(det, batch)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(sum(logs.values()), rel=1e-5, abs=1e-6)  # Eq. 16
    after = det.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == list(before), f"not updated: {set(before) - set(changed)}"
    with torch.no_grad():
        scores = det.scores(det.model.eval(), batch)
    assert all(bool(((s >= 0) & (s <= 1)).all()) for s in scores.values())


def _trainable_parts(det) -> set[str]:
    return {n.split(".")[0] for n, p in det.model.named_parameters() if p.requires_grad}


def test_audio_only_has_no_visual_part_and_reads_no_video():
    det = make_detector("avprompt-audio-only")
    assert det.input_spec().modalities == ("audio",)
    assert det.model.visual is None and "clip" not in det.model.backbones()
    assert _trainable_parts(det) == {"audio", "head_a"}
    batch = make_batch(det)
    assert "video" not in batch
    _, logs = train_step(det, batch)
    assert set(logs) == {"loss_a"}
    with torch.no_grad():
        scores = det.scores(det.model.eval(), batch)
    assert set(scores) == {"score", "score_a"}
    torch.testing.assert_close(scores["score"], scores["score_a"])
    assert "clip" not in det.describe()["provenance"]


def test_visual_only_has_no_audio_part_and_reads_no_audio():
    det = make_detector("avprompt-visual-only")
    assert det.input_spec().modalities == ("video",)
    assert det.model.audio is None and "whisper" not in det.model.backbones()
    assert _trainable_parts(det) == {"visual", "head_v"}
    batch = make_batch(det)
    assert "audio" not in batch
    _, logs = train_step(det, batch)
    assert set(logs) == {"loss_v"}
    with torch.no_grad():
        scores = det.scores(det.model.eval(), batch)
    assert set(scores) == {"score", "score_v"}
    torch.testing.assert_close(scores["score"], scores["score_v"])


def test_full_model_head_a_learns_from_l_a_only():
    # Why "w/o L_a" drops the audio head: nothing but L_a reaches it.
    det = make_detector("avprompt")
    model = det.model.train()
    out = model(video=make_batch(det)["video"], audio=make_batch(det)["audio"])
    others = out.logits_f.sum() + out.logits_v.sum() + out.f_v_aligned.sum() + out.f_a_aligned.sum()
    others.backward()
    assert all(p.grad is None for p in model.head_a.parameters())


@pytest.mark.parametrize(
    "name, missing_head, missing_loss, missing_score",
    [
        ("avprompt-no-la", "head_a", "loss_a", "score_a"),
        ("avprompt-no-lv", "head_v", "loss_v", "score_v"),
    ],
)
def test_no_la_and_no_lv_drop_one_task(name, missing_head, missing_loss, missing_score):
    full = make_detector("avprompt")
    det = make_detector(name)
    assert getattr(det.model, missing_head) is None
    assert _trainable_parts(full) - _trainable_parts(det) == {missing_head}
    batch = make_batch(det)
    _, logs = train_step(det, batch)
    assert set(logs) == {"loss_v", "loss_a", "loss_f", "loss_cmfm"} - {missing_loss}
    # Both branches still learn, through L_f and L_CMFM.
    for branch in (det.model.visual, det.model.audio):
        assert branch.prompts.grad is not None and branch.prompts.grad.abs().sum() > 0
    with torch.no_grad():
        scores = det.scores(det.model.eval(), batch)
    assert missing_score not in scores and "score" in scores


def test_no_cmfm_drops_only_the_matching_loss():
    full, det = make_detector("avprompt"), make_detector("avprompt-no-cmfm")
    assert _trainable_parts(full) == _trainable_parts(det)
    _, logs = train_step(det, make_batch(det))
    assert set(logs) == {"loss_v", "loss_a", "loss_f"}


def test_segment_loss_matches_time_averaged_features():
    det = make_detector("avprompt-segment-loss")
    batch = make_batch(det)
    model = det.model.train()
    _, logs = det.loss(model, batch)
    with torch.no_grad():
        out = model(video=batch["video"], audio=batch["audio"])
        want = segment_cmfm_loss(out.f_v_aligned, out.f_a_aligned, batch["label"], 2.0, 2.0, 1.0)
    assert logs["loss_cmfm"] == pytest.approx(want.item(), rel=1e-5)


def test_vpt_replace_has_the_same_parameters_as_the_full_model():
    full, det = make_detector("avprompt"), make_detector("avprompt-vpt-replace")
    assert full.describe()["parameters"] == det.describe()["parameters"]
    assert det.model.visual.mode == "replace" and full.model.visual.mode == "sequential"


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("avprompt-audio-only", {"cmfm": "frame"}),
        ("avprompt-audio-only", {"loss_a": False}),
        ("avprompt-visual-only", {"loss_v": False}),
        ("avprompt", {"audio_branch": False, "visual_branch": False}),
        ("avprompt", {"backbone": "tiny", "clip_weights": "openai"}),
        ("avprompt", {"n_vpt": 0}),
    ],
)
def test_impossible_settings_are_config_errors(name, overrides):
    with pytest.raises(ConfigError):
        registered().items[name].create(overrides)
