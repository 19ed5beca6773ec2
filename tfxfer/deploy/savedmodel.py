"""Writing a SavedModel whose endpoints are each traced once.

``keras.export.ExportArchive`` traces every endpoint twice: once outside TensorFlow's save
context, to list the variables the endpoint captures, and again inside ``tf.saved_model.save``,
whose save context is part of the tracing key, and tracing is most of an export's time. Here the
variables are known before tracing (those of the Keras graph the endpoints run), so each
endpoint is traced once, inside the save.

Only the ``tf.Variable`` behind each Keras variable is tracked. Tracking the Keras model too
would store each weight twice (keras#23553: twice the files, and twice the memory of every
server that loads them).

Example:
    >>> import keras, tempfile, tensorflow as tf
    >>> layer = keras.layers.Dense(2)
    >>> layer.build((None, 3))
    >>> double = tf.function(
    ...     lambda x: {"y": layer(x) * 2.0},
    ...     input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")],
    ...     autograph=False,
    ... )
    >>> path = tempfile.mkdtemp()
    >>> write(path, {"double": double}, layer.variables)
    >>> served = tf.saved_model.load(path)
    >>> sorted(served.signatures), [v.shape.as_list() for v in served.variables]
    (['double', 'serving_default'], [[3, 2], [2]])
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import tensorflow as tf


def endpoint(fn, *specs: tf.TensorSpec):
    """``fn`` as a ``tf.function`` of fixed input ``specs`` (no autograph: graph code only)."""
    return tf.function(fn, input_signature=list(specs), autograph=False)


def write(path: str | Path, endpoints: dict, variables: Iterable) -> None:
    """Writes ``endpoints`` (``{name: tf.function with an input signature}``) to ``path``.

    Each endpoint is also a signature; the first is ``serving_default`` too (what TF Serving's
    REST API calls). ``variables`` must hold every variable the endpoints read: Keras variables
    (their ``tf.Variable`` is tracked) or ``tf.Variable`` objects. ``path`` is written directly;
    callers write to a temporary directory and rename it (:func:`tfxfer.atomic.write_with`).
    """
    root = tf.__internal__.tracking.AutoTrackable()
    root.variables = [_tf_variable(v) for v in variables]  # `load(path).variables` lists them
    for name, fn in endpoints.items():
        setattr(root, name, fn)
    signatures = {**endpoints, "serving_default": next(iter(endpoints.values()))}
    tf.saved_model.save(root, str(path), signatures=signatures)


def _tf_variable(variable) -> tf.Variable:
    if isinstance(variable, tf.Variable):
        return variable
    inner = getattr(variable, "value", None)  # a Keras variable, outside any autocast scope
    if not isinstance(inner, tf.Variable):
        raise TypeError(
            f"a SavedModel tracks tf.Variable objects; got {type(variable).__name__} "
            f"{getattr(variable, 'path', variable)!r}, whose value is {type(inner).__name__}"
        )
    return inner
