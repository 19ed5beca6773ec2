"""Augmentation with Keras's own preprocessing layers: presets, user layers, MixUp and CutMix.

Image augmentation is a ``keras.Sequential`` that sits at the front of the training model.
Every random layer gets its own seed, derived from the run's seed and the layer's position
(:func:`layer_seeds`): layers that shared one seed would draw the same uniform number for an
image, so that, say, every flipped image would also be rotated and zoomed the same way. Keras
random layers are the identity when ``training=False``, and tfxfer's exported serving graph leaves
the augmenter out altogether. Batch-level MixUp/CutMix need the labels, so they run in ``tf.data``
on one-hot labels (see :func:`batch_mixer`).

keras-cv is frozen upstream and its layers moved into Keras >= 3.9, so the base install never
imports it. A user who has keras-cv (or any other Keras layer) can pass layers through ``extra``.

Example:
    >>> from tfxfer.data import augment
    >>> aug = augment.build("standard")
    >>> [layer.__class__.__name__ for layer in aug.layers]
    ['RandomFlip', 'RandomRotation', 'RandomZoom', 'RandomTranslation', 'RandomContrast']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfxfer.config import AUGMENT_PRESETS
from tfxfer.errors import UserError

VALUE_RANGE = (0, 255)


def layer_seeds(seed: int | None, count: int, stream: str = "augment") -> list[int | None]:
    """``count`` independent seeds for the random layers of one ``stream``, from one run seed.

    Derived with numpy's ``SeedSequence`` from ``(seed, stream, index)``, so that no two layers
    (nor two streams: augmentation, mixing, head dropout) start from the same generator state,
    and a fixed ``seed`` still reproduces every draw. ``seed=None`` gives ``None`` for each.

    Example:
        >>> a = layer_seeds(0, 3)
        >>> len(set(a)), a == layer_seeds(0, 3), a == layer_seeds(1, 3)
        (3, True, False)
    """
    if seed is None:
        return [None] * count
    key = [seed, *stream.encode()]
    return [int(s) & 0x7FFFFFFF for s in np.random.SeedSequence(key).generate_state(count)]


def preset_layers(preset: str, seed: int | None = None) -> list[keras.layers.Layer]:
    """The layers of a preset, working on raw 0-255 RGB pixels, each with its own seed."""
    L = keras.layers
    if preset == "none":
        return []
    s = layer_seeds(seed, 5)
    if preset == "light":
        return [L.RandomFlip("horizontal", seed=s[0])]
    if preset == "standard":
        return [
            L.RandomFlip("horizontal", seed=s[0]),
            L.RandomRotation(0.1, fill_mode="reflect", seed=s[1]),
            L.RandomZoom(0.1, fill_mode="reflect", seed=s[2]),
            L.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=s[3]),
            L.RandomContrast(0.2, value_range=VALUE_RANGE, seed=s[4]),
        ]
    if preset == "strong":
        return [
            L.RandomFlip("horizontal", seed=s[0]),
            L.RandAugment(value_range=VALUE_RANGE, num_ops=2, factor=0.5, seed=s[1]),
        ]
    raise UserError(
        "augment must be a preset name",
        valid=AUGMENT_PRESETS,
        got=preset,
        fix="pass --set augment=light (or none/standard/strong)",
    )


def build(
    preset: str, extra: Sequence[keras.layers.Layer] = (), seed: int | None = None
) -> keras.Sequential | None:
    """Builds the in-model augmenter, or returns None when there is nothing to apply.

    Args:
        preset: ``none``, ``light`` (flip), ``standard`` (flip, rotation, zoom, translation,
            contrast) or ``strong`` (flip + RandAugment).
        extra: More Keras layers to append (e.g. keras-cv layers), applied after the preset.
        seed: Run seed; each random layer gets its own seed derived from it.
    """
    layers = preset_layers(preset, seed) + list(extra)
    if not layers:
        return None
    return keras.Sequential(layers, name="augment")


def batch_mixer(
    mixup: float, cutmix: float, seed: int | None = None
) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]] | None:
    """A ``tf.data`` map function mixing a batch of (images, one-hot labels), or None.

    With both enabled, each batch gets one of the two with probability 1/2 (as timm does).

    Args:
        mixup: MixUp alpha (0 disables it).
        cutmix: CutMix factor (0 disables it).
        seed: Run seed; MixUp, CutMix and the choice between them each get their own seed.
    """
    mix_seed, cut_seed, pick_seed = layer_seeds(seed, 3, stream="mix")
    ops = []
    if mixup > 0:
        ops.append(keras.layers.MixUp(alpha=mixup, seed=mix_seed))
    if cutmix > 0:
        ops.append(keras.layers.CutMix(factor=cutmix, seed=cut_seed))
    return _one_of(ops, pick_seed, lambda x: x, lambda x: x)


def feature_mixer(
    mixup: float, cutmix: float, seed: int | None = None
) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]] | None:
    """:func:`batch_mixer` for pooled features, used by head-only phases on cached features.

    MixUp of pooled features and their labels (the last-layer case of Manifold Mixup, Verma et
    al. 2019) is Keras's ``MixUp`` applied to features: ``lam ~ Beta(mixup, mixup)`` per sample.
    A cut-and-pasted patch cannot be cut out of a pooled vector, so CutMix becomes the same
    feature mixing with CutMix's own weight distribution, ``lam ~ Beta(cutmix, cutmix)`` (the
    kept area): with average pooling, the pooled features of a CutMix image are close to that
    area-weighted mix of the two images' features. Seeds and the 1/2 choice are as in
    :func:`batch_mixer`.

    Example:
        >>> import numpy as np
        >>> mix = feature_mixer(0.4, 0.0, seed=0)
        >>> x, y = mix(np.eye(4, dtype="float32"), np.eye(4, dtype="float32"))
        >>> bool(np.allclose(np.asarray(x), np.asarray(y)))  # features and labels mix alike
        True
    """
    mix_seed, cut_seed, pick_seed = layer_seeds(seed, 3, stream="mix")
    ops = [
        keras.layers.MixUp(alpha=a, seed=s)
        for a, s in ((mixup, mix_seed), (cutmix, cut_seed))
        if a > 0
    ]
    return _one_of(ops, pick_seed, lambda x: x[:, None, None, :], lambda x: x[:, 0, 0, :])


def _one_of(ops: list, pick_seed: int | None, to_images: Callable, from_images: Callable):
    if not ops:
        return None

    def apply(layer, x, labels):
        out = layer({"images": to_images(x), "labels": labels}, training=True)
        return from_images(out["images"]), tf.cast(out["labels"], labels.dtype)

    def mix(x, labels):
        if len(ops) == 1:
            return apply(ops[0], x, labels)
        pick = tf.random.uniform([], seed=pick_seed) < 0.5
        return tf.cond(pick, lambda: apply(ops[0], x, labels), lambda: apply(ops[1], x, labels))

    return mix
