"""A class-normalised attribute MLP for zero-shot, after Skorokhodov & Elhoseiny (ICLR 2021).

"Class normalization for (continual) zero-shot learning" shows that a small MLP which maps each
class's attributes to a prototype in the visual feature space, scored by scaled cosine
similarity, beats far larger zero-shot models once its activations are normalised so that their
variance is kept through the layers. This module builds that model on frozen features, in a few
seconds on a CPU:

- **attributes normalisation**: each signature is centred by the seen classes' mean and scaled
  to unit L2 norm;
- **the MLP**: ``Dense(hidden) -> ReLU -> class normalisation -> Dense(feature width)``, where
  class normalisation standardises each class's hidden vector over its units (no learned
  scale), so a class's prototype depends on its own attributes only and unseen classes are
  embedded as seen ones are;
- **normalise + scale**: the logit of class ``c`` for image ``x`` is
  ``scale * cos(prototype_c, x)``, ``x`` being the standardised feature vector;
- trained by softmax cross-entropy over the seen classes with Adam (full batches: the features
  are fixed), L2 weight decay on both kernels.

This is tfxfer's reading of the paper's recipe, with tfxfer's own hyperparameters; it is not a
transcription of the authors' code.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> S = np.array([[1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0],
    ...               [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1], [1, 0, 0, 0, 0, 1],
    ...               [1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]], float)  # classes 6, 7: unseen
    >>> mix = rng.normal(size=(6, 16))
    >>> X = np.concatenate([rng.normal(S[c] @ mix, 0.3, (40, 16)) for c in range(6)])
    >>> model = ClassNormMLP(hidden=32, steps=200).fit(X, np.repeat(np.arange(6), 40), S[:6])
    >>> unseen = np.concatenate([rng.normal(S[c] @ mix, 0.3, (4, 16)) for c in (6, 7)])
    >>> model.scores(unseen, S[6:]).argmax(axis=1) + 6
    array([6, 6, 6, 6, 7, 7, 7, 7])
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfxfer.zero_shot.standardize import Standardizer


class ClassNormMLP:
    """See the module docstring.

    Args:
        hidden: Units of the hidden layer.
        steps: Full-batch Adam steps.
        lr: Adam's learning rate.
        scale: The cosine logits' scale (``s`` of normalise + scale).
        weight_decay: L2 penalty on both kernels, added to the mean cross-entropy.
        seed: Seeds the initial weights.
    """

    def __init__(
        self,
        hidden: int = 256,
        steps: int = 300,
        lr: float = 1e-3,
        scale: float = 10.0,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ):
        self.hidden, self.steps, self.lr = hidden, steps, lr
        self.scale, self.weight_decay, self.seed = scale, weight_decay, seed

    def fit(self, features: np.ndarray, labels: np.ndarray, signatures: np.ndarray):
        """``labels`` index the rows of ``signatures`` (the seen classes)."""
        self.standardize = Standardizer().fit(features)
        self.attribute_mean = np.asarray(signatures, np.float64).mean(axis=0)
        x = tf.constant(self._images(features))
        a = tf.constant(self._attributes(signatures))
        y = tf.constant(np.asarray(labels, np.int64))
        rng = np.random.default_rng(self.seed)
        width_in, width_out = a.shape[1], x.shape[1]
        self.weights = [
            keras.Variable(_glorot(rng, width_in, self.hidden), name="w1"),
            keras.Variable(np.zeros(self.hidden, np.float32), name="b1"),
            keras.Variable(_glorot(rng, self.hidden, width_out), name="w2"),
            keras.Variable(np.zeros(width_out, np.float32), name="b2"),
        ]
        optimizer = keras.optimizers.Adam(self.lr)
        optimizer.build(self.weights)  # its slots exist before the step is traced

        @tf.function(autograph=False)
        def step():
            with tf.GradientTape() as tape:
                logits = self._logits(x, a)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                ) + self.weight_decay * (
                    tf.reduce_sum(self.weights[0] ** 2) + tf.reduce_sum(self.weights[2] ** 2)
                )
            optimizer.apply_gradients(zip(tape.gradient(loss, self.weights), self.weights))
            return loss

        self.losses = [float(step()) for _ in range(self.steps)]
        return self

    def scores(self, features: np.ndarray, signatures: np.ndarray) -> np.ndarray:
        """``(n, classes)`` scaled cosine of each image with each class's prototype."""
        x = tf.constant(self._images(features))
        return self._logits(x, tf.constant(self._attributes(signatures))).numpy().astype(float)

    def _images(self, features):
        return self.standardize(np.asarray(features, np.float64)).astype(np.float32)

    def _attributes(self, signatures):
        a = np.asarray(signatures, np.float64) - self.attribute_mean
        return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-6)).astype(np.float32)

    def _prototypes(self, a):
        w1, b1, w2, b2 = self.weights
        h = tf.nn.relu(a @ w1 + b1)
        mean, variance = tf.nn.moments(h, axes=[1], keepdims=True)
        h = (h - mean) * tf.math.rsqrt(variance + 1e-5)  # class normalisation
        return h @ w2 + b2

    def _logits(self, x, a):
        prototypes = tf.math.l2_normalize(self._prototypes(a), axis=1)
        return self.scale * tf.math.l2_normalize(x, axis=1) @ tf.transpose(prototypes)


def _glorot(rng, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
