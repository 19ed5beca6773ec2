"""The ``adapt`` section: unsupervised domain adaptation (:mod:`tfxfer.adapt`), the
``domain_adapt`` recipe, and the methods it composes (:data:`ADAPT_METHODS`).

Import it from :mod:`tfxfer.config`, the public home of every part.

Example:
    >>> from tfxfer.config import Adapt
    >>> Adapt(target="mnist_m").method
    'dann'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from tfxfer.config.schema import check_choice, check_min
from tfxfer.errors import UserError

# Every valid adapt.method: an adversary (dann, cdan, cdan+e), or none (source_only, mcc), with
# MCC's target loss added by "+mcc" to any adversary.
ADAPT_METHODS = (
    "dann",
    "source_only",
    "cdan",
    "cdan+e",
    "mcc",
    "dann+mcc",
    "cdan+mcc",
    "cdan+e+mcc",
)
ADAPT_TERMS = ("dann", "source_only", "cdan", "e", "mcc")
ADVERSARIES = ("dann", "cdan")


class AdaptTerms(NamedTuple):
    """An ``adapt.method`` read term by term (:func:`adapt_terms`)."""

    adversary: str | None  # dann, cdan, or None (source_only, mcc): no domain loss on features
    entropy: bool  # CDAN+E's entropy weights
    mcc: bool  # MCC's loss on target batches


def adapt_terms(method: str) -> AdaptTerms:
    """What a valid ``adapt.method`` composes, e.g. ``cdan+e+mcc``.

    Example:
        >>> adapt_terms("cdan+e+mcc")
        AdaptTerms(adversary='cdan', entropy=True, mcc=True)
    """
    terms = method.split("+")
    adversary = terms[0] if terms[0] in ADVERSARIES else None
    return AdaptTerms(adversary, "e" in terms, "mcc" in terms)


@dataclass(frozen=True)
class Adapt:
    """Unsupervised domain adaptation (:mod:`tfxfer.adapt.train`): the ``domain_adapt`` recipe.

    The config's ``data`` is the labelled source; ``target`` is trained on without its labels.

    Attributes:
        target: The target domain: anything ``data`` accepts, or a folder of unlabelled images.
            Only its images are used for training (its training split when it has labels).
        target_val: Labelled target data, for evaluation only. None: the target's own validation
            split when it has labels, else no target accuracy is reported.
        method: ``dann`` (gradient reversal against a domain classifier), ``cdan`` (the same,
            the domain classifier conditioned on the predictions, Long et al. 2018), ``cdan+e``
            (CDAN with entropy-weighted images), ``mcc`` (minimum class confusion on target
            batches, Jin et al. 2020, no adversary), any adversary ``+mcc``, or ``source_only``
            (the same code path with no target term: the baseline). :data:`ADAPT_METHODS`.
        gamma: Steepness of the reversal weight ``lambda_p = 2 / (1 + exp(-gamma p)) - 1``.
        weight: Final reversal weight (multiplies ``lambda_p``).
        domain_hidden: Widths of the domain classifier's hidden ReLU layers.
        cdan_dim: Width of CDAN's randomized multilinear map, used when features x classes is
            wider than 8192 (below, the exact map).
        mcc_weight: Weight of the MCC loss (methods with ``mcc``).
        mcc_temperature: MCC's softmax temperature (2.5 in the paper).
        self_train: Epochs of self-training after the phases (0: none), with any method:
            confident target pseudo-labels, class-balanced (:mod:`tfxfer.adapt.self_train`).
        self_train_fraction: Per predicted class, the share of its most confident target
            images kept as pseudo-labels, re-chosen every self-training epoch.
        self_train_lr: The self-training phase's constant rate; None: a tenth of the last
            phase's.
        self_train_weight: Weight of the pseudo-label cross-entropy.
    """

    target: str | None = None
    target_val: str | None = None
    method: str = "dann"
    gamma: float = 10.0
    weight: float = 1.0
    domain_hidden: tuple[int, ...] = (1024, 1024)
    cdan_dim: int = 1024
    mcc_weight: float = 1.0
    mcc_temperature: float = 2.5
    self_train: int = 0
    self_train_fraction: float = 0.5
    self_train_lr: float | None = None
    self_train_weight: float = 1.0

    def __post_init__(self):
        terms = str(self.method).split("+")
        if self.method not in ADAPT_METHODS and all(t in ADAPT_TERMS for t in terms):
            raise UserError(
                "adapt.method composes one adversary (dann, cdan) with '+e' (after cdan only: "
                "it weights CDAN's domain loss by entropy) and '+mcc' last; source_only "
                "composes with nothing",
                valid=ADAPT_METHODS,
                got=self.method,
                fix="pick one of the valid compositions, e.g. --method cdan+e+mcc",
            )
        check_choice("adapt.method", self.method, ADAPT_METHODS)
        check_min("adapt.cdan_dim", self.cdan_dim, 1)
        check_min("adapt.mcc_weight", self.mcc_weight, 0.0)
        check_min("adapt.mcc_temperature", self.mcc_temperature, 0.0, strict=True)
        check_min("adapt.gamma", self.gamma, 0.0, strict=True)
        check_min("adapt.weight", self.weight, 0.0)
        for width in self.domain_hidden:
            check_min("adapt.domain_hidden", width, 1)
        check_min("adapt.self_train", self.self_train, 0)
        if not 0.0 < self.self_train_fraction <= 1.0:
            raise UserError(
                "adapt.self_train_fraction must be in (0, 1]: the share of each predicted "
                "class's target images kept as pseudo-labels",
                got=self.self_train_fraction,
                fix="pass e.g. --set adapt.self_train_fraction=0.5",
            )
        check_min("adapt.self_train_lr", self.self_train_lr, 0.0, strict=True)
        check_min("adapt.self_train_weight", self.self_train_weight, 0.0, strict=True)
