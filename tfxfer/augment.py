"""Augmentation with Keras's own preprocessing layers: presets, user layers, MixUp and CutMix.

Image augmentation is a ``keras.Sequential`` that sits at the front of the training model. Keras
random layers are the identity when ``training=False``, and tfxfer's exported serving graph leaves
the augmenter out altogether. Batch-level MixUp/CutMix need the labels, so they run in ``tf.data``
on one-hot labels (see :func:`batch_mixer`).

keras-cv is frozen upstream and its layers moved into Keras >= 3.9, so the base install never
imports it. A user who has keras-cv (or any other Keras layer) can pass layers through ``extra``.

Example:
    >>> from tfxfer import augment
    >>> aug = augment.build("standard")
    >>> [layer.__class__.__name__ for layer in aug.layers]
    ['RandomFlip', 'RandomRotation', 'RandomZoom', 'RandomTranslation', 'RandomContrast']
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf

from tfxfer.config import AUGMENT_PRESETS
from tfxfer.errors import UserError

VALUE_RANGE = (0, 255)


def preset_layers(preset: str, seed: int | None = None) -> list[keras.layers.Layer]:
    """The layers of a preset, working on raw 0-255 RGB pixels."""
    L = keras.layers
    if preset == "none":
        return []
    if preset == "light":
        return [L.RandomFlip("horizontal", seed=seed)]
    if preset == "standard":
        return [
            L.RandomFlip("horizontal", seed=seed),
            L.RandomRotation(0.1, fill_mode="reflect", seed=seed),
            L.RandomZoom(0.1, fill_mode="reflect", seed=seed),
            L.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed),
            L.RandomContrast(0.2, value_range=VALUE_RANGE, seed=seed),
        ]
    if preset == "strong":
        return [
            L.RandomFlip("horizontal", seed=seed),
            L.RandAugment(value_range=VALUE_RANGE, num_ops=2, factor=0.5, seed=seed),
        ]
    raise UserError("augment must be a preset name", valid=AUGMENT_PRESETS, got=preset,
                    fix="pass --set augment=light (or none/standard/strong)")


def build(preset: str, extra: Sequence[keras.layers.Layer] = (), seed: int | None = None
          ) -> keras.Sequential | None:
    """Builds the in-model augmenter, or returns None when there is nothing to apply.

    Args:
        preset: ``none``, ``light`` (flip), ``standard`` (flip, rotation, zoom, translation,
            contrast) or ``strong`` (flip + RandAugment).
        extra: More Keras layers to append (e.g. keras-cv layers), applied after the preset.
        seed: Seed of the random layers.
    """
    layers = preset_layers(preset, seed) + list(extra)
    if not layers:
        return None
    return keras.Sequential(layers, name="augment")


def batch_mixer(mixup: float, cutmix: float, seed: int | None = None
                ) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]] | None:
    """A ``tf.data`` map function mixing a batch of (images, one-hot labels), or None.

    With both enabled, each batch gets one of the two with probability 1/2 (as timm does).

    Args:
        mixup: MixUp alpha (0 disables it).
        cutmix: CutMix factor (0 disables it).
        seed: Seed for the mixing layers.
    """
    ops = []
    if mixup > 0:
        ops.append(keras.layers.MixUp(alpha=mixup, seed=seed))
    if cutmix > 0:
        ops.append(keras.layers.CutMix(factor=cutmix, seed=seed))
    if not ops:
        return None

    def apply(layer, images, labels):
        out = layer({"images": images, "labels": labels}, training=True)
        return out["images"], tf.cast(out["labels"], labels.dtype)

    def mix(images, labels):
        if len(ops) == 1:
            return apply(ops[0], images, labels)
        pick = tf.random.uniform([], seed=seed) < 0.5
        return tf.cond(pick, lambda: apply(ops[0], images, labels),
                       lambda: apply(ops[1], images, labels))

    return mix
