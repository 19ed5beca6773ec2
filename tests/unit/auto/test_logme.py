"""LogME (issue 15, first part): the evidence against a brute-force Gaussian likelihood, the
fixed point against its neighbours, and the ranking of informative over uninformative features."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfxfer.auto import logme


def _brute_force(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """y ~ N(0, F F^T / alpha + I / beta): the evidence as an n-dimensional Gaussian density."""
    n = len(y)
    cov = f @ f.T / alpha + np.eye(n) / beta
    _, log_det = np.linalg.slogdet(cov)
    return -0.5 * (n * math.log(2 * math.pi) + log_det + y @ np.linalg.solve(cov, y))


@pytest.mark.parametrize("n, d", [(40, 7), (9, 25), (30, 30)])
def test_evidence_matches_the_brute_force_gaussian_likelihood(n, d):
    rng = np.random.default_rng(n * 100 + d)
    f = rng.normal(size=(n, d))
    y = (rng.random(n) < 0.4).astype(float)
    for alpha, beta in ((0.3, 2.0), (5.0, 0.7), (1e-2, 40.0)):
        got, want = logme.evidence(f, y, alpha, beta), _brute_force(f, y, alpha, beta)
        assert abs(got - want) <= 1e-6 * abs(want), (alpha, beta, got, want)


@pytest.mark.parametrize("n, d", [(60, 5), (12, 30)])
def test_the_fixed_point_is_a_maximum_of_the_evidence(n, d):
    rng = np.random.default_rng(d)
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(float)
    best, alpha, beta = logme.maximise(f, y)
    assert best == pytest.approx(_brute_force(f, y, alpha, beta), rel=1e-6)
    for a in (alpha * 0.8, alpha * 1.25):
        for b in (beta * 0.8, beta, beta * 1.25):
            assert _brute_force(f, y, a, b) <= best + 1e-9 * abs(best), (a, b)


def test_informative_features_score_above_noise_and_scores_are_per_sample():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 50)
    informative = np.eye(4)[labels] @ rng.normal(size=(4, 16)) + 0.5 * rng.normal(size=(200, 16))
    noise = rng.normal(size=(200, 16))
    assert logme.logme(informative, labels) > logme.logme(noise, labels)
    # doubling the data with the same distribution keeps the per-sample score about the same
    twice = np.concatenate([informative, informative + 0.01 * rng.normal(size=(200, 16))])
    assert logme.logme(twice, np.concatenate([labels, labels])) == pytest.approx(
        logme.logme(informative, labels), abs=0.1
    )


def test_features_that_fit_the_labels_exactly_stay_finite():
    # n < d, y in the span of F and large singular values: gamma rounds to n, and n - gamma
    # used to reach 0, making beta 0 and the evidence log(0) (seen on 12 MobileNetV2 features)
    for scale in (1e3, 1e8):
        for n in (3, 12):
            f = np.eye(n, 40) * scale
            assert np.isfinite(logme.logme(f, np.arange(n) % 2)), (scale, n)
