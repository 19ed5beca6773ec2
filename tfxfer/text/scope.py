"""What trains in a text phase: ``head``, ``top_k``, ``full`` or ``lora``, and at what rate.

:func:`apply_scope` sets the ``trainable`` flags (recompile afterwards). A frozen part runs in
inference mode: its dropout layers are set to rate 0 while it is frozen (keras#20285:
``training=False`` given to an inner call does not hold once the outer call trains), so the
frozen encoder under a trainable head, or the frozen lower layers under ``top_k``, compute the
same thing in training as in inference. Layers the head never sees (BERT's pooler) stay frozen.

:func:`layer_multipliers` gives layer-wise learning rates.

Example:
    >>> from tfxfer.text import scope  # doctest: +SKIP
    >>> scope.apply_scope(tm, "top_k", top_k=2)  # doctest: +SKIP
"""

from __future__ import annotations

import math

import keras

from tfxfer.config import Phase


def apply_scope(tm, scope: str, top_k: int = 2) -> None:
    """Sets what trains: ``head``, ``top_k``, ``full`` or ``lora``; recompile afterwards."""
    backbone = tm.backbone
    backbone.trainable = scope != "head"
    if scope == "top_k":
        top = {id(layer) for layer in tm.transformer_layers[-top_k:]}
        for layer in backbone.layers:
            layer.trainable = id(layer) in top
    elif scope == "lora":
        for layer in backbone.layers:
            layer.trainable = False
        lora = {id(layer) for layer in tm.lora_layers}
        for layer in backbone._flatten_layers(include_self=False):
            if id(layer) in lora:
                _unfreeze_path(backbone, layer)
    for layer in backbone.layers:
        if id(layer) in tm.unused:  # e.g. BERT's pooler: it would train on no gradient
            layer.trainable = False
    _quiet_frozen(tm)


def _unfreeze_path(backbone: keras.Model, target) -> None:
    """Makes ``target`` trainable, and its parents, without unfreezing its siblings."""

    def walk(layer, path):
        if layer is target:
            target.trainable = True
            for parent in path[:-1]:
                parent._trainable = True  # only the flag: the setter would unfreeze siblings
            frozen = getattr(target, "_kernel", None)  # LoRA trains A and B, not the kernel
            if frozen is not None:
                frozen.trainable = False
            return True
        return any(walk(child, path + [child]) for child in layer._layers)

    walk(backbone, [])


def _quiet_frozen(tm) -> None:
    """Dropout at rate 0 inside every top-level part of the encoder that holds no trainable
    variable (a weightless layer goes with the layer before it); the original rates elsewhere."""
    active = False
    for layer in tm.backbone.layers:
        if layer.weights:
            active = (
                tm.backbone.trainable
                and any(v.trainable for v in layer.weights)
                and layer.trainable
            )
        for sub in layer._flatten_layers(include_self=True):
            if isinstance(sub, keras.layers.Dropout):
                sub.rate = tm._rates.get(id(sub), sub.rate) if active else 0.0


def layer_multipliers(tm, phase: Phase) -> dict[str, float]:
    """Layer-wise rates: transformer layer ``i`` of ``L`` at ``decay ** (L - i)``, everything
    below the first at ``decay ** (L + 1)``, the head at 1. ``lr_range=[low, high]`` sets the
    decay that puts the embeddings at ``low`` and the head at ``high``."""
    layers = tm.transformer_layers
    depth = len(layers)
    decay = phase.lr_decay
    if phase.lr_range:
        low, high = phase.lr_range
        decay = (low / high) ** (1.0 / (depth + 1))
    if decay == 1.0:
        return {}
    index = {id(layer): i for i, layer in enumerate(layers)}
    factors, level = {}, depth + 1
    for layer in tm.backbone.layers:
        if id(layer) in index:
            level = depth - index[id(layer)]
        for v in layer.weights:
            factors[v.path] = decay**level
    return factors


def head_rate(phase: Phase) -> float:
    """The head's rate: ``lr``, or ``lr_high`` of an ``lr_range``."""
    return phase.lr_range[1] if phase.lr_range else phase.lr


def count(weights) -> int:
    """Number of scalars in ``weights``."""
    return int(sum(math.prod(v.shape) for v in weights))
