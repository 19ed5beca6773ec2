"""The class-conditional GAN's two networks, and DiffAugment.

Why this GAN, for 28-64 px images and a few hundred per class:

- **Discriminator: spectral normalisation + projection + hinge loss** (Miyato et al., ICLR 2018;
  Miyato & Koyama, ICLR 2018). Dividing every weight by its largest singular value bounds the
  discriminator's Lipschitz constant, the property that keeps GAN training from diverging or
  collapsing without a gradient penalty (which would double the cost of every step on a CPU).
  The projection term ``embed(y) . phi(x)`` conditions on the class through an inner product,
  which the projection paper found steadier and better than concatenating the label.
- **Generator: DCGAN** (Radford et al., 2016) with batch norm, the label embedded and joined to
  the noise, and nearest-neighbour upsampling + 3x3 convolutions in place of transposed
  convolutions (no checkerboard artefacts; Odena et al., 2016). Two upsamplings up to 32 px,
  three up to 64 px: small enough to train in minutes on two CPU cores.
- **DiffAugment** (Zhao et al., NeurIPS 2020): random translation and cutout applied, the same
  way and differentiably, to real and generated images before the discriminator. With 100
  images per class a discriminator memorises the training set within a few hundred steps and
  its gradient stops teaching the generator; augmenting both sides prevents that without
  letting the augmentation leak into the samples.

Example:
    >>> import numpy as np
    >>> g = build_generator(num_classes=3, image_size=28, channels=1, latent_dim=8, width=8)
    >>> d = build_discriminator(num_classes=3, image_size=28, channels=1, width=8)
    >>> x = np.asarray(g([np.zeros((2, 8), "float32"), np.array([0, 2])]))
    >>> x.shape, tuple(d([x, np.array([0, 2])]).shape)
    ((2, 28, 28, 1), (2,))
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


def upsamplings(image_size: int) -> int:
    """Doublings from the generator's first grid to ``image_size``: 3 above 32 px (when the
    size allows), else 2."""
    return 3 if image_size > 32 and image_size % 8 == 0 else 2


@keras.saving.register_keras_serializable(package="tfxfer")
class SpectralNorm(keras.layers.Layer):
    """Wraps a Dense, Conv2D or Embedding layer so that its weight matrix is used divided by its
    spectral norm.

    The largest singular value ``sigma`` of the matrix (a kernel reshaped to
    ``(fan_in, units)``; an embedding table as ``(classes, dim)``) is estimated by one power
    iteration per training call, continuing from the vector ``u`` of the previous call (Miyato
    et al. 2018). The division happens inside the forward pass, so the gradient flows through
    ``sigma`` too, as in the paper; the stored weights are never overwritten. Inference runs
    the same power step from the stored ``u`` but does not store its result.
    """

    def __init__(self, layer: keras.layers.Layer, eps: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.layer, self.eps = layer, eps

    @property
    def matrix(self):
        """The wrapped layer's weight: its kernel, or an Embedding's table."""
        if isinstance(self.layer, layers.Embedding):
            return self.layer.embeddings
        return self.layer.kernel

    def build(self, input_shape):
        self.layer.build(input_shape)
        self.u = self.add_weight(
            shape=(self.matrix.shape[-1],), initializer="random_normal", trainable=False, name="u"
        )

    def sigma(self, training: bool = False) -> tf.Tensor:
        """The matrix's spectral-norm estimate (updating ``u`` when ``training``)."""
        w = tf.reshape(self.matrix, (-1, self.matrix.shape[-1]))
        u = tf.math.l2_normalize(tf.convert_to_tensor(self.u), epsilon=self.eps)
        v = tf.math.l2_normalize(tf.linalg.matvec(w, u), epsilon=self.eps)
        u_new = tf.math.l2_normalize(tf.linalg.matvec(w, v, transpose_a=True), epsilon=self.eps)
        if training:
            self.u.assign(u_new)
        u_new, v = tf.stop_gradient(u_new), tf.stop_gradient(v)
        return tf.tensordot(v, tf.linalg.matvec(w, u_new), 1)

    def call(self, inputs, training=False):
        scaled = self.matrix / self.sigma(training)
        if isinstance(self.layer, layers.Embedding):
            return tf.gather(scaled, tf.cast(inputs, tf.int32))
        if isinstance(self.layer, layers.Conv2D):
            out = tf.nn.conv2d(inputs, scaled, self.layer.strides, self.layer.padding.upper())
        else:
            out = tf.matmul(inputs, scaled)
        if self.layer.use_bias:
            out = tf.nn.bias_add(out, self.layer.bias)
        return self.layer.activation(out)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "eps": self.eps,
            "layer": keras.saving.serialize_keras_object(self.layer),
        }

    @classmethod
    def from_config(cls, config):
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        return cls(**config)


