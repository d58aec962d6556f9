"""The speed paths (``avbench_avprompt._fast``, ``fast=True``) against the plain code of
``model.py`` (``fast=False``): each piece, and the whole network, forward and backward."""

from __future__ import annotations

import pytest
import torch
from avbench_avprompt import _fast
from avbench_avprompt.model import SequentialVisualPrompts, ShortTimeAudioPrompts
from avprompt_testkit import make_batch, make_detector


def test_fast_is_the_default_and_fast_false_builds_the_plain_modules():
    fast = make_detector("avprompt")
    assert fast.config.fast is True
    assert type(fast.model.visual) is _fast.FastVisualPrompts
    assert type(fast.model.audio) is _fast.FastAudioPrompts
    plain = make_detector("avprompt", fast=False)
    assert type(plain.model.visual) is SequentialVisualPrompts
    assert type(plain.model.audio) is ShortTimeAudioPrompts
    assert not _fast.uses_fused_attention(plain.model.visual.tower)
    assert _fast.uses_fused_attention(fast.model.visual.tower)
    # the same parameters, drawn in the same order: a state saved by one loads in the other
    a, b = fast.state_dict(), plain.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(
    "name", ["avprompt", "avprompt-vpt-replace", "avprompt-visual-only", "avprompt-audio-only"]
)
def test_the_fast_network_computes_the_plain_one_with_its_gradients(name):
    out = []
    for fast in (True, False):
        det = make_detector(name, n_vpt=2, fast=fast)
        batch = make_batch(det)
        model = det.model.train()
        loss, logs = det.loss(model, batch)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            scores = det.scores(model.eval(), batch)
        out.append((loss.detach(), logs, grads, scores))
    (loss_f, logs_f, grads_f, scores_f), (loss_p, logs_p, grads_p, scores_p) = out
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-5, atol=1e-6)
    assert logs_f == pytest.approx(logs_p, rel=1e-5, abs=1e-6)
    assert list(grads_f) == list(grads_p)
    for n in grads_f:
        assert grads_p[n].abs().sum() > 0, n
        torch.testing.assert_close(grads_f[n], grads_p[n], rtol=1e-4, atol=1e-6, msg=n)
    assert set(scores_f) == set(scores_p)
    for k in scores_f:
        torch.testing.assert_close(scores_f[k], scores_p[k], rtol=1e-5, atol=1e-6)


def test_fused_attention_computes_what_open_clip_does():
    det = make_detector("avprompt")
    vis = det.model.visual
    x = vis.embed(torch.randn(3, 3, 64, 64))
    block = vis.tower.transformer.resblocks[0]
    assert "forward" in block.attn.__dict__  # the fused path is installed
    xs = [x.detach().clone().requires_grad_(True) for _ in range(2)]
    fused = block(xs[0])
    with _fast.stock_attention(vis.tower):
        assert "forward" not in block.attn.__dict__
        stock = block(xs[1])
    assert "forward" in block.attn.__dict__
    torch.testing.assert_close(fused, stock)
    fused.square().sum().backward()
    stock.square().sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad)


@pytest.mark.parametrize("position", [0, 1, 5])
def test_a_block_at_one_position_is_the_whole_block_there_with_gradients(position):
    det = make_detector("avprompt", fast=False)  # the stock attention inside the block
    block = det.model.visual.tower.transformer.resblocks[-1]
    assert _fast.prunable(block)
    x = torch.randn(3, 9, det.model.visual.width)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    ours = _fast.block_at_one_position(block, xs[0], position)
    whole = block(xs[1])[:, position]
    torch.testing.assert_close(ours, whole, rtol=1e-5, atol=1e-5)
    weight = torch.linspace(-1, 1, ours.shape[-1])
    (ours * weight).sum().backward()
    (whole * weight).sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["avprompt", "avprompt-vpt-replace"])
def test_the_last_layer_at_position_1_matches_the_whole_layer_with_gradients(name):
    det = make_detector(name, n_vpt=2)
    vis = det.model.visual
    assert vis.prune_last
    images = torch.randn(3, 3, 64, 64)
    grads = []
    feats = []
    for prune in (True, False):
        vis.prune_last = prune
        vis.prompts.grad = None
        f = vis(images)
        (f * torch.linspace(-1, 1, f.shape[-1])).sum().backward()
        feats.append(f.detach())
        grads.append(vis.prompts.grad.clone())
    torch.testing.assert_close(feats[0], feats[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("keep", [1, 3])
def test_prompt_insertion_gives_autograds_gradients_bit_for_bit(keep):
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(4, 10, 8, generator=g, requires_grad=True)
        prompt = torch.randn(2, 8, generator=g, requires_grad=True)
        grad = torch.randn(4, 1 + 2 + 10 - keep, 8, generator=g).to(dtype)
        xd = x.to(dtype)
        ours = _fast.InsertPrompt.apply(xd, prompt, keep)
        plain = torch.cat([xd[:, :1], prompt.to(dtype).expand(4, -1, -1), xd[:, keep:]], dim=1)
        assert torch.equal(ours, plain)
        for a, b in zip(torch.autograd.grad(ours, (x, prompt), grad),
                        torch.autograd.grad(plain, (x, prompt), grad), strict=True):
            assert torch.equal(a, b)


def test_fast_prompt_insertion_is_the_plain_modules():
    fast = make_detector("avprompt-vpt-replace", n_vpt=2).model.visual
    plain = make_detector("avprompt-vpt-replace", n_vpt=2, fast=False).model.visual
    x = torch.randn(2, 1 + 2 + 16, fast.width)
    for layer in (0, 1):
        assert torch.equal(fast.insert_prompts(x, layer), plain.insert_prompts(x, layer))


def test_batched_log_mel_is_whispers_per_segment():
    import whisper

    fast = make_detector("avprompt-audio-only").model.audio
    plain = make_detector("avprompt-audio-only", fast=False).model.audio
    audio = torch.randn(3, 2560) * torch.tensor([[1e-3], [1.0], [0.1]])
    want = torch.stack([whisper.log_mel_spectrogram(a) for a in audio])
    torch.testing.assert_close(plain.log_mel(audio), want)
    torch.testing.assert_close(fast.log_mel(audio), want)
