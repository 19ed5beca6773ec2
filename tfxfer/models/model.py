"""The transfer model: raw images -> augmentation -> family preprocessing -> backbone -> head.

:func:`build` returns a :class:`TransferModel` holding the training graph and its parts. The
parts share their variables, so the same weights serve three graphs:

- ``model``: the training graph, ``float32`` 0-255 images -> logits, augmentation included
  (inert at inference). This is what is saved as ``.keras``.
- ``head_model``: pooled features -> logits, used to train the head on cached features.
- ``plain_model``: float32 images -> logits without the augmenter, used for training when
  augmentation runs in ``tf.data`` instead (``augment_in="data"``, the measured-faster default).
- :meth:`TransferModel.serving_model`: ``uint8`` images -> logits, with no augmentation layer at
  all. The exported SavedModel is built the same way from the saved graph, with decoding and
  class names around it (:mod:`tfxfer.deploy.serving`).

With several named heads (:mod:`tfxfer.methods.tasks`), every graph's output is a dict
``{task name: logits}`` instead of one logits tensor.

Example:
    >>> from tfxfer.models import model
    >>> tm = model.build("MobileNetV2", num_classes=3, image_size=64, weights=None)
    >>> tm.model.output.shape, tm.head_model.input.shape
    ((None, 3), (None, 1280))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
from keras import ops

from tfxfer.config import Config
from tfxfer.data import augment as augment_lib
from tfxfer.errors import UserError
from tfxfer.models import backbones

_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="tfxfer")
class Preprocess(keras.layers.Layer):
    """A backbone family's input scaling as a layer: raw 0-255 RGB in, what the family expects out.

    Replaces ``keras.applications.<family>.preprocess_input`` inside the graph (a Lambda layer
    would not load with ``safe_mode=True``). Any input dtype is accepted and cast first, so the
    serving graph can take ``uint8``.

    Args:
        mode: ``tf`` (scale to [-1, 1]), ``torch`` (ImageNet mean/std), ``caffe`` (RGB->BGR and
            ImageNet mean subtracted) or ``none`` (identity: the backbone rescales itself).
    """

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in backbones.PREPROCESS_MODES:
            raise ValueError(f"mode must be one of {backbones.PREPROCESS_MODES}, got {mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_STD, self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@dataclass
class TransferModel:
    """A built transfer model and its shared parts.

    Attributes:
        model: Training graph (float32 images -> logits).
        backbone: The Keras Applications backbone (``include_top=False``), named ``backbone``.
        head: The first (or only) head: ``keras.Sequential`` of dropout / hidden Dense /
            ``logits`` layers.
        head_model: Pooled features -> logits (shares ``head``).
        feature_model: Images -> pooled features, without augmentation.
        plain_model: Images -> logits, without augmentation (shares every layer).
        augmenter: The in-model augmentation, or None.
        family: Registry name of the backbone.
        image_size: Square input size.
        heads: Every head by task name (one entry, ``"head"``, for a single-task model).
        multi: True when the outputs are a dict of named heads.
    """

    model: keras.Model
    backbone: keras.Model
    head: keras.Sequential
    head_model: keras.Model
    feature_model: keras.Model
    plain_model: keras.Model
    augmenter: keras.Sequential | None
    family: str
    image_size: int
    heads: dict = field(default_factory=dict)
    multi: bool = False

    def __post_init__(self):
        self.heads = self.heads or {"head": self.head}

    def apply_heads(self, features, training=None):
        """Every head on pooled ``features``: a tensor, or a dict for a multi-task model."""
        return _apply_heads(self.heads, self.multi, features, training)

    def serving_model(self) -> keras.Model:
        """``uint8`` images -> logits (or named logits), no augmentation."""
        inputs = keras.Input((self.image_size, self.image_size, 3), dtype="uint8", name="image")
        x = self.model.get_layer("preprocess")(inputs)
        x = self.backbone(x, training=False)
        x = self.model.get_layer("pool")(x)
        return keras.Model(inputs, self.apply_heads(x, training=False), name="serving")


def _pool(pooling: str, backbone: keras.Model, family: str) -> keras.layers.Layer:
    if len(backbone.output.shape) == 2:  # a digit network's features are flat already
        if pooling != "avg":
            raise UserError(
                f"head_pooling applies to a feature map, and {family} ends in flat features",
                got=pooling,
                fix="leave head_pooling at its default (avg) for this backbone",
            )
        return keras.layers.Identity(name="pool")
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="pool")
    return keras.layers.GlobalMaxPooling2D(name="pool")


def _apply_heads(heads: dict, multi: bool, features, training=None):
    if not multi:
        return next(iter(heads.values()))(features, training=training)
    return {name: head(features, training=training) for name, head in heads.items()}


def build(
    family: str,
    num_classes: int,
    image_size: int | None = None,
    weights: str | None = "imagenet",
    augment: str = "light",
    extra_augment: Sequence[keras.layers.Layer] = (),
    pooling: str = "avg",
    dropout: float = 0.2,
    hidden: Sequence[int] = (),
    seed: int | None = None,
    heads: dict[str, int] | None = None,
) -> TransferModel:
    """Builds a backbone from the registry with a new classification head.

    Args:
        family: Registered backbone name.
        num_classes: Number of output logits.
        image_size: Square input size (None: the family default).
        weights: ``"imagenet"``, a weights file, or None.
        augment: Augmentation preset (see :mod:`tfxfer.data.augment`).
        extra_augment: Extra Keras layers appended to the augmenter.
        pooling: ``avg`` or ``max`` global pooling of the last feature map; a digit network
            (:mod:`tfxfer.models.digits`) ends in flat features, which the head reads as they
            are (``avg``, the default, stands for that; ``max`` is refused).
        dropout: Dropout before each Dense layer of the head.
        hidden: Widths of hidden ReLU layers in the head.
        seed: Run seed; augmentation and head dropout layers each get their own seed from it.
        heads: ``{task name: classes}`` for a multi-task model (``num_classes`` is then unused);
            None: one head of ``num_classes``.

    Returns:
        A :class:`TransferModel`. Its backbone starts frozen (``trainable=False``).
    """
    size = backbones.resolve_size(family, image_size)
    spec = backbones.get(family)
    backbone = backbones.build(family, size, weights)
    backbone.trainable = False
    augmenter = augment_lib.build(augment, extra_augment, seed)

    def make_head(name: str, classes: int, index: int) -> keras.Sequential:
        # every dropout layer of every head draws from its own generator
        seeds = augment_lib.layer_seeds(seed, len(hidden) + 1, stream=f"head{index}")
        layers: list[keras.layers.Layer] = []
        for i, width in enumerate(hidden):
            layers += [
                keras.layers.Dropout(dropout, seed=seeds[i], name=f"dropout_{i}"),
                keras.layers.Dense(width, activation="relu", name=f"hidden_{i}"),
            ]
        layers += [
            keras.layers.Dropout(dropout, seed=seeds[len(hidden)], name=f"dropout_{len(hidden)}"),
            keras.layers.Dense(classes, dtype="float32", name="logits"),
        ]
        return keras.Sequential(layers, name=name)

    multi = heads is not None
    head_map = (
        {task: make_head(f"head_{task}", k, i) for i, (task, k) in enumerate(heads.items())}
        if multi
        else {"head": make_head("head", num_classes, 0)}
    )
    pool = _pool(pooling, backbone, family)
    preprocess = Preprocess(spec.preprocess, name="preprocess")

    inputs = keras.Input((size, size, 3), name="image")
    x = augmenter(inputs) if augmenter is not None else inputs
    features = pool(backbone(preprocess(x), training=False))
    model = keras.Model(inputs, _apply_heads(head_map, multi, features), name=f"tfxfer_{family}")

    feat_in = keras.Input((size, size, 3), name="image")
    feature_model = keras.Model(
        feat_in, pool(backbone(preprocess(feat_in), training=False)), name="features"
    )
    head_in = keras.Input((features.shape[-1],), name="features")
    head_model = keras.Model(head_in, _apply_heads(head_map, multi, head_in), name="head_only")
    plain_model = keras.Model(
        feat_in, _apply_heads(head_map, multi, feature_model.output), name="plain"
    )
    return TransferModel(
        model,
        backbone,
        next(iter(head_map.values())),
        head_model,
        feature_model,
        plain_model,
        augmenter,
        family,
        size,
        head_map,
        multi,
    )


def build_for(
    cfg: Config,
    num_classes: int,
    image_size: int,
    extra_augment: Sequence[keras.layers.Layer] = (),
    heads: dict[str, int] | None = None,
) -> TransferModel:
    """:func:`build` with a run's settings: its backbone, weights, augmentation preset, head
    (pooling, dropout, hidden widths) and seed, at ``image_size``.

    Example:
        >>> tm = build_for(Config(backbone="MobileNet025", weights=None), 3, 32)
        >>> tm.model.output.shape
        (None, 3)
    """
    return build(
        cfg.backbone,
        num_classes,
        image_size,
        cfg.weights,
        cfg.augment.preset,
        extra_augment,
        cfg.head_pooling,
        cfg.head_dropout,
        cfg.head_hidden,
        cfg.seed,
        heads,
    )
