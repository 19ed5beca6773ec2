"""Registry of Keras Applications backbones, each with what transfer learning needs to know.

Every :class:`BackboneSpec` carries the family's input scaling (applied *inside* the model, so a
tfxfer model always takes raw 0-255 RGB pixels), its default and minimum input size, its feature
width, and its block boundaries.

**One graph whichever way the weights arrive.** Keras builds some families differently when
``weights == "imagenet"``: EfficientNet B0-B7 then add a ``Rescaling`` after their stem
normalisation. :func:`build` always builds the ImageNet graph, so ``weights="imagenet"``, a
weights file and ``weights=None`` give the same layers and the same input scaling. It also swaps
the backbone's ``Dropout`` layers (EfficientNet's stochastic depth) for
:class:`tfxfer.models.stochastic.FreezableDropout`, which is the identity while frozen.

**Blocks.** Every family is cut into five blocks by resolution. A *level* is the output stride
of a layer (``2**level``); the levels that hold trainable weights, shallowest first, are the
network's stages. Block ``b`` (2..5) starts at the first layer of the ``b``-th deepest of the
four deepest weighted levels, and block 1 holds everything before (the stem and anything at full
resolution). So on most families block ``b`` is stride ``2**b``, and "freeze the first 3 blocks"
means "freeze everything up to stride 8". Two families have fewer weighted resolutions than
strides, and the rule keeps each of their blocks trainable: VGG16's last stride-32 layer is a
weightless max-pool, so its blocks are its five convolution stages (strides 1-16); ConvNeXt's
stem downsamples by 4 at once (four weighted levels), so its stem is block 1 and its four stages
are blocks 2-5. The boundaries are stored as indices into ``backbone.layers`` (auto-generated
names such as ``conv2d_3`` are not stable) and are re-derived from the graph when a Keras
version lays a family out differently. The digit networks trained from scratch
(:mod:`tfxfer.models.digits`) are cut into their weighted stages instead, 2 to 4 blocks
(:func:`num_blocks`), fixed by their design.

Example:
    >>> from tfxfer.models import backbones
    >>> spec = backbones.get("MobileNetV2")
    >>> spec.default_size, spec.feature_width, spec.preprocess
    (224, 1280, 'tf')
    >>> net = backbones.build("MobileNetV2", image_size=64, weights=None)
    >>> len(backbones.block_boundaries(net, "MobileNetV2"))
    4
"""

from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from tfxfer.errors import UserError
from tfxfer.models.families import SPECS, BackboneSpec

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

NUM_BLOCKS = 5
PREPROCESS_MODES = ("tf", "torch", "caffe", "none")
# Keras's EfficientNet divides by the ImageNet std once more when built for ImageNet weights.
_IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)

REGISTRY: dict[str, BackboneSpec] = {s.name: s for s in SPECS}


def names() -> list[str]:
    """All registered backbone names, in registry order."""
    return list(REGISTRY)


def get(name: str) -> BackboneSpec:
    """Returns the spec of ``name``, or raises a :class:`UserError` listing the valid names."""
    try:
        return REGISTRY[name]
    except KeyError:
        close = [n for n in REGISTRY if n.lower() == str(name).lower()]
        hint = f"did you mean {close[0]}?" if close else "pick one of the valid names"
        raise UserError(
            "backbone must be a registered name",
            valid=names(),
            got=name,
            fix=f"{hint} (--backbone NAME)",
        ) from None


def resolve_size(name: str, image_size: int | None) -> int:
    """The input size to use: ``image_size`` checked against the family minimum, or its default."""
    spec = get(name)
    if image_size is None:
        return spec.default_size
    if image_size < spec.min_size:
        raise UserError(
            f"image_size must be >= {spec.min_size} for {name}",
            got=image_size,
            fix=f"pass --image-size {spec.min_size} or more "
            + (
                f"(its papers use {spec.default_size})"
                if spec.from_scratch
                else f"(the ImageNet weights were trained at {spec.default_size})"
            ),
        )
    return image_size


