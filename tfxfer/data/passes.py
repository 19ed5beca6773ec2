"""Datasets rebuilt on every pass, with the pass's number inside.

Keras's ``fit`` iterates a dataset once per epoch. :func:`per_epoch` builds each pass anew from
its epoch number (0 on the first pass, then 1, 2, ...), counted by a variable on this side of
the graph: a shuffle seeded from it gives every epoch its own order, which a dataset serialised
to the ``tf.data`` service (rebuilt from the same seeds for each job) would not, and a streamed
split's first pass can differ from the later ones (:mod:`tfxfer.data.filling`).

Example:
    >>> import tensorflow as tf
    >>> ds = per_epoch(lambda epoch: tf.data.Dataset.from_tensors(epoch), 1)
    >>> [int(x) for x in ds], [int(x) for x in ds]
    ([0], [1])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import tensorflow as tf


def per_epoch(make: Callable[[tf.Tensor], tf.data.Dataset], n: int | None = None):
    """A dataset whose every pass is ``make(epoch)`` (an int64 scalar tensor).

    Args:
        make: Builds one pass from its epoch number.
        n: The elements of a pass, asserted as the dataset's cardinality; None when a pass's
            length is known only as it goes (it is then unknown to Keras, which runs the pass
            to its end).
    """
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="data_epoch")

    def one_pass(_):
        return make(epoch.assign_add(1) - 1)

    with warnings.catch_warnings():  # distribute() reads the options of a traced dataset
        warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data")
        ds = tf.data.Dataset.range(1).flat_map(one_pass)
    return ds if n is None else ds.apply(tf.data.experimental.assert_cardinality(n))
