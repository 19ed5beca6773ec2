"""Test-time augmentation: average the class probabilities of a few views of each image.

Modes (``--set tta=...`` for evaluation, ``tfxfer predict --tta ...`` for prediction):

- ``none``: the image as it is.
- ``flip``: the image and its left-right mirror (2 views).
- ``crops``: the image, its mirror, and its four corner crops of 87.5% of the side, each resized
  back to the input size (6 views).

Probabilities (softmax outputs), not logits, are averaged, as fastai's and timm's TTA do. The
views are built from the ``size x size`` image the model takes, in TensorFlow only, so
``tfxfer predict`` needs nothing else.

Example:
    >>> import numpy as np
    >>> images = np.zeros((2, 8, 8, 3), np.uint8)
    >>> [v.shape for v in views(images, "flip")]
    [TensorShape([2, 8, 8, 3]), TensorShape([2, 8, 8, 3])]
    >>> average(lambda x: np.full((len(x), 3), 1 / 3), images, "crops").shape
    (2, 3)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfxfer.config import TTA_MODES as MODES

CROP_FRACTION = 0.875


def views(images, mode: str) -> list[tf.Tensor]:
    """The TTA views of a ``(N, size, size, 3)`` batch, each float32 of the same shape."""
    if mode not in MODES:
        raise ValueError(f"tta mode must be one of {MODES}, got {mode!r}")
    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    out = [x]
    if mode in ("flip", "crops"):
        out.append(x[:, :, ::-1])
    if mode == "crops":
        size = int(x.shape[1])
        side = int(round(size * CROP_FRACTION))
        for top, left in ((0, 0), (0, size - side), (size - side, 0), (size - side, size - side)):
            crop = x[:, top : top + side, left : left + side]
            out.append(tf.image.resize(crop, [size, size], method="bilinear", antialias=True))
    return out


def average(predict: Callable, images, mode: str, batch_size: int = 64):
    """Mean of ``predict``'s probabilities over the views of every image.

    Args:
        predict: Maps a float32 batch ``(n, size, size, 3)`` (0-255) to probabilities
            ``(n, K)``, or to a dict of them (one per task).
        images: ``(N, size, size, 3)`` images, 0-255.
        mode: One of :data:`MODES`.
        batch_size: Images per call of ``predict``.

    Returns:
        ``(N, K)`` probabilities (numpy), or a dict of them.
    """
    total = None
    n_views = 0
    for view in views(images, mode):
        parts = [
            predict(view[i : i + batch_size]) for i in range(0, int(view.shape[0]), batch_size)
        ]
        probs = _concat(parts)
        total = probs if total is None else _add(total, probs)
        n_views += 1
    return _scale(total, 1.0 / n_views)


def _concat(parts):
    if isinstance(parts[0], dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    return np.concatenate([np.asarray(p) for p in parts])


def _add(a, b):
    return {k: a[k] + b[k] for k in a} if isinstance(a, dict) else a + b


def _scale(a, factor):
    return {k: v * factor for k, v in a.items()} if isinstance(a, dict) else a * factor
