import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from avbench.metrics import _batch_ap, _batch_auc, compute_metrics


def _labels(y):
    return {"label": y, "label_v": y, "label_a": y}


def test_point_values_equal_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.3 * y + rng.random(300) * 0.8, 0, 1).round(2)  # ties on purpose
    m = compute_metrics(_labels(y), {"score": s}, n_boot=50)
    assert m["acc"].value == pytest.approx(accuracy_score(y, s >= 0.5), abs=1e-12)
    assert m["auc"].value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["ap"].value == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert "acc_v" not in m  # no score_v given


def test_vectorised_bootstrap_kernels_equal_scikit_learn():
    rng = np.random.default_rng(2)
    for _ in range(100):
        n = int(rng.integers(4, 60))
        y = rng.integers(0, 2, (1, n))
        if y.min() == y.max():
            continue
        s = rng.integers(0, 5, (1, n)) / 4.0
        assert _batch_auc(y, s)[0] == pytest.approx(roc_auc_score(y[0], s[0]), abs=1e-12)
        assert _batch_ap(y, s)[0] == pytest.approx(average_precision_score(y[0], s[0]), abs=1e-12)


def test_bootstrap_is_seeded_and_brackets_the_value():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.clip(0.4 * y + 0.6 * rng.random(200), 0, 1)
    a = compute_metrics(_labels(y), {"score": s}, n_boot=300, seed=7)
    b = compute_metrics(_labels(y), {"score": s}, n_boot=300, seed=7)
    c = compute_metrics(_labels(y), {"score": s}, n_boot=300, seed=8)
    assert (a["auc"].lo, a["auc"].hi) == (b["auc"].lo, b["auc"].hi)
    assert (a["auc"].lo, a["auc"].hi) != (c["auc"].lo, c["auc"].hi)
    for k in ("acc", "ap", "auc"):
        assert a[k].lo <= a[k].value <= a[k].hi


def test_one_class_is_undefined_not_a_number():
    y = np.ones(10, dtype=int)
    m = compute_metrics(_labels(y), {"score": np.linspace(0, 1, 10)}, n_boot=10)
    assert m["auc"].value is None and m["auc"].undefined == "one class only (fake)"
    assert m["ap"].value is None
    assert m["acc"].value == pytest.approx(0.5)  # accuracy stays defined


def test_per_modality_metrics_use_their_own_labels():
    y = np.array([0, 0, 1, 1])
    yv = np.array([0, 0, 1, 0])
    ya = np.array([0, 0, 0, 1])
    m = compute_metrics({"label": y, "label_v": yv, "label_a": ya},
                        {"score": np.array([0.1, 0.2, 0.8, 0.9]),
                         "score_v": np.array([0.1, 0.2, 0.9, 0.3]),
                         "score_a": np.array([0.1, 0.2, 0.3, 0.9])}, n_boot=0)
    assert m["auc_v"].value == 1.0 and m["acc_v"].value == 1.0
    assert m["auc_a"].value == 1.0 and m["acc_a"].value == 1.0