def build_generator(
    num_classes: int, image_size: int, channels: int, latent_dim: int = 64, width: int = 32
) -> keras.Model:
    """``[noise (B, latent_dim), labels (B,)] -> images (B, S, S, channels)`` in [-1, 1]."""
    ups = upsamplings(image_size)
    start = image_size // 2**ups
    z = keras.Input((latent_dim,), name="noise")
    y = keras.Input((), dtype="int32", name="label")
    h = layers.Concatenate()([z, layers.Embedding(num_classes, latent_dim)(y)])
    h = layers.Dense(start * start * width * 2**ups, use_bias=False)(h)
    h = layers.ReLU()(layers.BatchNormalization()(h))
    h = layers.Reshape((start, start, width * 2**ups))(h)
    for i in range(ups):
        h = layers.UpSampling2D(2, interpolation="nearest")(h)
        h = layers.Conv2D(width * 2 ** (ups - 1 - i), 3, padding="same", use_bias=False)(h)
        h = layers.ReLU()(layers.BatchNormalization()(h))
    out = layers.Conv2D(channels, 3, padding="same", activation="tanh", name="image")(h)
    return keras.Model([z, y], out, name="generator")


def _leaky(h):
    # max(h, 0.1 h): Keras's LeakyReLU here trips a grappler fusion bug in the gradient graph
    # ("remapper failed ... LeakyReluGrad"), which TensorFlow logs on every trace
    return layers.Maximum()([h, layers.Rescaling(0.1)(h)])


def build_discriminator(
    num_classes: int, image_size: int, channels: int, width: int = 32
) -> keras.Model:
    """``[images in [-1, 1], labels] -> (B,)`` realness scores: spectrally normalised
    convolutions, global sum pooling ``phi``, then ``linear(phi) + embed(y) . phi``, with the
    linear layer and the class embedding spectrally normalised too (as in Miyato & Koyama's
    projection discriminator): every weight of the discriminator is."""
    x = keras.Input((image_size, image_size, channels), name="image")
    y = keras.Input((), dtype="int32", name="label")
    h = _leaky(SpectralNorm(layers.Conv2D(width, 3, padding="same"))(x))
    for i in range(upsamplings(image_size)):
        h = _leaky(
            SpectralNorm(layers.Conv2D(width * 2 ** (i + 1), 4, strides=2, padding="same"))(h)
        )
    features = layers.Lambda(lambda t: tf.reduce_sum(t, axis=[1, 2]))(h)
    linear = layers.Reshape(())(SpectralNorm(layers.Dense(1))(features))
    embedded = SpectralNorm(layers.Embedding(num_classes, features.shape[-1]))(y)
    projection = layers.Lambda(lambda t: tf.reduce_sum(t[0] * t[1], axis=-1))([embedded, features])
    return keras.Model([x, y], layers.Add()([linear, projection]), name="discriminator")


def translate(images: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
    """Shifts image ``i`` by ``offsets[i] = (dy, dx)`` pixels, filling with zeros."""
    size = images.shape[1]
    grid = tf.range(size)
    rows = grid[None, :] - offsets[:, :1]  # (n, size): the source row of each output row
    cols = grid[None, :] - offsets[:, 1:]
    valid = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    moved = tf.gather(images, tf.clip_by_value(rows, 0, size - 1), axis=1, batch_dims=1)
    moved = tf.gather(moved, tf.clip_by_value(cols, 0, size - 1), axis=2, batch_dims=1)
    return moved * tf.cast(valid, images.dtype)[..., None]


def cutout(images: tf.Tensor, corners: tf.Tensor, side: int) -> tf.Tensor:
    """Zeroes the ``side`` x ``side`` square of image ``i`` whose top-left is ``corners[i]``."""
    grid = tf.range(images.shape[1])[None, :]
    inside_r = (grid >= corners[:, :1]) & (grid < corners[:, :1] + side)
    inside_c = (grid >= corners[:, 1:]) & (grid < corners[:, 1:] + side)
    keep = 1.0 - tf.cast(inside_r[:, :, None] & inside_c[:, None, :], images.dtype)
    return images * keep[..., None]


def diff_augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """DiffAugment's translation (up to 1/8 of the side each way) then cutout (a square of half
    the side, inside the image), drawn per image from the stateless ``seed`` pair;
    differentiable in ``images``."""
    n, size = tf.shape(images)[0], images.shape[1]
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shift, side = size // 8, size // 2
    offsets = tf.random.stateless_uniform((n, 2), s1, -shift, shift + 1, dtype=tf.int32)
    corners = tf.random.stateless_uniform((n, 2), s2, 0, size - side + 1, dtype=tf.int32)
    return cutout(translate(images, offsets), corners, side)
