"""The paired tests in avbench.significance against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avbench import significance as sig


def brute_delong(y, a, b):
    """DeLong's variance straight from the definition: O(m n) kernel, explicit covariances."""
    y = np.asarray(y)
    out = []
    for s in (a, b):
        s = np.asarray(s, dtype=float)
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = out
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    c = np.array([1.0, -1.0])
    var = c @ s10 @ c / len(v10a) + c @ s01 @ c / len(v01a)
    return auc_a, auc_b, math.sqrt(var)


def data(n=60, seed=3, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    a = rng.random(n) * 0.6 + 0.4 * y
    b = rng.random(n) * 0.8 + 0.2 * y
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return y, a, b


@pytest.mark.parametrize("ties", [False, True])
def test_delong_matches_the_definition(ties):
    y, a, b = data(ties=ties)
    r = sig.delong(y, a, b)
    auc_a, auc_b, se = brute_delong(y, a, b)
    assert r.auc_a == pytest.approx(auc_a, abs=1e-12)
    assert r.auc_b == pytest.approx(auc_b, abs=1e-12)
    assert r.se == pytest.approx(se, rel=1e-9)
    assert r.z == pytest.approx((auc_a - auc_b) / se, rel=1e-9)
    assert r.p == pytest.approx(math.erfc(abs(r.z) / math.sqrt(2)), rel=1e-9)
    assert (r.n_pos, r.n_neg) == (int(y.sum()), int((1 - y).sum()))


def test_delong_of_a_detector_against_itself_is_no_difference():
    y, a, _ = data()
    r = sig.delong(y, a, a)
    assert (r.diff, r.z, r.p) == (0.0, 0.0, 1.0)


def test_delong_is_antisymmetric():
    y, a, b = data()
    ab, ba = sig.delong(y, a, b), sig.delong(y, b, a)
    assert ab.diff == -ba.diff and ab.z == -ba.z and ab.p == ba.p


def test_perfect_against_chance_is_significant():
    y = np.array([0] * 30 + [1] * 30)
    perfect = y + 0.0
    rng = np.random.default_rng(0)
    noise = rng.random(60)
    assert sig.delong(y, perfect, noise).p < 1e-3


def auc(y, s):
    return sig.placements(y, s)[0].mean()


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    y, a, b = data(n=80)
    one = sig.paired_bootstrap(y, a, b, auc, n_boot=300, seed=5)
    two = sig.paired_bootstrap(y, a, b, auc, n_boot=300, seed=5)
    other = sig.paired_bootstrap(y, a, b, auc, n_boot=300, seed=6)
    assert one == two and one != other
    diff, lo, hi, p = one
    assert diff == pytest.approx(auc(y, a) - auc(y, b))
    assert lo < diff < hi and 0 < p <= 1


def test_paired_bootstrap_keeps_class_counts():
    y, a, b = data(n=40)
    seen = []

    def metric(yy, ss):
        seen.append(int(yy.sum()))
        return float(ss.mean())

    sig.paired_bootstrap(y, a, b, metric, n_boot=20, seed=0)
    assert set(seen) == {int(y.sum())}


@pytest.mark.parametrize(
    "labels, a, b, message",
    [
        ([0, 1], [0.1], [0.2, 0.3], "one entry per video"),
        ([0, 2], [0.1, 0.2], [0.2, 0.3], "labels must be 0"),
        ([1, 1], [0.1, 0.2], [0.2, 0.3], "needs both classes"),
        ([0, 1], [0.1, float("nan")], [0.2, 0.3], "non-finite score at position 1"),
    ],
)
def test_bad_inputs_are_named(labels, a, b, message):
    with pytest.raises(ValueError, match=message):
        sig.delong(labels, a, b)
    with pytest.raises(ValueError, match=message):
        sig.paired_bootstrap(labels, a, b, auc, n_boot=5)
