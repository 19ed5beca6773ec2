"""The target-side terms of the adaptation methods beyond DANN, as plain TensorFlow functions.

- **CDAN** (Long et al., NeurIPS 2018) conditions the domain classifier on the classifier's
  predictions: it sees the multilinear map ``f ⊗ g`` (every feature times every class
  probability, flattened) instead of the features ``f``. When ``f ⊗ g`` would be wider than
  :data:`MULTILINEAR_MAX` the paper's randomized map is used instead:
  ``(R_f f) ⊙ (R_g g) / sqrt(d)`` with fixed Gaussian ``R_f``, ``R_g`` of output width ``d``
  (:class:`RandomizedMultilinear`). The probabilities ``g`` are cut from the gradient, as in the
  authors' code: the domain loss trains the features, not the label head.
- **CDAN+E** weights each image's domain loss by ``1 + exp(-H(g))`` (confident predictions
  count more), normalised within each domain so that both domains weigh the same
  (:func:`entropy_weights`).
- **MCC** (Jin et al., ECCV 2020) minimises the *class confusion* of a target batch
  (:func:`mcc_loss`): how much probability mass the batch spreads across pairs of different
  classes, after temperature scaling (T = 2.5) and entropy-based sample weights.

Example:
    >>> import numpy as np
    >>> f, g = np.ones((2, 3), "float32"), np.array([[1.0, 0.0], [0.5, 0.5]], "float32")
    >>> multilinear(f, g).numpy().tolist()
    [[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]]
    >>> split, same = [[2.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [2.0, 0.0]]
    >>> [round(float(mcc_loss(np.array(z, "float32"))), 4) for z in (split, same)]
    [0.4278, 0.5]
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

# The widest f ⊗ g the domain classifier takes; wider, the randomized map. The exact map is the
# method's definition (and TLlib's default); the digit networks' maps (LeNet 500 x 10 = 5,000,
# the DANN paper's 768 x 10 = 7,680) stay exact. MNIST -> USPS, LeNet, seed 0: CDAN+E 0.937
# with the exact map against 0.904 with the randomized one of width 1,024 (bench/README.md).
MULTILINEAR_MAX = 8192


def multilinear(features, probs):
    """``f ⊗ g`` per row, flattened: row ``i`` holds ``features[i, a] * probs[i, c]`` at
    ``a * classes + c``."""
    features, probs = tf.convert_to_tensor(features), tf.convert_to_tensor(probs)
    outer = features[:, :, None] * tf.cast(probs, features.dtype)[:, None, :]
    return tf.reshape(outer, (-1, features.shape[-1] * probs.shape[-1]))


@keras.saving.register_keras_serializable(package="tfxfer")
class RandomizedMultilinear(keras.layers.Layer):
    """``(f R_f) ⊙ (g R_g) / sqrt(dim)``: CDAN's unbiased estimate of ``f ⊗ g``'s inner
    products at width ``dim``, with fixed (never trained) standard-normal ``R_f``, ``R_g``.

    Args:
        dim: Output width ``d``.
        seed: Seed of the two random matrices.
    """

    def __init__(self, dim: int = 1024, seed: int | None = 0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.seed = int(dim), seed

    def build(self, features_shape, probs_shape=None):
        rng = np.random.default_rng(self.seed)
        f_width, classes = int(features_shape[-1]), int(probs_shape[-1])
        self.r_f = self.add_weight(
            shape=(f_width, self.dim),
            initializer=keras.initializers.Constant(rng.standard_normal((f_width, self.dim))),
            trainable=False,
            name="r_features",
        )
        self.r_g = self.add_weight(
            shape=(classes, self.dim),
            initializer=keras.initializers.Constant(rng.standard_normal((classes, self.dim))),
            trainable=False,
            name="r_probs",
        )

    def call(self, features, probs):
        f = tf.matmul(features, tf.cast(self.r_f, features.dtype))
        g = tf.matmul(tf.cast(probs, features.dtype), tf.cast(self.r_g, features.dtype))
        return f * g / math.sqrt(self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "seed": self.seed}


def entropy(probs):
    """Shannon entropy (nats) of each row of ``probs``."""
    probs = tf.convert_to_tensor(probs)
    return -tf.reduce_sum(probs * tf.math.log(probs + 1e-7), axis=-1)


def entropy_weights(probs, is_source):
    """CDAN+E's per-image weights of the domain loss: ``1 + exp(-H(g))``, divided by their sum
    within the image's domain (so each domain weighs 1 in total), cut from the gradient.

    Args:
        probs: Class probabilities, ``(n, classes)``.
        is_source: Boolean ``(n,)``: which rows are source images.
    """
    w = tf.stop_gradient(1.0 + tf.exp(-entropy(probs)))
    src = tf.cast(is_source, w.dtype)
    return w * src / tf.reduce_sum(w * src) + w * (1.0 - src) / tf.reduce_sum(w * (1.0 - src))


def mcc_loss(logits, temperature: float = 2.5):
    """Minimum class confusion of one (target) batch, Jin et al. 2020.

    ``Y = softmax(logits / T)``; each row weighs ``n (1 + exp(-H_i)) / sum_j (1 + exp(-H_j))``
    (weights cut from the gradient); the class correlation ``C = Y^T diag(w) Y`` is normalised
    so that each column sums to 1, and the loss is the mean over classes of the off-diagonal
    mass of a column: 0 when every image's mass is in one class and no two classes share
    images.
    """
    logits = tf.convert_to_tensor(logits)
    y = tf.nn.softmax(logits / temperature, axis=-1)
    w = tf.stop_gradient(1.0 + tf.exp(-entropy(y)))
    w = tf.cast(tf.shape(y)[0], y.dtype) * w / tf.reduce_sum(w)
    confusion = tf.matmul(y * w[:, None], y, transpose_a=True)
    confusion = confusion / tf.reduce_sum(confusion, axis=0, keepdims=True)
    classes = tf.cast(tf.shape(y)[1], y.dtype)
    return (tf.reduce_sum(confusion) - tf.linalg.trace(confusion)) / classes
