"""Random layers inside a backbone that stop being random when their layer is frozen.

Keras 3.15 does not honour ``backbone(x, training=False)`` once the outer model is called in
training mode (keras#20285): a Functional model passes the outer ``training`` value to every
layer it holds. BatchNormalization copes on its own (a frozen BN runs in inference mode), but
Dropout does not look at ``trainable``. EfficientNet and EfficientNetV2 put stochastic-depth
``Dropout`` layers in their blocks, so under ``fit`` a fully frozen backbone, and the frozen
blocks of a partly trained one, would compute noisy features, unlike the cached features of a
head-only phase.

:func:`make_freezable` turns such a layer into a :class:`FreezableDropout`, the same layer with
one rule added: **a frozen dropout layer is the identity**. In the blocks that train, stochastic
depth stays active under ``fit``, as in the paper and in Keras's own training of these families.

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


def make_freezable(layer: keras.layers.Layer) -> bool:
    """Turns a plain ``Dropout`` into a :class:`FreezableDropout` in place; True when it did.

    The layer object stays (its name, config, seed generator and place in the graph); only its
    class changes, which is sound because :class:`FreezableDropout` adds no state to
    ``Dropout``, only the rule in ``call``. In place rather than by copying the graph: a copy
    re-creates and re-initialises every weight of the backbone, which doubled the time to build
    an EfficientNet. Only the exact ``Dropout`` class is swapped (spatial and other subclasses
    keep their own call).
    """
    if type(layer) is not keras.layers.Dropout:
        return False
    layer.__class__ = FreezableDropout
    return True


def freezable(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new :class:`FreezableDropout` with the config of a plain ``Dropout``; any other layer
    is returned as it is (for graph copies, whose layers are new anyway)."""
    if type(layer) is keras.layers.Dropout:
        return FreezableDropout.from_config(layer.get_config())
    return layer
