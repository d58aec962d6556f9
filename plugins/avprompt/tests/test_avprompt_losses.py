"""The CMFM loss (Eqs. 14-15) against a direct loop over all pairs, and on hand-made cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from avbench_avprompt.losses import cmfm_loss, segment_cmfm_loss


def loop_cmfm(f_v, f_a, labels, alpha=2.0, beta=2.0, gamma=1.0):
    """Eqs. 14-15 written out: every (m, p, n, q), then mean(l > 0) + mean(l < 0)."""
    b, t, _ = f_v.shape
    pos, neg = [], []
    for m in range(b):
        for p in range(t):
            for n in range(b):
                for q in range(t):
                    # cosine distance, in [0, 2] (clamped against rounding)
                    d = (1.0 - F.cosine_similarity(f_v[m, p], f_a[n, q], dim=0)).clamp(min=0)
                    if m == n and labels[m] == 0 and p == q:
                        val = alpha * d
                    elif m == n and labels[m] == 1:
                        val = -beta * d
                    elif m != n:
                        val = -gamma * d
                    else:
                        val = torch.zeros(())
                    if val > 0:
                        pos.append(val)
                    elif val < 0:
                        neg.append(val)
    mean = lambda xs: torch.stack(xs).mean() if xs else torch.zeros(())  # noqa: E731
    return mean(pos) + mean(neg)


@pytest.mark.parametrize(
    "labels, weights",
    [
        ((0, 1, 0), (2.0, 2.0, 1.0)),
        ((1, 1, 0, 0), (2.0, 2.0, 1.0)),
        ((0, 0), (0.5, 3.0, 1.5)),
        ((1, 0, 1), (1.0, 0.0, 2.0)),
    ],
)
def test_matches_loop_over_pairs(labels, weights):
    g = torch.Generator().manual_seed(len(labels))
    f_v = torch.randn(len(labels), 3, 5, generator=g)
    f_a = torch.randn(len(labels), 3, 5, generator=g)
    y = torch.tensor(labels)
    got = cmfm_loss(f_v, f_a, y, *weights)
    want = loop_cmfm(f_v, f_a, y, *weights)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_matched_real_features_leave_only_the_negative_part():
    # Real segments whose audio and video features agree frame by frame: every alpha pair has
    # D = 0, so the positive set is empty and the loss is the mean of the negative l.
    g = torch.Generator().manual_seed(1)
    f = torch.randn(3, 4, 6, generator=g)
    y = torch.zeros(3, dtype=torch.long)
    loss = cmfm_loss(f, f.clone(), y)
    torch.testing.assert_close(loss, loop_cmfm(f, f, y))
    assert loss < 0


def test_all_identical_real_features_give_zero():
    f = torch.ones(2, 3, 4)
    assert cmfm_loss(f, f, torch.tensor([0, 0])).item() == pytest.approx(0.0, abs=1e-6)


def test_single_real_segment_has_no_negative_pairs():
    # B = 1, real: only the p = q pairs count (alpha * D); no m != n, no fake pair.
    f_v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    f_a = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])  # frame 0 orthogonal (D = 1), frame 1 equal
    loss = cmfm_loss(f_v, f_a, torch.tensor([0]))
    assert loss.item() == pytest.approx(2.0 * 1.0)  # mean over the one positive value


def test_single_fake_segment_has_no_positive_pairs():
    f_v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    f_a = torch.tensor([[[-1.0, 0.0], [0.0, -1.0]]])
    # every (p, q): D = [[2, 1], [1, 2]] -> mean D = 1.5, times -beta
    loss = cmfm_loss(f_v, f_a, torch.tensor([1]))
    assert loss.item() == pytest.approx(-2.0 * 1.5)


def test_pairs_at_distance_zero_count_in_neither_mean():
    # N_l^- counts values below zero: the fake pair (v0, a1) at D = 0 is not averaged in.
    f_v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    f_a = torch.tensor([[[-1.0, 0.0], [1.0, 0.0]]])  # D = [[2, 0], [1, 1]]
    loss = cmfm_loss(f_v, f_a, torch.tensor([1]))
    assert loss.item() == pytest.approx(-2.0 * (2 + 1 + 1) / 3)


def test_gradients_flow_to_both_modalities():
    f_v = torch.randn(3, 4, 8, requires_grad=True)
    f_a = torch.randn(3, 4, 8, requires_grad=True)
    cmfm_loss(f_v, f_a, torch.tensor([0, 1, 0])).backward()
    assert f_v.grad.abs().sum() > 0 and f_a.grad.abs().sum() > 0


def test_segment_level_averages_over_time_first():
    g = torch.Generator().manual_seed(3)
    f_v = torch.randn(4, 5, 6, generator=g)
    f_a = torch.randn(4, 5, 6, generator=g)
    y = torch.tensor([0, 1, 0, 1])
    got = segment_cmfm_loss(f_v, f_a, y)
    want = loop_cmfm(f_v.mean(1, keepdim=True), f_a.mean(1, keepdim=True), y)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, cmfm_loss(f_v, f_a, y))


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        cmfm_loss(torch.randn(2, 3, 4), torch.randn(2, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        cmfm_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.tensor([0, 1, 1]))
