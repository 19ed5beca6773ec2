"""The head part of the config: the new classifier head and its loss, read by the recipes that
train one (the image recipes, ``domain_adapt`` and ``text_classify``).

Import it from :mod:`tfxfer.config`, the public home of every part.

Example:
    >>> from tfxfer.config import Config
    >>> Config(regularization="l2sp").regularization    # a bare string names the method
    Regularization(method='l2sp', alpha=0.1, beta=0.01)
    >>> Config().override(["regularization.alpha=0.01"]).regularization.alpha
    0.01
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfxfer.config.schema import check_choice, check_min
from tfxfer.errors import UserError

REGULARIZATIONS = ("none", "l2", "l2sp")
CLASS_WEIGHTS = ("none", "balanced")


@dataclass(frozen=True)
class Regularization:
    """The weight penalty towards the starting point (:mod:`tfxfer.methods.regularize`).

    ``regularization=l2sp`` (command line, TOML or Python) is short for
    ``regularization.method=l2sp``.

    Attributes:
        method: ``none`` (weight decay only, per phase), ``l2sp`` (Li et al. 2018:
            ``alpha/2 * ||w - w0||^2`` on the backbone, ``w0`` its weights when training
            started, plus ``beta/2 * ||w||^2`` on the head's kernels) or ``l2`` (the same with
            ``w0 = 0``).
        alpha: Strength of the backbone term (``alpha`` before: the old key still works).
        beta: Strength of the head term (``beta`` before: the old key still works).
    """

    SHORTHAND = "method"  # the key a bare string sets (a class attribute, not a field)

    method: str = "none"
    alpha: float = 0.1
    beta: float = 0.01

    def __post_init__(self):
        check_choice("regularization.method", self.method, REGULARIZATIONS)
        check_min("regularization.alpha", self.alpha, 0.0)
        check_min("regularization.beta", self.beta, 0.0)


@dataclass(frozen=True)
class HeadPart:
    """The classifier head and its loss.

    Attributes:
        head_dropout: Dropout rate before each Dense layer of the head.
        label_smoothing: Label smoothing of the cross-entropy loss.
        class_weight: ``none``, or ``balanced`` (each class weighted by N / (K * n_class)).
        regularization: The weight penalty (:class:`Regularization`); ``regularization=l2sp``
            sets its method.
    """

    head_dropout: float = 0.2
    label_smoothing: float = 0.0
    class_weight: str = "none"
    regularization: Regularization = field(default_factory=Regularization)

    def _check_head(self) -> None:
        check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        if not 0.0 <= self.head_dropout < 1.0:
            raise UserError(
                "head_dropout must be in [0, 1)",
                got=self.head_dropout,
                fix="pass e.g. --set head_dropout=0.2",
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(
                "label_smoothing must be in [0, 1)",
                got=self.label_smoothing,
                fix="pass e.g. --set label_smoothing=0.1",
            )
