"""Paired significance tests for two detectors scored on the same test videos.

Both tests take per-video ``labels`` (1 = fake, the positive class; 0 = real) and two score
arrays aligned with them (``scores_a[i]`` and ``scores_b[i]`` are the two detectors' scores
of the same video ``i``). Differences are always ``a - b``.

- :func:`delong` is the DeLong, DeLong and Clarke-Pearson (1988) test for the difference of
  two correlated ROC AUCs. Each detector's AUC is the mean of the Mann-Whitney kernel
  ``psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise`` over (fake ``x``, real ``y``) pairs.
  Its placement values are ``V10[i]`` (for fake ``i``: the share of reals it out-scores,
  ties counting half) and ``V01[j]`` (for real ``j``: the share of fakes that out-score it).
  With ``S10`` and ``S01`` the 2x2 sample covariances (denominator ``k - 1``) of the two
  detectors' placement values over the ``m`` fakes and the ``n`` reals, the variance of the
  AUC difference is ``c' S10 c / m + c' S01 c / n`` with ``c = (1, -1)``, and
  ``z = diff / se`` is referred to the standard normal (two-sided ``p``). Placement values
  come from sorted arrays and binary search, ``O(N log N)``.
- :func:`paired_bootstrap` works for any metric ``metric(labels, scores) -> float``: it
  resamples videos with replacement (fakes and reals separately, so every resample keeps
  the test split's class counts and every metric stays defined), applies the same resample
  to both detectors, and reports the observed difference, the 2.5 and 97.5 percentiles of
  the resampled differences and a two-sided bootstrap p-value. It is seeded through a
  ``numpy.random.Generator``: the same inputs and seed give the same numbers.

Both raise :class:`ValueError` on inputs they cannot test: lengths that differ, labels other
than 0/1, one class only, or scores that are not finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DeLongResult:
    """Outcome of :func:`delong`; ``diff = auc_a - auc_b``, ``p`` two-sided.

    ``se == 0`` happens only when neither detector's placement values vary (for example
    both separate the classes perfectly); then ``z`` is 0 and ``p`` 1 if the AUCs are equal,
    and ``z`` is +/-inf and ``p`` 0 if they differ.
    """

    auc_a: float
    auc_b: float
    diff: float
    se: float
    z: float
    p: float
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(labels: Any, scores_a: Any, scores_b: Any) -> tuple[np.ndarray, ...]:
    y = np.asarray(labels)
    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    for name, arr in (("labels", y), ("scores_a", a), ("scores_b", b)):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not (len(y) == len(a) == len(b)):
        raise ValueError(
            f"labels, scores_a and scores_b must have one entry per video, got lengths "
            f"{len(y)}, {len(a)} and {len(b)}"
        )
    if len(y) and not np.isin(y, (0, 1)).all():
        bad = sorted({str(v) for v in np.unique(y) if v not in (0, 1)})[:3]
        raise ValueError(f"labels must be 0 (real) or 1 (fake), found {', '.join(bad)}")
    y = y.astype(np.int64)
    for name, arr in (("scores_a", a), ("scores_b", b)):
        if not np.isfinite(arr).all():
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(f"{name} has a non-finite score at position {i} ({arr[i]})")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        only = "fake" if n_pos else "real"
        raise ValueError(
            f"a paired test needs both classes, the labels hold {len(y)} video(s), all {only}"
        )
    return y, a, b


def placements(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """DeLong placement values ``(V10 over fakes, V01 over reals)`` of one detector.

    ``V10[i]`` is the share of reals that fake ``i`` out-scores and ``V01[j]`` the share of
    fakes that out-score real ``j``, ties counting half; the AUC is the mean of either.
    """
    y = np.asarray(labels).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64)
    pos = s[y == 1]
    neg = s[y == 0]
    neg_sorted = np.sort(neg)
    pos_sorted = np.sort(pos)
    # reals strictly below, plus half of the reals equal to, each fake score
    below = np.searchsorted(neg_sorted, pos, side="left")
    at_or_below = np.searchsorted(neg_sorted, pos, side="right")
    v10 = (below + at_or_below) / 2.0 / len(neg)
    # fakes strictly above, plus half of the fakes equal to, each real score
    f_below = np.searchsorted(pos_sorted, neg, side="left")
    f_at_or_below = np.searchsorted(pos_sorted, neg, side="right")
    v01 = (len(pos) - (f_below + f_at_or_below) / 2.0) / len(pos)
    return v10, v01


def _two_sided_p(z: float) -> float:
    if math.isinf(z):
        return 0.0
    return float(math.erfc(abs(z) / math.sqrt(2.0)))


def delong(labels: Any, scores_a: Any, scores_b: Any) -> DeLongResult:
    """Paired DeLong test of ``AUC(scores_a) - AUC(scores_b)`` on the same videos."""
    y, a, b = _check(labels, scores_a, scores_b)
    v10a, v01a = placements(y, a)
    v10b, v01b = placements(y, b)
    m, n = len(v10a), len(v01a)
    auc_a = float(v10a.mean())
    auc_b = float(v10b.mean())
    diff = auc_a - auc_b
    # variance of the difference of placement values = c' S c with c = (1, -1)
    d10 = v10a - v10b
    d01 = v01a - v01b
    var10 = float(np.var(d10, ddof=1)) if m > 1 else 0.0
    var01 = float(np.var(d01, ddof=1)) if n > 1 else 0.0
    var = var10 / m + var01 / n
    se = math.sqrt(max(var, 0.0))
    if se > 0:
        z = diff / se
    elif diff == 0:
        z = 0.0
    else:
        z = math.copysign(math.inf, diff)
    return DeLongResult(auc_a, auc_b, diff, se, float(z), _two_sided_p(z), m, n)


def paired_bootstrap(
    labels: Any,
    scores_a: Any,
    scores_b: Any,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """Paired, class-stratified bootstrap of ``metric(a) - metric(b)``.

    Returns ``(diff, lo, hi, p)``: the observed difference on all videos, the 2.5 and 97.5
    percentiles of the ``n_boot`` resampled differences, and the two-sided p-value
    ``min(1, 2 * min((1 + #{d <= 0}) / (n_boot + 1), (1 + #{d >= 0}) / (n_boot + 1)))``.
    """
    y, a, b = _check(labels, scores_a, scores_b)
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    n_boot = int(n_boot)

    def value(yy: np.ndarray, ss: np.ndarray, which: str) -> float:
        v = metric(yy, ss)
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"metric returned {v!r} for scores_{which}; it must be a finite number")
        return float(v)

    diff = value(y, a, "a") - value(y, b, "b")
    rng = np.random.default_rng(seed)
    pos_idx = np.flatnonzero(y == 1)
    neg_idx = np.flatnonzero(y == 0)
    diffs = np.empty(n_boot, dtype=np.float64)
    for k in range(n_boot):
        idx = np.concatenate([
            pos_idx[rng.integers(0, len(pos_idx), size=len(pos_idx))],
            neg_idx[rng.integers(0, len(neg_idx), size=len(neg_idx))],
        ])
        diffs[k] = value(y[idx], a[idx], "a") - value(y[idx], b[idx], "b")
    lo, hi = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
    le = (1 + int(np.sum(diffs <= 0))) / (n_boot + 1)
    ge = (1 + int(np.sum(diffs >= 0))) / (n_boot + 1)
    p = min(1.0, 2.0 * min(le, ge))
    return float(diff), lo, hi, float(p)
