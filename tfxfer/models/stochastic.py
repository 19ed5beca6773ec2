"""Random layers inside a backbone that stop being random when their layer is frozen.

Keras 3.15 does not honour ``backbone(x, training=False)`` once the outer model is called in
training mode (keras#20285): a Functional model passes the outer ``training`` value to every
layer it holds. BatchNormalization copes on its own (a frozen BN runs in inference mode), but
Dropout does not look at ``trainable``. EfficientNet and EfficientNetV2 put stochastic-depth
``Dropout`` layers in their blocks, so under ``fit`` a fully frozen backbone, and the frozen
blocks of a partly trained one, would compute noisy features, unlike the cached features of a
head-only phase.

:func:`freezable` swaps such a layer for :class:`FreezableDropout`, the same layer with one rule
added: **a frozen dropout layer is the identity**. In the blocks that train, stochastic depth
stays active under ``fit``, as in the paper and in Keras's own training of these families.

Example:
    >>> import numpy as np
    >>> layer = FreezableDropout(0.5, seed=1)
    >>> x = np.ones((2, 4), "float32")
    >>> layer.trainable = False
    >>> bool(np.all(np.asarray(layer(x, training=True)) == 1.0))
    True
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfxfer")
class FreezableDropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` that runs in inference mode while ``trainable`` is False."""

    def call(self, inputs, training=False):
        return super().call(inputs, training=bool(training) and self.trainable)


def freezable(layer: keras.layers.Layer) -> keras.layers.Layer:
    """Plain ``Dropout`` becomes a new :class:`FreezableDropout`; any other layer is returned.

    Only the exact ``Dropout`` class is swapped (spatial and other subclasses keep their own
    call).
    """
    if type(layer) is keras.layers.Dropout:
        return FreezableDropout.from_config(layer.get_config())
    return layer
