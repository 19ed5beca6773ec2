"""An offline shift suite: ImageNet-C-style corruptions of validation images, at 3 severities.

Hendrycks & Dietterich (ICLR 2019) measure robustness on corrupted copies of the validation
set. This suite makes five of their corruptions from any uint8 images, in TensorFlow ops alone
(so ``tfxfer predict`` can run it with no Pillow), deterministically (the noise is seeded by the
suite's seed and each image's index), at the first three of ImageNet-C's five severities:

=================  ==========================================  ======================
corruption         what it does                                severities 1, 2, 3
=================  ==========================================  ======================
``gaussian_noise``  adds N(0, sigma) noise, sigma in [0, 1] units  0.08, 0.12, 0.18
``defocus_blur``   convolves with an anti-aliased disk of      r = 3, 4, 6 (scaled to
                   radius r px at 224 px (scaled to the        the image's size)
                   image's shorter side)
``jpeg``           re-encodes as JPEG at this quality           25, 18, 15
``contrast``       pulls pixels toward the image's mean: c      0.4, 0.3, 0.2
``brightness``     adds this to HSV's value channel             0.1, 0.2, 0.3
=================  ==========================================  ======================

Every output is uint8 RGB of the input's shape. :func:`corrupt` applies one corruption to a
batch of one size; :data:`CORRUPTIONS` is the name -> function table.

Example:
    >>> import numpy as np
    >>> x = np.full((1, 8, 8, 3), 100, np.uint8)
    >>> int(corrupt(x, "contrast", 3).numpy().mean()), sorted(CORRUPTIONS)[0]
    (100, 'brightness')
"""

from __future__ import annotations

import math

import tensorflow as tf

SEVERITIES = (1, 2, 3)
NOISE = (0.08, 0.12, 0.18)
BLUR_RADIUS = (3, 4, 6)  # px at 224 px
JPEG_QUALITY = (25, 18, 15)
CONTRAST = (0.4, 0.3, 0.2)
BRIGHTNESS = (0.1, 0.2, 0.3)


def _unit(images) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(images), tf.float32) / 255.0


def _uint8(x) -> tf.Tensor:
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


def gaussian_noise(images, severity: int, seed: int = 0) -> tf.Tensor:
    x = _unit(images)
    noise = [tf.random.stateless_normal(tf.shape(x)[1:], seed=[seed, i]) for i in range(x.shape[0])]
    return _uint8(x + NOISE[severity - 1] * tf.stack(noise))


def disk(radius: float) -> tf.Tensor:
    """A normalised, anti-aliased disk of ``radius`` px: a pixel at distance ``d`` from the
    centre weighs ``clip(radius + 0.5 - d, 0, 1)``, so the blur grows smoothly with the radius,
    also below one pixel (small images)."""
    r = int(math.ceil(radius + 0.5))
    grid = tf.range(-r, r + 1, dtype=tf.float32)
    distance = tf.sqrt(grid[:, None] ** 2 + grid[None, :] ** 2)
    weights = tf.clip_by_value(radius + 0.5 - distance, 0.0, 1.0)
    return weights / tf.reduce_sum(weights)


def defocus_blur(images, severity: int, seed: int = 0) -> tf.Tensor:
    x = _unit(images)
    radius = BLUR_RADIUS[severity - 1] * min(x.shape[1], x.shape[2]) / 224.0
    kernel = disk(radius)
    size = kernel.shape[0]
    pad = size // 2
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, x.shape[3], 1])
    return _uint8(tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID"))


def jpeg(images, severity: int, seed: int = 0) -> tf.Tensor:
    images = tf.convert_to_tensor(images, tf.uint8)
    quality = JPEG_QUALITY[severity - 1]
    return tf.stack(
        [
            tf.io.decode_jpeg(tf.io.encode_jpeg(image, quality=quality), channels=3)
            for image in tf.unstack(images)
        ]
    )


def contrast(images, severity: int, seed: int = 0) -> tf.Tensor:
    x = _unit(images)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return _uint8((x - mean) * CONTRAST[severity - 1] + mean)


def brightness(images, severity: int, seed: int = 0) -> tf.Tensor:
    hsv = tf.image.rgb_to_hsv(_unit(images))
    value = tf.clip_by_value(hsv[..., 2:] + BRIGHTNESS[severity - 1], 0.0, 1.0)
    return _uint8(tf.image.hsv_to_rgb(tf.concat([hsv[..., :2], value], axis=-1)))


CORRUPTIONS = {
    "gaussian_noise": gaussian_noise,
    "defocus_blur": defocus_blur,
    "jpeg": jpeg,
    "contrast": contrast,
    "brightness": brightness,
}


def corrupt(images, name: str, severity: int, seed: int = 0) -> tf.Tensor:
    """``images`` (uint8 ``(N, H, W, 3)``) with corruption ``name`` at ``severity`` (1-3)."""
    from tfxfer.errors import UserError

    if name not in CORRUPTIONS:
        raise UserError(
            "unknown corruption", valid=sorted(CORRUPTIONS), got=name, fix="pick one of them"
        )
    if severity not in SEVERITIES:
        raise UserError("corruption severity must be 1, 2 or 3", got=severity, fix="pick 1, 2 or 3")
    return CORRUPTIONS[name](images, severity, seed)


def suite(images, seed: int = 0):
    """Yields ``(name, severity, corrupted images)`` for every corruption and severity."""
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            yield name, severity, corrupt(images, name, severity, seed)


def accuracy(classify, images, labels, seed: int = 0, batch_size: int = 64) -> dict[str, float]:
    """Top-1 accuracy of ``classify`` (uint8 batch -> scores) on ``images`` clean and under
    every corruption and severity: ``{"clean": a, "jpeg/2": a, ..., "mean": a}``, the mean over
    the 15 corrupted sets (ImageNet-C's average, without its AlexNet normalisation)."""
    labels = tf.convert_to_tensor(labels, tf.int64)

    def top1(batch_images) -> tf.Tensor:
        n = int(batch_images.shape[0])
        scores = [classify(batch_images[i : i + batch_size]) for i in range(0, n, batch_size)]
        return tf.argmax(tf.concat([tf.convert_to_tensor(s) for s in scores], 0), axis=1)

    def share(predicted) -> float:
        return round(float(tf.reduce_mean(tf.cast(predicted == labels, tf.float32))), 4)

    result = {"clean": share(top1(tf.convert_to_tensor(images, tf.uint8)))}
    for name, severity, corrupted in suite(images, seed):
        result[f"{name}/{severity}"] = share(top1(corrupted))
    corrupted_keys = [k for k in result if k != "clean"]
    result["mean"] = round(sum(result[k] for k in corrupted_keys) / len(corrupted_keys), 4)
    return result
