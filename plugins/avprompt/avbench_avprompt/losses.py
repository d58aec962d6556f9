"""The frame-level cross-modal feature matching (CMFM) loss, Eqs. 14-15 of the paper.

Every visual frame feature f'_{v,m,p} (segment m, frame p) is paired with every audio frame
feature f'_{a,n,q} of the mini-batch, and each pair gets a signed, weighted cosine distance
D = 1 - cos (Eq. 15):

====================================  ==================  =====================================
pair                                  l_{mp,nq}           meaning
====================================  ==================  =====================================
m = n, segment m real, p = q          +alpha * D          matched audio and video: pull together
m = n, segment m fake (every p, q)    -beta * D           manipulated: push apart
m != n (every p, q)                   -gamma * D          naturally mismatched: push apart
m = n, segment m real, p != q         0                   not used
====================================  ==================  =====================================

The loss (Eq. 14) is the mean of the positive l plus the mean of the negative l, where N_l^+
(N_l^-) counts the values greater (less) than zero; a set with no member contributes 0. (The
"max(" that opens Eq. 14 in the text version of the paper is an extraction artefact.) Since
D >= 0, the positive values are exactly the matched real pairs with D > 0 and the negative ones
the pushed-apart pairs with D > 0: a pair at distance exactly 0 (identical directions) counts in
neither mean, as the paper's definition of N_l^+ and N_l^- implies.

Everything is computed on one (B T) x (B T) distance matrix: no loops over pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def pair_weights(
    labels: Tensor, frames: int, alpha: float = 2.0, beta: float = 2.0, gamma: float = 1.0
) -> Tensor:
    """The signed weights of Eq. 15 for rows (m, p) and columns (n, q): (B T, B T).

    ``labels`` (B,) is 1 for a fake segment; rows and columns are ordered segment-major
    (index m * T + p), as ``f.reshape(B * T, D)`` orders them.
    """
    b = labels.shape[0]
    device = labels.device
    segment = torch.arange(b, device=device).repeat_interleave(frames)  # m of each row
    frame = torch.arange(frames, device=device).repeat(b)  # p of each row
    same_segment = segment[:, None] == segment[None, :]
    same_frame = frame[:, None] == frame[None, :]
    fake = (labels != 0)[segment][:, None]  # y_m, broadcast along the columns

    weights = torch.zeros(b * frames, b * frames, device=device)
    weights = torch.where(same_segment & same_frame & ~fake, alpha, weights)
    weights = torch.where(same_segment & fake, -beta, weights)
    return torch.where(~same_segment, -gamma, weights)


def cmfm_loss(
    f_v: Tensor,
    f_a: Tensor,
    labels: Tensor,
    alpha: float = 2.0,
    beta: float = 2.0,
    gamma: float = 1.0,
) -> Tensor:
    """L_CMFM (Eqs. 14-15) on aligned frame-level features.

    Args:
        f_v: visual features f'_v, (B, T, D).
        f_a: audio features f'_a, (B, T, D), aligned with ``f_v`` frame by frame.
        labels: (B,), 1 = fake segment (the video label ``label``), 0 = real.
        alpha, beta, gamma: the weights of Eq. 15 (2, 2, 1 in the paper).

    Returns:
        a scalar: mean of the positive l plus mean of the negative l (empty set -> 0).
    """
    if f_v.shape != f_a.shape or f_v.ndim != 3:
        raise ValueError(
            f"f_v {tuple(f_v.shape)} and f_a {tuple(f_a.shape)} must both be (B, T, D)"
        )
    b, t, d = f_v.shape
    if labels.shape != (b,):
        raise ValueError(f"labels of shape {tuple(labels.shape)}, expected ({b},)")
    # Distances in fp32 even under autocast: a cosine close to 1 is what the loss works on.
    with torch.autocast(device_type=f_v.device.type, enabled=False):
        v = F.normalize(f_v.float().reshape(b * t, d), dim=-1)
        a = F.normalize(f_a.float().reshape(b * t, d), dim=-1)
        # D(f'_{v,m,p}, f'_{a,n,q}) at [m T + p, n T + q]; clamped to its range [0, 2] so that
        # rounding (a cosine of 1 + 1e-7) cannot flip a matched pair into the negative set.
        distance = (1.0 - v @ a.T).clamp(min=0.0)
        values = pair_weights(labels, t, alpha, beta, gamma) * distance  # l_{mp,nq}
        positive = values > 0
        negative = values < 0
        zero = values.new_zeros(())
        loss_pos = torch.where(positive, values, zero).sum() / positive.sum().clamp(min=1)
        loss_neg = torch.where(negative, values, zero).sum() / negative.sum().clamp(min=1)
    return loss_pos + loss_neg


def segment_cmfm_loss(
    f_v: Tensor,
    f_a: Tensor,
    labels: Tensor,
    alpha: float = 2.0,
    beta: float = 2.0,
    gamma: float = 1.0,
) -> Tensor:
    """The segment-level variant (Table 5, "segment-level loss").

    Features are averaged over time first, so each segment has one visual and one audio
    feature (then p = q trivially), and :func:`cmfm_loss` is applied to them.
    """
    return cmfm_loss(
        f_v.mean(dim=1, keepdim=True), f_a.mean(dim=1, keepdim=True), labels, alpha, beta, gamma
    )