def build(
    name: str, image_size: int | None = None, weights: str | None = "imagenet"
) -> keras.Model:
    """Builds the backbone without its classifier (``include_top=False``), named ``backbone``.

    The graph is the one Keras builds for ImageNet weights, whatever ``weights`` is, with its
    ``Dropout`` layers made freezable (see the module docstring). A digit network
    (:mod:`tfxfer.models.digits`) has no ImageNet weights: ``weights`` is None or a file.

    Args:
        name: A registered name (see :func:`names`).
        image_size: Square input size; None uses the family default.
        weights: ``"imagenet"`` (Keras cache, downloaded when missing), a weights file path, or
            None for random initialisation.

    Returns:
        A functional ``keras.Model`` mapping preprocessed images to the last feature map (a
        flat feature vector for a digit network).
    """
    spec = get(name)
    size = resolve_size(name, image_size)
    if spec.from_scratch and weights == "imagenet":
        raise UserError(
            f"{name} has no ImageNet weights: it is a digit network trained from scratch",
            got="weights='imagenet'",
            fix="pass --weights none, or --weights PATH to a weights file saved from it",
        )
    path = None
    if weights is not None and weights != "imagenet":
        path = os.path.expanduser(weights)
        if not os.path.isfile(path):
            raise UserError(
                "weights must be 'imagenet', None or an existing weights file",
                got=weights,
                fix="check the path, or pass --weights imagenet/none",
            )
        weights = None
    if spec.from_scratch:
        from tfxfer.models import digits

        net = digits.build(spec.constructor, size)
    else:
        net = _keras_application(spec, size, weights)
    net = _canonical(net, spec, add_stem_rescaling=weights != "imagenet")
    if path is not None:
        _load_weights_file(net, path, name)
    net.name = "backbone"
    return net


def _keras_application(spec: BackboneSpec, size: int, weights: str | None) -> keras.Model:
    import keras  # here, not at import: the command line's --help lists names without Keras

    name = spec.name
    ctor: Callable[..., keras.Model] = getattr(keras.applications, spec.constructor)
    try:
        net = ctor(include_top=False, weights=weights, input_shape=(size, size, 3), **spec.kwargs)
    except ValueError as exc:  # Keras' own checks on size/weights combinations
        raise UserError(
            f"Keras cannot build {name} at {size}px with weights={weights!r}",
            got=str(exc).splitlines()[0],
            fix=f"use --image-size {spec.default_size} or --weights none",
        ) from None
    except Exception as exc:  # a failed download of the ImageNet weights
        if weights != "imagenet":
            raise
        raise UserError(
            f"ImageNet weights for {name} could not be loaded (no network, and not "
            "in the Keras cache $KERAS_HOME/models)",
            got=f"{type(exc).__name__}: {exc}",
            fix="connect once to download them, pre-seed $KERAS_HOME, or pass "
            "--weights PATH to a weights file",
        ) from None
    return net


def _canonical(net: keras.Model, spec: BackboneSpec, add_stem_rescaling: bool) -> keras.Model:
    """The ImageNet graph of ``net`` with freezable dropout.

    Where the graph is already the ImageNet one, its ``Dropout`` layers are made freezable in
    place. Where the stem rescaling must be inserted, the graph is copied into new layers (same
    names and configs, weights copied) rather than sharing the source's, so that ``layer.output``
    of every layer belongs to this graph and sub-models such as
    ``keras.Model(backbone.input, backbone.get_layer(name).output)`` work.
    """
    import keras

    from tfxfer.models.stochastic import freezable, make_freezable

    rescale = add_stem_rescaling and spec.imagenet_stem_rescaling
    if not rescale:
        for layer in net.layers:
            make_freezable(layer)
        return net
    pairs, inserted = [], []

    def clone(layer):
        new = freezable(layer)
        if new is layer:
            new = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, new))
        return new

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if rescale and not inserted and isinstance(layer, keras.layers.Normalization):
            inserted.append(
                keras.layers.Rescaling(
                    [1.0 / math.sqrt(s) for s in _IMAGENET_STDDEV_RGB], name="stem_rescaling"
                )
            )
            out = inserted[0](out)
        return out

    inputs = keras.Input(batch_shape=net.input.shape, name=net.layers[0].name)
    copy = keras.models.clone_model(
        net, input_tensors=inputs, clone_function=clone, call_function=call
    )
    for old, new in pairs:
        if old.weights:
            new.set_weights(old.get_weights())
    return copy


