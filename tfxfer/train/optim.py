"""Optimisers with a true per-variable learning rate, for discriminative (per-block) rates.

Keras 3 optimisers have one learning rate. Scaling a block's *gradients* instead is not a
learning-rate multiplier under Adam, AdamW or RMSprop: their update ``m / sqrt(v)`` is invariant to
a constant gradient scale, so the block would train at the full rate anyway (and with SGD the
momentum buffer would mix scales). The optimisers here multiply the *learning rate* of each
variable inside ``update_step``, where Adam's moments, SGD's momentum and the decoupled weight
decay of AdamW/SGD (applied here per variable, at the variable's own rate, as in PyTorch's
param groups) all see the variable's own rate. The multipliers are looked up through the
optimiser's own variable index, so they hold under ``tf.distribute`` too, and are part of
``get_config`` (keyed by variable path).

:func:`block_multipliers` turns a phase's ``lr_decay`` / ``lr_range`` into multipliers: block
``i`` of the backbone (1..5, see :mod:`tfxfer.models.backbones`) gets ``decay ** (6 - i)``, the
head 1.

Example:
    >>> import keras
    >>> from tfxfer.train import optim
    >>> w = keras.Variable([1.0, 1.0], name="w")
    >>> opt = optim.Adam(0.1, lr_multipliers={w.path: 0.5})
    >>> opt.apply([keras.ops.array([1.0, -1.0])], [w])
    >>> [round(float(v), 4) for v in w.numpy()]
    [0.95, 1.05]
"""

from __future__ import annotations

import logging

import keras
from keras import ops

from tfxfer.config import Phase
from tfxfer.models import backbones

log = logging.getLogger("tfxfer")


class _PerVariableLR:
    """Mixin: ``lr_multipliers`` maps a variable's path to the factor applied to its rate."""

    def __init__(self, *args, lr_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}
        self._factors: list[float] = []

    def build(self, variables):
        if not self.built:
            self._factors = [self.lr_multipliers.get(v.path, 1.0) for v in variables]
        super().build(variables)

    def factor(self, variable) -> float:
        """The rate multiplier of one of the variables the optimiser was built with."""
        return self._factors[self._get_variable_index(variable)]

    def _apply_weight_decay(self, variables):
        pass  # applied in update_step, at each variable's own rate

    def update_step(self, gradient, variable, learning_rate):
        factor = self.factor(variable)
        lr = ops.cast(learning_rate, variable.dtype) * factor
        if self.weight_decay is not None and self._use_weight_decay(variable) and factor:
            self.assign_sub(variable, variable * ops.cast(self.weight_decay, variable.dtype) * lr)
        return super().update_step(gradient, variable, lr)

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": dict(self.lr_multipliers)}


