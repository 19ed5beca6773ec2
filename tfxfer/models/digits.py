"""Small digit networks trained from scratch, the ones the domain-adaptation papers report on.

Every published digit result (MNIST, USPS, MNIST-M, SVHN) trains a small CNN from scratch for
10k-50k steps; an ImageNet backbone at 32 px is another protocol. These are registered in
:mod:`tfxfer.models.backbones` beside the Keras Applications families, with their own blocks
(one per weighted stage), so scopes, per-block rates and BatchNorm rules apply unchanged. Each
builder returns the feature extractor up to the features the papers' classifiers read, flat:

- ``DannMnist``: Ganin & Lempitsky (2015, 2016), MNIST -> MNIST-M. Conv 5x5x32, max-pool, conv
  5x5x48, max-pool (ReLU after each convolution), flattened: 768 features at 28 px. The paper's
  label classifier (FC 100-100-10) is tfxfer's head with ``head_hidden=(100, 100)``, and its
  domain classifier (FC 100-1) is ``adapt.domain_hidden=(100,)``.
- ``LeNet``: the LeNet of the Transfer-Learning-Library (TLlib) digit benchmarks, MNIST <-> USPS
  at 28 px. Conv 5x5x20, max-pool, ReLU; conv 5x5x50, channel dropout 0.5, max-pool, ReLU;
  flattened, FC 500, ReLU, dropout 0.5.
- ``DTN``: the DTN of the same benchmarks, 32 px RGB (SVHN/MNIST-M). Three convolutions 5x5,
  stride 2, of 64/128/256 channels, each with BatchNorm, channel dropout (0.1/0.3/0.5) and ReLU;
  flattened, FC 512, BatchNorm, ReLU, dropout 0.5.

Channel dropout (PyTorch's ``Dropout2d``) is ``Dropout`` with ``noise_shape=(None, 1, 1, C)``,
so that :mod:`tfxfer.models.stochastic` makes it the identity while its block is frozen, like
every other dropout inside a backbone. Inputs are RGB (a grey digit is its own three channels).

Example:
    >>> net = build("DannMnist", 28)
    >>> net.output.shape
    (None, 768)
"""

from __future__ import annotations

import keras
from keras import layers


def _conv_relu(filters: int, name: str) -> keras.layers.Layer:
    return layers.Conv2D(filters, 5, activation="relu", name=name)


def _channel_dropout(x, rate: float, name: str):
    return layers.Dropout(rate, noise_shape=(None, 1, 1, x.shape[-1]), name=name)(x)


def dann_mnist(size: int) -> keras.Model:
    inputs = keras.Input((size, size, 3), name="input")
    x = _conv_relu(32, "conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = _conv_relu(48, "conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    return keras.Model(inputs, layers.Flatten(name="flatten")(x), name="DannMnist")


def lenet(size: int) -> keras.Model:
    inputs = keras.Input((size, size, 3), name="input")
    x = layers.Conv2D(20, 5, name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.Conv2D(50, 5, name="conv2")(x)
    x = _channel_dropout(x, 0.5, "drop2")
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.ReLU(name="relu2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(500, activation="relu", name="fc")(x)
    x = layers.Dropout(0.5, name="drop_fc")(x)
    return keras.Model(inputs, x, name="LeNet")


def dtn(size: int) -> keras.Model:
    inputs = keras.Input((size, size, 3), name="input")
    x = inputs
    for i, (filters, rate) in enumerate(((64, 0.1), (128, 0.3), (256, 0.5)), start=1):
        x = layers.Conv2D(filters, 5, strides=2, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = _channel_dropout(x, rate, f"drop{i}")
        x = layers.ReLU(name=f"relu{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, name="fc")(x)
    x = layers.BatchNormalization(name="bn_fc")(x)
    x = layers.ReLU(name="relu_fc")(x)
    x = layers.Dropout(0.5, name="drop_fc")(x)
    return keras.Model(inputs, x, name="DTN")


BUILDERS = {"DannMnist": dann_mnist, "LeNet": lenet, "DTN": dtn}


def build(name: str, size: int) -> keras.Model:
    """The digit network ``name`` (a key of :data:`BUILDERS`) for ``size`` px RGB input."""
    return BUILDERS[name](size)
