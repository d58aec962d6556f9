"""The network on tiny towers: token counts (Eq. 6), shapes (Eqs. 10-13), what learns."""

from __future__ import annotations

import pytest
import torch
from avbench_avprompt.detector import count_parameters
from avprompt_testkit import make_batch, make_detector


def visual_token_counts(detector, batch) -> list[int]:
    """Sequence length entering each CLIP block, seen by forward pre-hooks on the blocks
    (with the last block run whole, as a module, so that its hook sees it too)."""
    model = detector.model
    model.visual.prune_last = False  # (fast only) run the last block whole
    lengths: list[int] = []
    axis = 1 if model.visual.batch_first else 0

    def hook(_module, args):
        lengths.append(args[0].shape[axis])

    blocks = model.visual.tower.transformer.resblocks
    handles = [b.register_forward_pre_hook(hook) for b in blocks]
    try:
        with torch.no_grad():
            model(video=batch["video"][:1], audio=batch["audio"][:1])
    finally:
        for h in handles:
            h.remove()
    assert len(lengths) == len(blocks)
    return lengths


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("n_vpt", [1, 3])
def test_sequential_prompts_grow_the_sequence_by_n_vpt_per_layer(n_vpt, fast):
    det = make_detector("avprompt", n_vpt=n_vpt, fast=fast)
    patches = det.model.visual.tower.positional_embedding.shape[0] - 1
    lengths = visual_token_counts(det, make_batch(det))
    # Eq. 6: before layer l the class token, l * N_vpt prompts and the N patches.
    assert lengths == [1 + (layer + 1) * n_vpt + patches for layer in range(len(lengths))]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("n_vpt", [1, 3])
def test_vpt_replace_keeps_the_length_constant(n_vpt, fast):
    det = make_detector("avprompt-vpt-replace", n_vpt=n_vpt, fast=fast)
    patches = det.model.visual.tower.positional_embedding.shape[0] - 1
    lengths = visual_token_counts(det, make_batch(det))
    assert lengths == [1 + n_vpt + patches] * len(lengths)


@pytest.mark.parametrize("fast", [True, False])
def test_frame_feature_is_the_newest_prompt_at_position_1(fast):
    det = make_detector("avprompt", frames=16, fast=fast)
    vis = det.model.visual
    images = torch.randn(2, 3, 64, 64)
    vis.prune_last = False  # (fast only) run the last layer whole, so that its hook sees it
    seen = {}
    last = vis.tower.transformer.resblocks[-1]
    handle = last.register_forward_hook(lambda _m, _a, out: seen.update(out=out))
    with torch.no_grad():
        feats = vis(images)
    handle.remove()
    out = seen["out"] if vis.batch_first else seen["out"].transpose(0, 1)
    torch.testing.assert_close(feats, vis.tower.ln_post(out[:, 1]))


def test_feature_shapes_at_16_frames():
    det = make_detector("avprompt", frames=16, fusion_dim=24)
    batch = make_batch(det, labels=(0, 1, 1))
    assert batch["audio"].shape == (3, 10240) and batch["video"].shape[1] == 16
    with torch.no_grad():
        out = det.model(video=batch["video"], audio=batch["audio"])
    d_v = det.model.visual.width
    d_a = det.model.audio.width
    assert out.f_v.shape == (3, 16, d_v)  # Eq. 10: T x D_v
    assert out.f_a.shape == (3, 32, d_a)  # Eq. 11: N_t / 2 = 32 tokens of 64 mel frames
    assert out.f_v_aligned.shape == (3, 16, 24)  # Eq. 12
    assert out.f_a_aligned.shape == (3, 16, 24)  # Eq. 13
    for logits in (out.logits_v, out.logits_a, out.logits_f):
        assert logits.shape == (3, 2)
    assert det.model.conv_a.kernel_size == (2,) and det.model.conv_a.stride == (2,)
    assert det.model.conv_v.kernel_size == (1,) and det.model.conv_v.stride == (1,)


def test_audio_log_mel_is_per_segment():
    # whisper clamps the log-mel 8 below its input's maximum: a loud segment in the batch
    # must not change a quiet one's spectrogram.
    det = make_detector("avprompt-audio-only")
    audio = det.model.audio
    quiet = 1e-3 * torch.randn(1, 2560)
    loud = torch.randn(1, 2560)
    alone = audio.log_mel(quiet)
    together = audio.log_mel(torch.cat([quiet, loud]))
    torch.testing.assert_close(together[:1], alone)
    assert alone.shape == (1, 80, 16)


def test_backbones_get_no_gradient_and_every_trainable_parameter_does():
    det = make_detector("avprompt")
    model = det.model.train()
    loss, logs = det.loss(model, make_batch(det))
    assert set(logs) == {"loss_v", "loss_a", "loss_f", "loss_cmfm"}
    loss.backward()
    for name, tower in model.backbones().items():
        for pname, p in tower.named_parameters():
            assert not p.requires_grad and p.grad is None, f"{name}.{pname} learns"
        assert not tower.training, f"{name} left eval mode"
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, p in trainable:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
        assert not name.startswith(("visual.tower.", "audio.encoder."))
    # What the paper trains: prompts, FC_l, the global token, alignment convs, three heads.
    assert set(count_parameters(model)["trainable_by_part"]) == {
        "visual.prompts",
        "audio.prompts",
        "audio.fc",
        "audio.global_token",
        "conv_v",
        "conv_a",
        "head_v",
        "head_a",
        "head_f",
    }


def test_fc_starts_as_identity_on_audio_tokens():
    det = make_detector("avprompt")
    audio = det.model.audio
    fc = audio.fc[0]
    tokens = torch.randn(2, 8, audio.width)
    zeros = torch.zeros(2, 8, audio.prompts.shape[-1])
    torch.testing.assert_close(fc(torch.cat([zeros, tokens], dim=-1)), tokens)


def test_scores_are_probabilities():
    det = make_detector("avprompt")
    with torch.no_grad():
        scores = det.scores(det.model.eval(), make_batch(det))
    assert set(scores) == {"score", "score_v", "score_a"}
    for v in scores.values():
        assert v.shape == (4,) and bool(((v >= 0) & (v <= 1)).all())


def test_learned_state_round_trips():
    det = make_detector("avprompt")
    state = det.state_dict()
    assert state and all(not k.startswith(("visual.tower.", "audio.encoder.")) for k in state)
    other = make_detector("avprompt")
    with torch.no_grad():
        for p in other.model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        torch.testing.assert_close(v, state[k])


def test_schedule_decays_at_epoch_12():
    det = make_detector("avprompt")
    optimizer, scheduler = det.configure_optimizers(det.model, steps_per_epoch=3)
    assert isinstance(optimizer, torch.optim.Adam)
    lrs = []
    for _epoch in range(15):  # the engine steps the scheduler after each epoch
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:11] == [pytest.approx(1e-4)] * 11  # epochs 1-11
    assert lrs[11:] == [pytest.approx(1e-5)] * 4  # epochs 12-15
    trainable = {id(p) for p in det.model.parameters() if p.requires_grad}
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == trainable
