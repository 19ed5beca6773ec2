"""Calibrated stacking for generalised zero-shot, its constant chosen on the seen classes alone.

In generalised ZSL every image is scored against every class, and a model fitted on the seen
classes scores them higher: almost every unseen image goes to a seen class. Calibrated stacking
(Chao et al. 2016, "An empirical study and analysis of generalized zero-shot learning for object
recognition in the wild") subtracts a constant ``gamma`` from the seen classes' scores.

``gamma`` must not be tuned on unseen images, which a real user does not have. :func:`choose`
simulates the problem inside the seen classes' training images instead. In each of ``folds``
rounds, a random share of the seen classes (the share of unseen classes in the real problem) plays
the unseen ones. The method is fitted on ``1 - held_out`` of the other classes' images. Their
remaining images and every image of the pretend-unseen classes are then scored against all the
seen classes. The harmonic mean ``H`` of the per-class accuracies on both groups is a step
function of ``gamma``; the chosen ``gamma`` maximises its mean over the rounds (ties: the one
nearest 0).

Example:
    >>> import numpy as np
    >>> from tfxfer.zero_shot.methods import ESZSL
    >>> rng = np.random.default_rng(0)
    >>> signatures = rng.integers(0, 2, (6, 8)).astype(float)
    >>> labels = np.repeat(np.arange(6), 40)
    >>> features = rng.normal(signatures[labels] @ rng.normal(size=(8, 16)), 1.0)
    >>> gamma, info = choose(lambda: ESZSL(0.1, 0.1), features, labels, signatures, 0.3, seed=0)
    >>> info["pretend_unseen"], info["folds"], info["held_out_h"] >= info["held_out_h_at_0"]
    (2, 5, True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfxfer.errors import UserError


def choose(
    make: Callable[[], object],
    features: np.ndarray,
    labels: np.ndarray,
    signatures: np.ndarray,
    unseen_share: float,
    seed: int,
    folds: int = 5,
    held_out: float = 0.2,
) -> tuple[float, dict]:
    """``(gamma, report)`` from the seen classes' training data only; see the module docstring.

    Args:
        make: Returns a fresh, unfitted method (``fit(x, labels, signatures)``,
            ``scores(x, signatures)``), configured as the one being calibrated.
        features: Features of the seen classes' training images, and nothing else.
        labels: Their labels, indexing the rows of ``signatures``.
        signatures: The seen classes' attribute rows.
        unseen_share: The share of unseen classes among all classes of the real problem.
        seed: Seeds the pretend-unseen classes and the held-out images of each round.
        folds: Rounds, each with its own pretend-unseen classes.
        held_out: Share of each pretend-seen class's images that is scored, not fitted.
    """
    classes = len(signatures)
    pretend = min(max(1, round(classes * unseen_share)), classes - 2)
    if pretend < 1:
        raise UserError(
            "zero_shot.calibration=auto needs at least 3 seen classes (two to fit, one to play "
            "an unseen class)",
            got=f"{classes} seen",
            fix="pass --set zero_shot.calibration=0 (or another number), or unseen fewer classes",
        )
    rng = np.random.default_rng(seed)
    rounds = [
        _round(make, features, labels, signatures, pretend, held_out, rng) for _ in range(folds)
    ]
    gaps = np.concatenate([r["gap"] for r in rounds])
    # H only changes where gamma crosses an image's gap: every midpoint between two gaps is a
    # candidate, and so are 0 and both ends.
    edges = np.unique(gaps)
    candidates = np.unique(
        np.concatenate([[0.0, edges[0] - 1.0, edges[-1] + 1.0], (edges[:-1] + edges[1:]) / 2])
    )
    mean_h = np.mean([harmonic_mean(r, candidates) for r in rounds], axis=0)
    best = np.flatnonzero(mean_h == mean_h.max())
    gamma = float(candidates[best[np.argmin(np.abs(candidates[best]))]])
    at_zero = float(np.mean([harmonic_mean(r, np.array([0.0]))[0] for r in rounds]))
    report = {
        "gamma": round(gamma, 6),
        "chosen_on": "held-out training images of the seen classes, some playing unseen ones",
        "folds": folds,
        "pretend_unseen": pretend,
        "held_out_h": round(float(mean_h.max()), 4),
        "held_out_h_at_0": round(at_zero, 4),
    }
    return gamma, report


def _round(make, features, labels, signatures, pretend, held_out, rng) -> dict:
    """One simulated problem: fit on part of the pretend-seen classes, score the rest."""
    classes = len(signatures)
    fake_unseen = np.sort(rng.choice(classes, pretend, replace=False))
    fake_seen = np.setdiff1d(np.arange(classes), fake_unseen)
    fit = np.zeros(len(labels), bool)
    for c in fake_seen:
        rows = rng.permutation(np.flatnonzero(labels == c))
        fit[rows[int(np.ceil(held_out * len(rows))) :]] = True
    method = make().fit(
        features[fit], np.searchsorted(fake_seen, labels[fit]), signatures[fake_seen]
    )
    scored = ~fit
    scores = method.scores(features[scored], signatures)
    return {
        "labels": labels[scored],
        "seen": fake_seen,
        "unseen": fake_unseen,
        "gap": scores[:, fake_seen].max(axis=1) - scores[:, fake_unseen].max(axis=1),
        "best_seen": fake_seen[scores[:, fake_seen].argmax(axis=1)],
        "best_unseen": fake_unseen[scores[:, fake_unseen].argmax(axis=1)],
    }


def harmonic_mean(scored: dict, gammas: np.ndarray) -> np.ndarray:
    """H of one round at each of ``gammas``: an image goes to its best seen class when that
    class's score, less gamma, beats the best unseen one's (``gap > gamma``)."""
    to_seen = scored["gap"][None, :] > gammas[:, None]  # (gammas, images)
    labels = scored["labels"]
    right_seen = to_seen & (scored["best_seen"] == labels)
    right_unseen = ~to_seen & (scored["best_unseen"] == labels)

    def per_class(right, classes):
        return np.mean([right[:, labels == c].mean(axis=1) for c in classes], axis=0)

    s = per_class(right_seen, scored["seen"])
    u = per_class(right_unseen, scored["unseen"])
    return np.where(s + u > 0, 2 * s * u / np.maximum(s + u, 1e-12), 0.0)
