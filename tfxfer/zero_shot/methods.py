"""Zero-shot classification by attributes: DAP and ESZSL on backbone features, and their metrics.

Both methods learn, from images of the *seen* classes only, how features relate to the class
attribute table; an unseen class is then recognised by its row of the table.

- **DAP** (direct attribute prediction, Lampert et al. 2009/2014): one L2-regularised logistic
  regression per attribute, ``p(a_m | x)``. A class ``z`` with signature ``s_z`` scores
  ``sum_m log p(a_m = s_zm | x) - log p(a_m = s_zm)``, the attribute priors ``p(a_m)`` being
  the mean of each attribute over the seen classes (clipped to [0.05, 0.95]). Continuous
  attributes are binarised at their column mean for DAP.
- **ESZSL** (embarrassingly simple ZSL, Romera-Paredes & Torr 2015): a bilinear map ``V``
  between features and attributes, in closed form,
  ``V = (X X^T/m + gamma I)^-1 (X Y S^T/m) (S S^T + lambda I)^-1``, with ``X`` the ``d x m``
  standardised features, ``Y`` the ``m x z`` labels in {-1, 1} and ``S`` the ``a x z`` seen
  signatures. (Dividing by ``m`` puts ``gamma`` in units of feature variance; the paper's
  ``gamma`` is ``m`` times this one.) Class ``z`` scores ``x^T V s_z``.

Metrics follow Xian et al. (2017, "Zero-shot learning - the good, the bad and the ugly"):
per-class mean top-1 accuracy over the unseen classes (ZSL, candidates: unseen classes only);
generalised ZSL over all classes, with per-class accuracy on seen and unseen test images and
their harmonic mean ``H``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> S = np.eye(4, 3)
    >>> S[3] = [1, 1, 0]                      # 4 classes, 3 attributes; class 3 is never seen
    >>> X = np.concatenate([rng.normal(S[c] * 3, 0.3, (50, 3)) for c in (0, 1, 2)])
    >>> y = np.repeat([0, 1, 2], 50)
    >>> model = ESZSL(gamma=0.1, lam=0.1).fit(X, y, S[:3])
    >>> model.scores(rng.normal(S[3] * 3, 0.3, (5, 3)), S).argmax(axis=1)
    array([3, 3, 3, 3, 3])
"""

from __future__ import annotations

import numpy as np

from tfxfer.zero_shot.standardize import Standardizer

PRIOR_CLIP = (0.05, 0.95)