def _load_weights_file(net: keras.Model, path: str, name: str) -> None:
    try:
        with warnings.catch_warnings():
            # Keras warns, then keeps random weights, for layers a file does not cover: refuse.
            warnings.filterwarnings("error", message=".*(Skipping|retain|mismatch).*")
            net.load_weights(path)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"weights file must fit {name} without its top "
            f"({len(net.weights)} tensors, {net.count_params():,} parameters)",
            got=f"{path} ({first})",
            fix="pass the no-top weights of this backbone, or choose the backbone "
            "the file was saved from",
        ) from None


def num_blocks(name: str) -> int:
    """How many blocks the backbone ``name`` is cut into (five, or fewer for a digit network)."""
    return get(name).num_blocks


def block_boundaries(net: keras.Model, name: str) -> tuple[int, ...]:
    """Indices into ``net.layers`` where blocks 2.. start (block 1 starts at 0).

    Uses the registry's values when the layer count matches the one they were derived on, and
    re-derives them from the graph otherwise (once per family and layer count).
    """
    spec = get(name)
    if len(net.layers) == spec.num_layers:
        return spec.boundaries
    return _derived_boundaries(name, len(net.layers))


@functools.cache
def _derived_boundaries(name: str, num_layers: int) -> tuple[int, ...]:
    spec = get(name)
    log.warning(
        "%s has %d layers here (registry: %d); deriving block boundaries from strides",
        name,
        num_layers,
        spec.num_layers,
    )
    # Derive on an unweighted copy at the default size, where only real stages (never the 1x1
    # squeeze-excite maps) have spatial size > 1. The layer order does not depend on the size.
    return derive_boundaries(build(name, spec.default_size, weights=None))


def derive_boundaries(net: keras.Model) -> tuple[int, ...]:
    """Where blocks 2..5 start, by the rule of the module docstring, read from the graph.

    ``net`` must be a fresh build (every layer trainable: trainable weights mark the stages)
    at an input size where the stride-32 map is larger than 1x1 (the default sizes all are), so
    that 1x1 squeeze-excite maps are never mistaken for a stage.
    """
    size = net.input.shape[1]
    levels, level = [], 0
    for layer in net.layers:
        shape = layer.output.shape
        if len(shape) == 4 and shape[1] and 1 < shape[1] <= size:
            level = round(math.log2(size / shape[1]))
        levels.append(level)  # 1x1 maps and flat outputs stay at the level before them
    weighted = [i for i, layer in enumerate(net.layers) if layer.trainable_weights]
    stages = sorted({levels[i] for i in weighted})
    if len(stages) >= NUM_BLOCKS - 1:
        deepest = stages[-(NUM_BLOCKS - 1) :]
        starts = [levels.index(lv) for lv in deepest]
        if len(stages) == NUM_BLOCKS - 1:  # e.g. a stride-4 stem: the stem alone is block 1
            starts[0] = weighted[0] + 1
        return tuple(starts)
    raise ValueError(
        f"{net.name} has {len(stages)} weighted resolutions; tfxfer's blocks need "
        f"at least {NUM_BLOCKS - 1}"
    )


def block_of_layers(net: keras.Model, name: str) -> list[int]:
    """The block number (1..:func:`num_blocks`) of every layer of ``net``, in order."""
    bounds = block_boundaries(net, name)
    return [1 + sum(i >= b for b in bounds) for i in range(len(net.layers))]


def markdown_table() -> str:
    """The table of supported backbones in docs/backbones.md, generated from the registry."""
    rows = [
        "| backbone | weights | input scaling | default size | min size | feature width | "
        "blocks | default frozen blocks |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for spec in REGISTRY.values():
        rows.append(
            f"| {spec.name} | {'from scratch' if spec.from_scratch else 'ImageNet'} "
            f"| {spec.preprocess} | {spec.default_size} | {spec.min_size} "
            f"| {spec.feature_width} | {spec.num_blocks} | {spec.default_freeze} |"
        )
    return "\n".join(rows)
