"""avprompt's floor for ``avbench bench``: the frozen towers alone, and its references."""

from __future__ import annotations

import pytest
import torch
from avprompt_testkit import make_batch, make_detector


def floors_of(det):
    return {f.name: f for f in det.bench_floors(det.model)}


def test_the_floor_is_the_towers_with_learnable_inputs_that_backward_reaches():
    det = make_detector("avprompt")
    floors = det.bench_floors(det.model)
    assert [f.name for f in floors] == [
        "frozen towers", "frozen towers, open_clip's stock attention",
        "frozen towers, the last CLIP layer at the class token alone"]
    assert [f.timed for f in floors] == [True, True, False]
    floor = floors[0]
    learns = {n for n, p in floor.module.named_parameters() if p.requires_grad}
    assert learns == {"delta_v", "delta_a"}
    floor.loss(make_batch(det)).backward()
    for n in learns:
        assert floor.module.get_parameter(n).grad.abs().sum() > 0, n
    # the towers are avprompt's own modules, still frozen
    assert floor.module.tower is det.model.visual.tower
    assert floor.module.encoder is det.model.audio.encoder
    assert all(p.grad is None for p in det.model.visual.tower.parameters())


def test_the_floors_references_compute_the_floors_features():
    det = make_detector("avprompt")
    floors = det.bench_floors(det.model)
    batch = make_batch(det)
    with torch.no_grad():
        outs = [f.forward(batch) for f in floors]
        losses = [f.loss(batch) for f in floors]
    # the bare forward is open_clip's own VisionTransformer.forward and whisper's blocks
    images = det.model.images(batch["video"])
    with torch.no_grad():
        torch.testing.assert_close(outs[0][0], det.model.visual.tower(images))
    for out, loss in zip(outs[1:], losses[1:], strict=True):
        for a, b in zip(out, outs[0], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loss, losses[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "overrides", "learns", "names"),
    [
        ("avprompt", {"fast": False}, {"delta_v", "delta_a"}, 2),  # no fused attention to undo
        ("avprompt-audio-only", {}, {"delta_a"}, 1),
        ("avprompt-visual-only", {}, {"delta_v"}, 3),
    ],
)
def test_floors_of_other_configurations(name, overrides, learns, names):
    det = make_detector(name, **overrides)
    floors = det.bench_floors(det.model)
    assert len(floors) == names
    assert {n for n, p in floors[0].module.named_parameters() if p.requires_grad} == learns
    batch = make_batch(det)
    assert floors[0].loss(batch).ndim == 0
    with torch.no_grad():
        assert len(floors[0].forward(batch)) == len(learns)
