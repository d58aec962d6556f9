"""Video-level metrics with seeded bootstrap intervals.

Acc uses the 0.5 threshold on P(fake); AP and AUC come from scikit-learn. Per-modality
metrics (``acc_v``/``auc_v`` against ``label_v``, ``acc_a``/``auc_a`` against ``label_a``)
are computed where the detector gave ``score_v``/``score_a``. A metric that is undefined on
the data (AUC or AP with one class only) is reported as undefined with the reason, never as
a made-up number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS = ("acc", "ap", "auc", "acc_v", "auc_v", "acc_a", "auc_a")
_SPEC = {
    "acc": ("score", "label", "acc"),
    "ap": ("score", "label", "ap"),
    "auc": ("score", "label", "auc"),
    "acc_v": ("score_v", "label_v", "acc"),
    "auc_v": ("score_v", "label_v", "auc"),
    "acc_a": ("score_a", "label_a", "acc"),
    "auc_a": ("score_a", "label_a", "auc"),
}
THRESHOLD = 0.5


@dataclass
class Metric:
    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int = 0
    undefined: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci95": [self.lo, self.hi], "n": self.n,
                "undefined": self.undefined}


def _point(kind: str, y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if kind == "acc":
        return float(np.mean((s >= THRESHOLD).astype(int) == y))
    if len(np.unique(y)) < 2:
        return None
    if kind == "auc":
        return float(roc_auc_score(y, s))
    return float(average_precision_score(y, s))


def _batch_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUC of each row (Mann-Whitney with average ranks for ties); NaN where one class."""
    from scipy.stats import rankdata

    ranks = rankdata(s, axis=1)
    pos = y.sum(axis=1).astype(np.float64)
    neg = y.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * y).sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)
    auc[(pos == 0) | (neg == 0)] = np.nan
    return auc


def _batch_ap(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Average precision of each row, as scikit-learn defines it (steps at distinct scores)."""
    order = np.argsort(-s, axis=1, kind="stable")
    ss = np.take_along_axis(s, order, axis=1)
    ys = np.take_along_axis(y, order, axis=1).astype(np.float64)
    tp = np.cumsum(ys, axis=1)
    n = s.shape[1]
    last_of_tie = np.ones_like(ss, dtype=bool)
    last_of_tie[:, :-1] = ss[:, :-1] != ss[:, 1:]
    tp_at = np.where(last_of_tie, tp, 0.0)
    prev = np.zeros_like(tp_at)
    prev[:, 1:] = np.maximum.accumulate(tp_at, axis=1)[:, :-1]
    pos = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        contrib = last_of_tie * (tp - prev) * tp / np.arange(1, n + 1)
        ap = contrib.sum(axis=1) / pos
    ap[(pos == 0) | (pos == n)] = np.nan
    return ap


def _batch(kind: str, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    if kind == "acc":
        return ((s >= THRESHOLD).astype(np.int64) == y).mean(axis=1)
    if kind == "auc":
        return _batch_auc(y, s)
    return _batch_ap(y, s)


def compute_metrics(
    labels: dict[str, np.ndarray],
    scores: dict[str, np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    which: tuple[str, ...] = METRICS,
) -> dict[str, Metric]:
    """Metrics of per-video ``scores`` against ``labels`` (dicts of equal-length arrays).

    The bootstrap resamples videos with replacement ``n_boot`` times from ``seed``; the same
    resample indices serve every metric, and resamples in which a metric is undefined (one
    class drawn) are left out of that metric's interval.
    """
    out: dict[str, Metric] = {}
    n = len(next(iter(labels.values()))) if labels else 0
    rng = np.random.default_rng(seed)
    boot_idx = rng.integers(0, n, size=(n_boot, n)) if n and n_boot else None
    for name in which:
        skey, lkey, kind = _SPEC[name]
        if skey not in scores or lkey not in labels:
            continue
        s = np.asarray(scores[skey], dtype=np.float64)
        y = np.asarray(labels[lkey], dtype=np.int64)
        ok = np.isfinite(s)
        if not ok.all():
            s, y = s[ok], y[ok]
        if len(s) == 0:
            out[name] = Metric(None, n=0, undefined="no scores")
            continue
        value = _point(kind, y, s)
        if value is None:
            only = "fake" if y[0] == 1 else "real"
            out[name] = Metric(None, n=len(s), undefined=f"one class only ({only})")
            continue
        lo = hi = None
        if boot_idx is not None and ok.all():
            vals = _batch(kind, y[boot_idx], s[boot_idx])
            vals = vals[np.isfinite(vals)]
            if len(vals):
                lo, hi = (float(x) for x in np.percentile(vals, [2.5, 97.5]))
        out[name] = Metric(value, lo, hi, n=len(s))
    return out


def metrics_from_frame(df: Any, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Metric]:
    """Metrics from a scores table (the columns of ``scores.csv``)."""
    labels = {k: df[k].to_numpy() for k in ("label", "label_v", "label_a") if k in df}
    scores = {}
    for k in ("score", "score_v", "score_a"):
        if k in df and df[k].notna().any():
            scores[k] = df[k].to_numpy(dtype=float)
    return compute_metrics(labels, scores, n_boot=n_boot, seed=seed)
