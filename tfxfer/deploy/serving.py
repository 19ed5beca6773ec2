"""The exported SavedModel: encoded images in, class names and probabilities out.

Signatures (``tf.saved_model.load(path).signatures[...]``, or the same names as methods):

- ``serve_bytes`` (also ``serving_default``): ``image_bytes``, a ``string[N]`` batch of
  encoded JPEG/PNG/GIF/BMP/WebP files of any size. Decoding, EXIF orientation and the resize run
  in the graph (:mod:`tfxfer.data.graph_decode`), exactly as training read the files.
- ``serve_images``: ``images``, a ``uint8[N, H, W, 3]`` batch of one size; resized in-graph.
- ``decode``: ``image_bytes`` -> ``uint8[N, size, size, 3]``, what the model sees (for clients
  that build test-time-augmentation views, such as ``tfxfer predict --tta``).
- ``metadata``: no inputs -> ``class_names``, ``top_k``, ``image_size``, ``tasks`` (and
  ``<task>/class_names`` for each head of a multi-task model).

Each prediction signature returns ``probabilities`` ``[N, K]``, ``top_k_classes`` (class-name
strings, best first) and ``top_k_scores`` ``[N, k]``, and ``logits``. ``k`` is the config's
``top_k`` (default 5), capped at the number of classes. A multi-task model returns every
classification head's outputs under ``<task>/probabilities``, ``<task>/top_k_classes`` and so
on. The class names are constants in the graph: the SavedModel is the whole deployable.

Example:
    >>> import tensorflow as tf  # doctest: +SKIP
    >>> served = tf.saved_model.load("runs/small_similar/saved_model")  # doctest: +SKIP
    >>> out = served.serve_bytes(tf.constant([open("ant.jpg", "rb").read()]))  # doctest: +SKIP
    >>> out["top_k_classes"][0, 0].numpy()  # doctest: +SKIP
    b'ants'
"""

from __future__ import annotations

import functools
from pathlib import Path

import keras
import tensorflow as tf

from tfxfer.atomic import write_with
from tfxfer.data import graph_decode as decode
from tfxfer.deploy import savedmodel

DEFAULT_TOP_K = 5


def inference_graph(model: keras.Model, dtype: str = "float32") -> keras.Model:
    """The training graph ``model`` without its augmenter: images (0-255) -> logits.

    Works on a :class:`~tfxfer.models.model.TransferModel`'s ``model`` and on the same graph
    loaded back from ``model.keras``. Every layer (and weight) is shared with ``model``.
    """
    size = model.input.shape[1]
    inputs = keras.Input((size, size, 3), dtype=dtype, name="image")
    x = model.get_layer("preprocess")(inputs)
    x = model.get_layer("backbone")(x, training=False)
    x = model.get_layer("pool")(x)
    heads = head_layers(model)
    if list(heads) == ["head"]:
        outputs = heads["head"](x, training=False)
    else:
        outputs = {name: head(x, training=False) for name, head in heads.items()}
    return keras.Model(inputs, outputs, name="inference")


def head_layers(model: keras.Model) -> dict:
    """``{task: head layer}``: ``head`` alone, or ``head_<task>`` for every task."""
    heads = {
        layer.name[len("head_") :]: layer
        for layer in model.layers
        if layer.name.startswith("head_")
    }
    return heads or {"head": model.get_layer("head")}


def predictions(logits, class_names, k: int) -> dict:
    """``probabilities``, ``top_k_classes``, ``top_k_scores`` and ``logits`` of a batch."""
    logits = tf.cast(logits, tf.float32)
    probabilities = tf.nn.softmax(logits, axis=-1)
    scores, indices = tf.math.top_k(probabilities, k=k)
    return {
        "probabilities": probabilities,
        "top_k_classes": tf.gather(class_names, indices),
        "top_k_scores": scores,
        "logits": logits,
    }


IMAGE_BYTES = tf.TensorSpec([None], tf.string, name="image_bytes")


PIXELS = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


# The decoding and the resize depend on the size alone and read no variable, so one traced graph
# is valid in every SavedModel: tracing them is about a quarter of an export's time, paid once per
# process and size instead of once per export (a notebook, `auto --compare`, the tests).
@functools.cache
def _decoder(size: int):
    """``image_bytes`` -> ``float32[N, size, size, 3]``, as training decoded the files."""

    def decode_all(image_bytes):
        return tf.map_fn(
            lambda b: decode.decode_image(b, size),
            image_bytes,
            fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32),
        )

    return savedmodel.endpoint(decode_all, IMAGE_BYTES)


@functools.cache
def _resizer(size: int):
    """``uint8[N, H, W, 3]`` of any one size -> ``float32[N, size, size, 3]``."""
    return savedmodel.endpoint(lambda images: decode.resize(images, size), PIXELS)


class _Server:
    def __init__(self, graph: keras.Model, class_names: dict[str, list[str]], top_k: int):
        self.size = graph.input.shape[1]
        self.names = {task: tf.constant(names) for task, names in class_names.items()}
        self.k = {task: min(top_k, len(names)) for task, names in class_names.items()}
        self.single = list(class_names) == ["head"]
        # The graph and the decoding are functions of their own, each traced once and called by
        # every endpoint that needs it (two endpoints each, which would otherwise trace twice).
        images = tf.TensorSpec([None, self.size, self.size, 3], graph.input.dtype)
        self.logits = savedmodel.endpoint(lambda x: graph(x, training=False), images)
        self.decode = _decoder(self.size)
        self.resize = _resizer(self.size)

    def _outputs(self, images):
        logits = self.logits(images)
        if self.single:
            return predictions(logits, self.names["head"], self.k["head"])
        return {
            f"{task}/{key}": value
            for task in self.names
            for key, value in predictions(logits[task], self.names[task], self.k[task]).items()
        }

    def serve_bytes(self, image_bytes):
        return self._outputs(self.decode(image_bytes))

    def serve_images(self, images):
        return self._outputs(self.resize(images))

    def decoded(self, image_bytes):
        return {"images": tf.cast(self.decode(image_bytes), tf.uint8)}

    def metadata(self):
        first = next(iter(self.names))
        out = {
            "class_names": self.names[first],
            "top_k": tf.constant(self.k[first]),
            "image_size": tf.constant(self.size),
            "tasks": tf.constant(list(self.names)),
        }
        if not self.single:
            out.update({f"{task}/class_names": names for task, names in self.names.items()})
        return out


def export(
    model: keras.Model,
    class_names: dict[str, list[str]],
    path: str | Path,
    top_k: int = DEFAULT_TOP_K,
) -> Path:
    """Writes the serving SavedModel of a trained training graph, atomically.

    Args:
        model: The training graph (``TransferModel.model`` or a loaded ``model.keras``).
        class_names: ``{task: class names}``; ``{"head": names}`` for a single-task model.
            Only the heads named here are served (a domain head, for one, is left out).
        path: Output directory.
        top_k: How many best classes each prediction lists.
    """
    graph = inference_graph(model)
    server = _Server(graph, class_names, top_k)
    endpoints = {  # the first is also `serving_default` (what TF Serving's REST API calls)
        "serve_bytes": savedmodel.endpoint(server.serve_bytes, IMAGE_BYTES),
        "serve_images": savedmodel.endpoint(server.serve_images, PIXELS),
        "decode": savedmodel.endpoint(server.decoded, IMAGE_BYTES),
        "metadata": savedmodel.endpoint(server.metadata),
    }
    write_with(path, lambda tmp: savedmodel.write(tmp, endpoints, graph.variables))
    return Path(path)
