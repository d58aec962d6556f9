"""The numbers of a report besides its tables: metrics with bootstrap intervals per run, and
paired significance tests between the detectors of one fold.

Metrics are those of ``avbench table`` (:func:`avbench.metrics.metrics_from_frame`, the
same resamples and seed as ``avbench table --ci``), per modality where a run wrote
``score_v`` / ``score_a``. Two runs are compared only on the same test videos: their
recorded test-split hashes must be equal, and the scores are paired by (dataset, id). The
AUC difference is tested with DeLong's test, the AP difference with a paired,
class-stratified bootstrap (:mod:`avbench.significance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avbench.metrics import METRICS
from avbench.tables.build import BOOT_SEED, METRIC_NAMES, N_BOOT

#: the columns of a report's metrics table, in order
METRIC_ORDER = tuple(m for m in ("acc", "ap", "auc", "acc_v", "auc_v", "acc_a", "auc_a")
                     if m in METRICS)
METRIC_LABELS = METRIC_NAMES


def run_metrics(scores: Any) -> dict[str, Any]:
    """Every metric of one run's ``scores.csv`` with its 95% bootstrap interval."""
    from avbench.metrics import metrics_from_frame

    return metrics_from_frame(scores, n_boot=N_BOOT, seed=BOOT_SEED)


@dataclass
class Comparison:
    """Detector ``a`` against ``b`` on one fold: the DeLong test of the AUC difference and the
    paired bootstrap of the AP difference (``a - b``), or ``reason`` why they were not
    tested."""

    a: str
    b: str
    n: int = 0
    auc_a: float | None = None
    auc_b: float | None = None
    auc_diff: float | None = None
    auc_se: float | None = None
    auc_z: float | None = None
    auc_p: float | None = None
    ap_diff: float | None = None
    ap_lo: float | None = None
    ap_hi: float | None = None
    ap_p: float | None = None
    reason: str | None = None


def _test_hash(run: Any) -> str | None:
    test = run.splits.get("test") if isinstance(run.splits, dict) else None
    h = test.get("hash") if isinstance(test, dict) else None
    return h if isinstance(h, str) and h else None


def paired(a: Any, b: Any) -> tuple[Any, Any, Any] | str:
    """``(labels, scores of a, scores of b)`` over the videos both runs scored, paired by
    (dataset, id) in id order; or the reason the two runs cannot be paired."""
    from avbench.tables.compare import paired_scores

    ha, hb = _test_hash(a.run), _test_hash(b.run)
    if ha is None or hb is None or ha != hb:
        return (f"different test videos (test split hash {ha or 'none'} against "
                f"{hb or 'none'})")
    return paired_scores(a.scores, b.scores)


def _average_precision(y: Any, s: Any) -> float:
    """scikit-learn's average precision (tests/test_metrics.py checks the two agree), in
    numpy: the bootstrap calls it a thousand times per pair."""
    import numpy as np

    from avbench.metrics import _batch_ap

    return float(_batch_ap(np.asarray(y)[None, :], np.asarray(s, dtype=np.float64)[None, :])[0])


def compare(a: Any, b: Any) -> Comparison:
    """Detector run ``a`` against ``b`` (two :class:`~avbench.report.select.Shown`)."""
    from avbench.significance import delong, paired_bootstrap

    out = Comparison(a.detector, b.detector)
    got = paired(a, b)
    if isinstance(got, str):
        out.reason = got
        return out
    y, sa, sb = got
    out.n = len(y)
    try:
        d = delong(y, sa, sb)
        diff, lo, hi, p = paired_bootstrap(y, sa, sb, _average_precision, n_boot=N_BOOT,
                                           seed=BOOT_SEED)
    except ValueError as e:
        out.reason = f"not testable: {e}"
        return out
    out.auc_a, out.auc_b, out.auc_diff, out.auc_se = d.auc_a, d.auc_b, d.diff, d.se
    out.auc_z, out.auc_p = d.z, d.p
    out.ap_diff, out.ap_lo, out.ap_hi, out.ap_p = diff, lo, hi, p
    return out


def comparisons(shown: list[Any]) -> list[Comparison]:
    """Every pair of the runs of one fold, in detector order (``a`` before ``b``)."""
    return [compare(a, b) for i, a in enumerate(shown) for b in shown[i + 1:]]
