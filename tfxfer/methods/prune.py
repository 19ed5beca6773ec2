"""Magnitude pruning during fine-tuning, on a polynomial sparsity schedule (Zhu & Gupta, 2017).

``--set prune.sparsity=0.75`` zeroes the smallest-magnitude weights of every prunable kernel
(``Conv2D`` and ``Dense``, at least :data:`MIN_SIZE` weights; depthwise kernels, biases and
BatchNorm are kept) while the phases that train the backbone run. Sparsity ramps from 0 to the
target as

    s(t) = target * (1 - (1 - p) ** power),   p = clip((t - begin) / (end - begin), 0, 1)

over the pruning steps ``t`` (``begin`` and ``end`` are fractions of them), so the last
``1 - end`` of fine-tuning recovers at the final sparsity. Each kernel is pruned to ``s(t)`` by
its own magnitude threshold, the masks are recomputed every ``frequency`` steps and re-applied
after every step (so the optimiser cannot revive a pruned weight). A pruned weight is an exact
zero in the saved model, so compressed files shrink (the gzipped ``.tflite`` size in
``metrics.json``). ``tensorflow-model-optimization`` rejects Keras 3 models; this is tfxfer's own.

Masks are recomputed from the weights (zeros are the smallest magnitudes), so a resumed run
needs no extra state.

Example:
    >>> round(schedule(25, 100, 0.8), 3), round(schedule(100, 100, 0.8), 3)
    (0.563, 0.8)
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

MIN_SIZE = 1024


def schedule(
    step: int, total: int, target: float, begin: float = 0.0, end: float = 0.75, power: int = 3
) -> float:
    """Target sparsity after ``step`` of ``total`` pruning steps."""
    start, stop = begin * total, max(end * total, begin * total + 1)
    p = min(max((step - start) / (stop - start), 0.0), 1.0)
    return target * (1.0 - (1.0 - p) ** power)


def prunable(model: keras.Model, trainable_only: bool = True) -> list:
    """The kernels that pruning zeroes: Conv2D and Dense kernels of at least MIN_SIZE weights."""
    kinds = (keras.layers.Conv2D, keras.layers.Dense)
    out = []
    for layer in _leaves(model):
        if (
            isinstance(layer, kinds)
            and not isinstance(layer, keras.layers.DepthwiseConv2D)
            and (layer.trainable or not trainable_only)
            and int(np.prod(layer.kernel.shape)) >= MIN_SIZE
        ):
            out.append(layer.kernel)
    return out


def _leaves(layer):
    children = getattr(layer, "layers", None)
    if not children:
        yield layer
        return
    for child in children:
        yield from _leaves(child)


def mask_for(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Keeps all but the ``round(sparsity * size)`` smallest-magnitude weights."""
    k = int(round(sparsity * weights.size))
    if k <= 0:
        return np.ones(weights.shape, bool)
    flat = np.abs(weights).ravel()
    order = np.argpartition(flat, k - 1)[:k]
    mask = np.ones(flat.size, bool)
    mask[order] = False
    return mask.reshape(weights.shape)


class MagnitudePruning(keras.callbacks.Callback):
    """Prunes ``model``'s trainable kernels during ``fit``; see the module docstring.

    Args:
        model: The model whose kernels are pruned (the backbone and heads it holds).
        target: Final sparsity in [0, 1).
        total_steps: Optimiser steps of all pruning phases together.
        offset: Pruning steps taken before this ``fit`` (earlier phases and stages).
        steps_per_epoch: Steps of one epoch of this ``fit``.
        begin, end, power, frequency: The schedule (fractions of ``total_steps``; steps).
    """

    def __init__(
        self,
        model,
        target: float,
        total_steps: int,
        offset: int,
        steps_per_epoch: int,
        begin: float = 0.0,
        end: float = 0.75,
        power: int = 3,
        frequency: int = 0,
    ):
        super().__init__()
        self.pruned_model, self.target, self.total = model, target, max(1, total_steps)
        self.offset, self.steps = offset, steps_per_epoch
        self.begin, self.end, self.power = begin, end, power
        self.frequency = frequency or max(1, self.total // 50)
        self.kernels = prunable(model)
        self.masks: dict[int, np.ndarray] = {}
        self.epoch = 0
        self.sparsity = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        step = self.offset + self.epoch * self.steps + batch
        if not self.masks or step % self.frequency == 0:
            self.sparsity = schedule(
                step + 1, self.total, self.target, self.begin, self.end, self.power
            )
            # the masks live as tensors next to the weights (on the GPU there): only this
            # update, every `frequency` steps, reads the weights back to the host
            self.masks = {
                id(v): tf.constant(mask_for(np.asarray(v), self.sparsity), v.dtype)
                for v in self.kernels
            }
            self._apply()

    def on_train_batch_end(self, batch, logs=None):
        self._apply()

    def on_train_end(self, logs=None):
        if self.masks:
            self._apply()

    def _apply(self) -> None:
        for v in self.kernels:
            v.assign(v * self.masks[id(v)])


def plan(stages, steps_per_epoch: int) -> dict:
    """``{stage key: (offset, total, steps_per_epoch)}`` for the stages that train the backbone.

    ``offset`` counts the pruning steps of the stages before; ``total`` those of all of them.
    """
    offsets, total = {}, 0
    for stage in stages:
        if stage.scope != "head":
            offsets[stage.key] = total
            total += stage.epochs * steps_per_epoch
    return {key: (offset, total, steps_per_epoch) for key, offset in offsets.items()}


def callback(model: keras.Model, settings, pruning: dict, key: str) -> MagnitudePruning:
    """The :class:`MagnitudePruning` callback of one stage, from the config's ``prune`` table
    (:class:`tfxfer.config.Prune`) and :func:`plan`'s entry for the stage."""
    offset, total, steps = pruning[key]
    return MagnitudePruning(
        model,
        settings.sparsity,
        total,
        offset,
        steps,
        settings.begin,
        settings.end,
        settings.power,
        settings.frequency,
    )


def report(model: keras.Model) -> dict:
    """Measured sparsity: zero weights among all prunable kernels (trainable or not)."""
    kernels = prunable(model, trainable_only=False)
    total = sum(int(np.prod(v.shape)) for v in kernels)
    zeros = sum(int((np.asarray(v) == 0).sum()) for v in kernels)
    all_weights = sum(int(np.prod(v.shape)) for v in model.weights)
    return {
        "prunable_weights": total,
        "zero_weights": zeros,
        "sparsity": round(zeros / max(1, total), 4),
        "sparsity_of_all_weights": round(zeros / max(1, all_weights), 4),
    }