class ESZSL:
    """Romera-Paredes & Torr (2015) in closed form; see the module docstring."""

    def __init__(self, gamma: float = 1.0, lam: float = 1.0):
        self.gamma, self.lam = gamma, lam

    def fit(self, features: np.ndarray, labels: np.ndarray, signatures: np.ndarray) -> ESZSL:
        """``labels`` index the rows of ``signatures`` (the seen classes)."""
        self.scale = Standardizer().fit(features)
        x = self.scale(np.asarray(features, np.float64)).T  # d x m
        m, z = x.shape[1], len(signatures)
        y = -np.ones((m, z))
        y[np.arange(m), labels] = 1.0
        s = np.asarray(signatures, np.float64).T  # a x z
        left = np.linalg.solve(x @ x.T / m + self.gamma * np.eye(x.shape[0]), x @ y / m)
        self.v = left @ s.T @ np.linalg.inv(s @ s.T + self.lam * np.eye(s.shape[0]))
        return self

    def scores(self, features: np.ndarray, signatures: np.ndarray) -> np.ndarray:
        """``(n, classes)`` compatibility of each image with each signature."""
        return self.scale(np.asarray(features, np.float64)) @ self.v @ np.asarray(signatures).T

    def linear(self, signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(kernel, bias)`` with ``features @ kernel + bias == scores(features, signatures)``."""
        w = self.v @ np.asarray(signatures, np.float64).T
        return w / self.scale.std[:, None], -(self.scale.mean / self.scale.std) @ w


class DAP:
    """Lampert et al.'s direct attribute prediction; see the module docstring.

    Args:
        c: Inverse L2 strength of each logistic regression (the loss is the mean log-loss plus
            ``||w||^2 / (2 c m)``, as scikit-learn's ``C``).
        steps: At most this many full-batch gradient steps (Nesterov, step ``1/L`` from the
            data's Lipschitz bound).
        tol: Stop when the largest gradient entry is ``tol`` times its value at the start.
    """

    def __init__(self, c: float = 1.0, steps: int = 3000, tol: float = 1e-5):
        self.c, self.steps, self.tol = c, steps, tol

    def fit(self, features: np.ndarray, labels: np.ndarray, signatures: np.ndarray) -> DAP:
        self.scale = Standardizer().fit(features)
        self.threshold = np.asarray(signatures, np.float64).mean(axis=0)
        binary = self.binarise(signatures)
        x = self.scale(np.asarray(features, np.float64))
        x = np.concatenate([x, np.ones((len(x), 1))], axis=1)  # bias column
        t = binary[labels]  # m x a targets
        m = len(x)
        ridge = np.ones(x.shape[1]) / (self.c * m)
        ridge[-1] = 0.0  # bias not penalised
        lipschitz = _top_eigenvalue(x) / (4 * m) + ridge.max()
        w = np.zeros((x.shape[1], t.shape[1]))
        previous, start = w, None
        for k in range(1, self.steps + 1):
            look = w + (k - 1) / (k + 2) * (w - previous)
            grad = x.T @ (_sigmoid(x @ look) - t) / m + ridge[:, None] * look
            size = np.abs(grad).max()
            start = size if start is None else start
            if size <= self.tol * start:
                break
            previous, w = w, look - grad / lipschitz
        self.w, self.steps_run = w, k
        self.prior = np.clip(binary.mean(axis=0), *PRIOR_CLIP)
        return self

    def binarise(self, signatures: np.ndarray) -> np.ndarray:
        s = np.asarray(signatures, np.float64)
        return s if np.isin(s, (0.0, 1.0)).all() else (s > self.threshold).astype(np.float64)

    def attribute_probabilities(self, features: np.ndarray) -> np.ndarray:
        x = self.scale(np.asarray(features, np.float64))
        return _sigmoid(x @ self.w[:-1] + self.w[-1])

    def scores(self, features: np.ndarray, signatures: np.ndarray) -> np.ndarray:
        p = np.clip(self.attribute_probabilities(features), 1e-4, 1 - 1e-4)
        s = self.binarise(signatures)  # classes x a
        log_p = np.log(p) @ s.T + np.log1p(-p) @ (1 - s).T
        log_prior = np.log(self.prior) @ s.T + np.log1p(-self.prior) @ (1 - s).T
        return log_p - log_prior


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _top_eigenvalue(x: np.ndarray, iterations: int = 50) -> float:
    v = np.ones(x.shape[1]) / np.sqrt(x.shape[1])
    for _ in range(iterations):
        v = x.T @ (x @ v)
        v /= np.linalg.norm(v)
    return float(v @ (x.T @ (x @ v))) * 1.01


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, classes) -> float:
    """Mean over ``classes`` of the top-1 accuracy on each class's images."""
    return float(np.mean([np.mean(pred[labels == c] == c) for c in classes]))


def evaluate(
    scores: np.ndarray, labels: np.ndarray, seen, unseen, calibration: float = 0.0
) -> dict:
    """ZSL and generalised ZSL metrics from ``(n, all classes)`` scores, by name.

    ``zsl_accuracy``, ``gzsl_seen`` and ``gzsl_unseen`` are per-class means (Xian et al.'s
    protocol), ``gzsl_h`` their harmonic mean; ``gzsl_per_sample_accuracy`` is the fraction of
    all test images classified right among all classes.

    Args:
        scores: Scores of every test image for every class.
        labels: Test labels (class indices).
        seen, unseen: Class indices.
        calibration: Subtracted from seen classes' scores in GZSL (calibrated stacking).
    """
    seen, unseen = list(seen), list(unseen)
    is_unseen = np.isin(labels, unseen)
    zsl_pred = np.asarray(unseen)[scores[is_unseen][:, unseen].argmax(axis=1)]
    adjusted = scores.copy()
    adjusted[:, seen] -= calibration
    pred = adjusted.argmax(axis=1)
    s = per_class_accuracy(pred[~is_unseen], labels[~is_unseen], seen)
    u = per_class_accuracy(pred[is_unseen], labels[is_unseen], unseen)
    metrics = {
        "zsl_accuracy": round(per_class_accuracy(zsl_pred, labels[is_unseen], unseen), 4),
        "zsl_chance": round(1.0 / len(unseen), 4),
        "gzsl_seen": round(s, 4),
        "gzsl_unseen": round(u, 4),
        "gzsl_h": round(2 * s * u / (s + u), 4) if s + u else 0.0,
        # over images, not classes: what the exported model's val_accuracy measures
        "gzsl_per_sample_accuracy": round(float(np.mean(pred == labels)), 4),
    }
    return dict(sorted(metrics.items()))


# Name -> factory from the config's zero_shot section: the ``zero_shot.methods`` choices
# (tfxfer.config.ZERO_SHOT_METHODS, checked against these by tests/unit/test_layout.py).
def _class_norm(zs):
    from tfxfer.zero_shot.class_norm import ClassNormMLP  # TensorFlow: imported when used

    return ClassNormMLP(
        zs.class_norm_hidden, zs.class_norm_steps, weight_decay=zs.class_norm_weight_decay
    )


METHODS = {
    "dap": lambda zs: DAP(zs.dap_c),
    "eszsl": lambda zs: ESZSL(zs.eszsl_gamma, zs.eszsl_lambda),
    "class_norm": _class_norm,
}
