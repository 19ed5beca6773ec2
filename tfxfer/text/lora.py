"""LoRA on a KerasHub encoder through Keras's ``enable_lora``, and its one pitfall on reload.

:func:`enable` adapts the target layers (default: each attention's query and value).

Keras saves a LoRA layer with ``A @ B`` merged into its kernel, and loading weights sets ``A``
and ``B`` to zero. Both zero, neither gets a gradient, so a restored or resumed run would never
train them again. :func:`revive_lora` re-draws ``A`` (``B`` stays zero: the function is
unchanged); :class:`ReviveLora` does it when ``fit`` starts, after BackupAndRestore has loaded.

Example:
    >>> from tfxfer.text import lora  # doctest: +SKIP
    >>> lora.enable(tm, cfg.lora)  # doctest: +SKIP
"""

from __future__ import annotations

import keras
from keras import ops

from tfxfer.errors import UserError


def enable(tm, settings) -> None:
    """Enables LoRA (:class:`~tfxfer.config.Lora` ``settings``) on the target layers of
    ``tm.backbone``; their kernels are frozen, ``A`` and ``B`` added."""
    targets = settings.targets or tuple(tm.backbone.default_lora_layer_names())
    found = [
        layer
        for layer in tm.backbone._flatten_layers(include_self=False)
        if layer.name in targets and hasattr(layer, "enable_lora")
    ]
    if not found:
        raise UserError(
            "lora.targets must name layers of the encoder that support LoRA",
            got=list(targets),
            fix="leave lora.targets empty for the default (each attention's query and value)",
        )
    alpha = {} if settings.alpha is None else {"lora_alpha": settings.alpha}  # Keras >= 3.10
    for layer in found:
        layer.enable_lora(settings.rank, **alpha)
    tm.lora_layers = found


def revive_lora(tm) -> int:
    """Re-draws ``A`` of every adapter whose ``A`` and ``B`` are both zero; returns how many.

    Keras saves a LoRA layer with ``A @ B`` merged into its kernel, and loading weights sets
    ``A`` and ``B`` to zero. Both zero, neither gets a gradient, so training would never move
    them again. With ``A`` re-drawn and ``B`` still zero, the function is unchanged and training
    goes on, with a fresh adapter on the merged weights (after a resumed epoch or phase).
    """
    revived = 0
    for layer in tm.lora_layers:
        a, b = layer.lora_kernel_a, layer.lora_kernel_b
        if not ops.any(a) and not ops.any(b):
            a.assign(keras.initializers.HeUniform(seed=revived)(a.shape, a.dtype))
            revived += 1
    return revived


class ReviveLora(keras.callbacks.Callback):
    """:func:`revive_lora` at the start of ``fit``, after BackupAndRestore has loaded."""

    def __init__(self, tm):
        super().__init__()
        self.tm = tm

    def on_train_begin(self, logs=None):
        revive_lora(self.tm)
