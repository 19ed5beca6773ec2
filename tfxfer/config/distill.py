"""The ``distill`` section: knowledge distillation of a finished run (the teacher) into a smaller
student (:mod:`tfxfer.distill`). Only the ``distill`` recipe reads it.

Import it from :mod:`tfxfer.config`, the public home of every part.

Example:
    >>> from tfxfer.config import Distill
    >>> d = Distill(teacher="runs/small_similar")
    >>> d.temperature, d.alpha
    (2.0, 0.1)
"""

from __future__ import annotations

from dataclasses import dataclass

from tfxfer.errors import UserError


@dataclass(frozen=True)
class Distill:
    """Distillation into a student (:mod:`tfxfer.distill.train`): the ``distill`` recipe.

    The student's loss on a batch is ``alpha * CE(labels, student) + (1 - alpha) * T**2 *
    KL(softmax(teacher / T) || softmax(student / T))`` (Hinton et al. 2015), the teacher seeing
    the same augmented images as the student.

    Attributes:
        teacher: A finished run's directory (its ``config.json``, ``metrics.json`` and
            ``model.keras``): an image classifier of one task. The student reads the teacher's
            data, split as the teacher split it.
        temperature: ``T``, the softening of both distributions; the soft term is scaled by
            ``T**2`` so its gradients keep their size as ``T`` changes.
        alpha: Weight of the labels' cross-entropy (``1``: the student learns from the labels
            alone and the teacher is not run, the baseline); images without labels count in the
            soft term only.
        unlabelled: More images for the soft term, without labels: a folder of images, or any
            data source (its training split's images; its labels and validation split unused).
    """

    teacher: str | None = None
    temperature: float = 2.0
    alpha: float = 0.1
    unlabelled: str | None = None

    def __post_init__(self):
        if not self.temperature > 0:
            raise UserError(
                "distill.temperature must be above 0 (it divides the logits)",
                got=self.temperature,
                fix="pass e.g. --temperature 2",
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(
                "distill.alpha must be in [0, 1]: the labels' share of the loss, the teacher's "
                "soft targets taking the rest",
                got=self.alpha,
                fix="pass e.g. --alpha 0.1 (1: labels alone, no teacher)",
            )
