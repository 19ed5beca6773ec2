"""Create a compiled model's training state before ``fit`` traces its step, so it traces once.

Keras 3 (TensorFlow backend) creates the optimizer's slots, and the state of the compiled loss and
metrics, lazily. Under a ``tf.distribute`` strategy it creates them before the first step (its
"symbolic build"); without one (a single device, the default strategy), it defers them to the
first trace of the training step. A ``tf.function`` that creates variables while it is traced is
traced a second time, on a graph that may not create any, so every ``fit`` on one device paid for
two traces of the whole forward and backward pass: on MobileNet 0.25 at 32 px, about 1.5 s of a
13.7 s two-phase run, per phase.

:func:`before_fit` creates that state first, from the dataset's ``element_spec`` (no batch is
read, so no shuffle or augmentation stream moves), and the step is traced once.

Example:
    >>> import keras, numpy as np, tensorflow as tf
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> ds = tf.data.Dataset.from_tensor_slices((np.zeros((8, 4), "float32"), np.zeros(8))).batch(4)
    >>> before_fit(model, ds)
    >>> model.optimizer.built
    True
"""

from __future__ import annotations

from typing import Any

import keras


def before_fit(model: keras.Model, dataset: Any = None) -> None:
    """Creates ``model``'s optimizer slots and compiled loss and metric state, if Keras would
    otherwise create them while tracing the first training step.

    Args:
        model: A compiled model (recompiled after every ``trainable`` change, as fit requires).
        dataset: What ``fit`` will be given: a ``tf.data.Dataset`` of ``(x, y)`` or
            ``(x, y, sample_weight)`` batches whose ``element_spec`` shapes the compiled loss
            and metrics. None (a model whose ``train_step`` has no compiled loss, such as the
            adversarial trainer) builds the optimizer only.
    """
    if getattr(model, "_distribute_strategy", None) is not None:
        return  # under a tf.distribute strategy Keras builds all of it before the first step
    spec = getattr(dataset, "element_spec", None)
    symbolic_build = getattr(model, "_symbolic_build", None)  # Keras's own (3.0 and later)
    if spec is not None and symbolic_build is not None:
        symbolic_build(data_batch=spec)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
