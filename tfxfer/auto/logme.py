"""LogME (You et al., ICML 2021): how well frozen features suit a labelled task, without training.

For each class ``k`` the one-hot column ``y_k`` is modelled as a Bayesian linear regression on
the features ``F`` (``n x d``): ``y = F w + e``, prior ``w ~ N(0, I / alpha)``, noise
``e ~ N(0, I / beta)``. Its log evidence is

    L(alpha, beta) = n/2 log beta + d/2 log alpha - n/2 log 2 pi
                     - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - 1/2 log |A|,

with ``A = alpha I + beta F^T F`` and the posterior mean ``m = beta A^-1 F^T y``. ``alpha`` and
``beta`` are set by MacKay's fixed-point updates, ``gamma = sum_i beta s_i / (alpha + beta s_i)``
(``s_i`` the eigenvalues of ``F^T F``), ``alpha = gamma / ||m||^2``,
``beta = (n - gamma) / ||F m - y||^2``, iterated to convergence. LogME is the maximised evidence
divided by ``n``, averaged over the classes: higher means the features fit the labels better.

Everything is computed in the basis of one SVD of ``F``, so each class and each iteration costs
``O(min(n, d))``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(3), 40)
    >>> useful = np.eye(3)[labels] * 3 + rng.normal(size=(120, 3))
    >>> noise = rng.normal(size=(120, 3))
    >>> bool(logme(useful, labels) > logme(noise, labels))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Basis:
    """``F = U diag(sqrt(s)) V^T``: what every evidence evaluation needs."""

    u: np.ndarray  # n x r
    s: np.ndarray  # r eigenvalues of F^T F (squared singular values)
    n: int
    d: int


def _basis(features: np.ndarray) -> _Basis:
    f = np.asarray(features, np.float64)
    u, sv, _ = np.linalg.svd(f, full_matrices=False)
    return _Basis(u, sv**2, f.shape[0], f.shape[1])


def _terms(basis: _Basis, y: np.ndarray, alpha: float, beta: float):
    """``(evidence, gamma, ||m||^2, ||F m - y||^2)`` at ``alpha``, ``beta``."""
    z = basis.u.T @ y  # y in the span of F's columns
    outside = max(float(y @ y - z @ z), 0.0)  # the part of y F cannot reach
    shrink = beta * basis.s / (alpha + beta * basis.s)
    m2 = float(np.sum(shrink**2 * z**2 / np.maximum(basis.s, 1e-300)))
    residual = float(np.sum(((1.0 - shrink) * z) ** 2)) + outside
    log_det = float(np.sum(np.log(alpha + beta * basis.s))) + (basis.d - len(basis.s)) * math.log(
        alpha
    )  # alpha alone outside the span
    evidence = (
        basis.n / 2 * math.log(beta)
        + basis.d / 2 * math.log(alpha)
        - basis.n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual
        - alpha / 2 * m2
        - log_det / 2
    )
    return evidence, float(np.sum(shrink)), m2, residual


def evidence(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """Log evidence ``log p(y | F, alpha, beta)`` of the Bayesian linear model (see above)."""
    return _terms(_basis(features), np.asarray(y, np.float64), alpha, beta)[0]


def maximise(
    features: np.ndarray,
    y: np.ndarray,
    iterations: int = 100,
    tol: float = 1e-8,
    basis: _Basis | None = None,
) -> tuple[float, float, float]:
    """``(evidence, alpha, beta)`` after MacKay's fixed-point updates from ``alpha = beta = 1``."""
    basis = basis or _basis(features)
    y = np.asarray(y, np.float64)
    alpha, beta = 1.0, 1.0
    for _ in range(iterations):
        _, gamma, m2, residual = _terms(basis, y, alpha, beta)
        # With n <= d the features can fit y exactly: gamma -> n and n - gamma can round to 0
        # or below, which would make beta 0 (log 0). Both counts stay strictly positive.
        new_alpha = max(gamma, 1e-12) / max(m2, 1e-300)
        new_beta = max(basis.n - gamma, 1e-12 * basis.n) / max(residual, 1e-300)
        done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return _terms(basis, y, alpha, beta)[0], alpha, beta


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of ``features`` (``n x d``) for integer ``labels``: mean over classes of the
    maximised evidence of the one-hot column, divided by ``n``."""
    labels = np.asarray(labels)
    basis = _basis(features)
    scores = [
        maximise(features, (labels == c).astype(np.float64), basis=basis)[0] / basis.n
        for c in np.unique(labels)
    ]
    return float(np.mean(scores))
