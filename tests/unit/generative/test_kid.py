"""KID (issue 16, first part): the unbiased MMD^2 against a brute-force double sum, its
unbiasedness on matched distributions, and its growth with a shift."""

from __future__ import annotations

import numpy as np
import pytest

from tfxfer.generative import kid


def _brute_force(x, y):
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("m, n, d", [(7, 9, 3), (12, 5, 16), (2, 2, 1)])
def test_mmd2_matches_the_brute_force_double_sum(m, n, d):
    rng = np.random.default_rng(m * n * d)
    x, y = rng.normal(size=(m, d)), rng.normal(0.5, 2.0, (n, d))
    assert kid.mmd2_unbiased(x, y) == pytest.approx(_brute_force(x, y), rel=1e-10)


def test_kid_is_unbiased_on_matched_samples_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 8))
    matched = [
        kid.kid(real, rng.normal(size=(400, 8)), subsets=20, subset_size=200, seed=s)[0]
        for s in range(10)
    ]
    assert abs(np.mean(matched)) < 3 * np.std(matched) / np.sqrt(10) + 1e-3
    shifts = [
        kid.kid(real, rng.normal(s, 1.0, (400, 8)), subsets=10, subset_size=200)[0]
        for s in (0.25, 0.5, 1.0)
    ]
    assert 0 < shifts[0] < shifts[1] < shifts[2]


def test_kid_refuses_fewer_than_two_samples_a_side():
    with pytest.raises(ValueError, match="at least 2 samples"):
        kid.mmd2_unbiased(np.zeros((1, 3)), np.zeros((5, 3)))