@keras.saving.register_keras_serializable(package="tfxfer")
class Adam(_PerVariableLR, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="tfxfer")
class AdamW(_PerVariableLR, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with per-variable rates (decay at each variable's rate)."""


@keras.saving.register_keras_serializable(package="tfxfer")
class SGD(_PerVariableLR, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="tfxfer")
class RMSprop(_PerVariableLR, keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="tfxfer")
class PhaseCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from ``lr`` to 0 over ``total_steps``, starting ``offset`` steps in.

    A gradual-unfreezing phase compiles a new optimiser at every unfreezing step; the offset
    keeps one cosine curve across the whole phase instead of restarting it.
    """

    def __init__(self, lr: float, total_steps: int, offset: int = 0):
        self.lr, self.total_steps, self.offset = float(lr), int(total_steps), int(offset)

    def __call__(self, step):
        t = ops.minimum(ops.cast(step, "float32") + self.offset, self.total_steps)
        return self.lr * 0.5 * (1.0 + ops.cos(3.141592653589793 * t / self.total_steps))

    def get_config(self):
        return {"lr": self.lr, "total_steps": self.total_steps, "offset": self.offset}


@keras.saving.register_keras_serializable(package="tfxfer")
class PhaseAnneal(keras.optimizers.schedules.LearningRateSchedule):
    """``lr / (1 + alpha p) ** beta`` with ``p`` the phase's progress (0 to 1) over ``total_steps``.

    The annealing of the DANN paper (Ganin & Lempitsky 2015: ``alpha = 10``, ``beta = 0.75``),
    offered to every recipe as ``schedule = "anneal"``; ``offset`` as for :class:`PhaseCosine`.
    """

    def __init__(
        self, lr: float, total_steps: int, offset: int = 0, alpha: float = 10.0, beta: float = 0.75
    ):
        self.lr, self.total_steps, self.offset = float(lr), int(total_steps), int(offset)
        self.alpha, self.beta = float(alpha), float(beta)

    def __call__(self, step):
        p = (
            ops.minimum(ops.cast(step, "float32") + self.offset, self.total_steps)
            / self.total_steps
        )
        return self.lr / (1.0 + self.alpha * p) ** self.beta

    def get_config(self):
        return {
            "lr": self.lr,
            "total_steps": self.total_steps,
            "offset": self.offset,
            "alpha": self.alpha,
            "beta": self.beta,
        }


def block_factor(decay: float, block: int, num_blocks: int = backbones.NUM_BLOCKS) -> float:
    """The rate multiplier of backbone ``block`` (1..n of ``num_blocks``):
    ``decay ** (n + 1 - block)``; the head's is 1."""
    return decay ** (num_blocks + 1 - block)


def block_multipliers(backbone: keras.Model, family: str, decay: float) -> dict[str, float]:
    """``{variable path: decay ** (n + 1 - block)}`` for every backbone variable, ``n`` the
    family's block count (head: absent = 1)."""
    if decay == 1.0:
        return {}
    n = backbones.num_blocks(family)
    return {
        v.path: block_factor(decay, block, n)
        for layer, block in zip(backbone.layers, backbones.block_of_layers(backbone, family))
        for v in layer.weights
    }


def make_optimizer(
    phase: Phase,
    steps_per_epoch: int,
    multipliers: dict[str, float] | None = None,
    offset_steps: int = 0,
    learning_rate=None,
) -> keras.optimizers.Optimizer:
    """The phase's optimiser: its head rate, schedule and per-variable ``multipliers``.

    Args:
        phase: The phase (optimiser name, rates, schedule, weight decay, momentum).
        steps_per_epoch: Optimiser steps per epoch (for the schedule's length).
        multipliers: Per-variable rate multipliers, e.g. from :func:`block_multipliers`.
        offset_steps: Steps of this phase already run by an earlier optimiser (gradual phases).
        learning_rate: A rate or schedule replacing the phase's (the learning-rate finder's).
    """
    lr = learning_rate
    if lr is None:
        lr, _ = phase.rates()
        schedule = SCHEDULES[phase.schedule]
        if schedule is not None:
            lr = schedule(lr, max(1, phase.epochs * steps_per_epoch), offset_steps)
    kw = {"lr_multipliers": multipliers}
    if phase.ema:  # Keras keeps the average and swaps it into the model when fit ends
        kw.update(use_ema=True, ema_momentum=phase.ema)
        if learning_rate is None and not offset_steps:
            warn_short_average(phase, phase.epochs * steps_per_epoch)
    return OPTIMIZERS[phase.optimizer](lr, phase, kw)


def warn_short_average(phase: Phase, steps: int) -> float:
    """Warns when the phase is too short for its EMA momentum, and returns the weight the
    first step's weights keep in the final average, ``ema ** steps``: Keras's average starts
    from them, with no warm-up, so over too few steps it stays close to the starting model.

    Example:
        >>> round(warn_short_average(Phase(ema=0.999), 465), 2)
        0.63
    """
    share = phase.ema**steps
    if share > 0.01:
        log.warning(
            "phase %r: EMA momentum %g over its %d steps keeps %.0f%% of the first step's "
            "weights in the final average (Keras's average has no warm-up); %g or lower keeps "
            "it under 0.01%%: --set phases.%s.ema=%g",
            phase.name,
            phase.ema,
            steps,
            100 * share,
            1 - 10 / steps,
            phase.name,
            round(1 - 10 / steps, 4),
        )
    return share


# Name -> factory: the config's ``phases.N.schedule`` and ``phases.N.optimizer`` choices
# (tfxfer.config.SCHEDULES and OPTIMIZERS, checked against these by tests/unit/test_layout.py).
SCHEDULES = {"constant": None, "cosine": PhaseCosine, "anneal": PhaseAnneal}
OPTIMIZERS = {
    "adam": lambda lr, phase, kw: Adam(lr, **kw),
    "adamw": lambda lr, phase, kw: AdamW(lr, weight_decay=phase.weight_decay, **kw),
    "sgd": lambda lr, phase, kw: SGD(
        lr, momentum=phase.momentum, nesterov=True, weight_decay=phase.weight_decay or None, **kw
    ),
    "rmsprop": lambda lr, phase, kw: RMSprop(
        lr, momentum=phase.momentum if phase.momentum < 1 else 0.0, **kw
    ),
}


def for_phase(tm, phase: Phase, steps_per_epoch: int, first_epoch: int = 0):
    """The optimiser of ``phase`` for the transfer model ``tm``: :func:`make_optimizer` with
    the backbone's per-block rates (:func:`block_multipliers`, the phase's decay), its schedule
    starting ``first_epoch`` epochs in (a stage that resumes mid-phase)."""
    _, decay = phase.rates()
    return make_optimizer(
        phase,
        steps_per_epoch,
        block_multipliers(tm.backbone, tm.family, decay),
        first_epoch * steps_per_epoch,
    )
