"""The target domain of an adaptation run: its training images (never its labels), its
labelled evaluation data, and the endless target batches each training step pairs with a source
batch (:func:`target_batches`).

``--target`` takes anything ``--data`` takes (:func:`tfxfer.data.sources.load`), and also a
folder of **unlabelled** images (:mod:`tfxfer.data.unlabelled`). A labelled target gives its
training split's images; its labels are dropped here, before anything trains, and its validation
split becomes the evaluation data unless ``--target-val`` names other labelled data.

Example:
    >>> from tfxfer.adapt import domains  # doctest: +SKIP
    >>> t = domains.load_target("mnist_m", None, 32, [str(d) for d in range(10)])  # doctest: +SKIP
    >>> t.images.shape, t.val.val.images.shape  # doctest: +SKIP
    ((10000, 32, 32, 3), (9001, 32, 32, 3))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfxfer.data import pipeline, sources, unlabelled
from tfxfer.errors import UserError


@dataclass
class Target:
    """Target images for training and optional labelled target data for evaluation.

    Attributes:
        images: ``(N, H, W, C)`` uint8 training images of the target; no labels travel with them.
        val: Labelled target data (its ``val`` split is evaluated: the validation/test split, or
            every image of a ``--target-val`` folder in ``label/image`` layout), or None.
        source: Where the images came from.
        skipped: Unreadable files of an unlabelled folder.
    """

    images: np.ndarray
    val: sources.ImageData | None
    source: str
    skipped: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        text = f"target: {self.source}: {len(self.images)} training images (labels unused)"
        if self.val is not None:
            text += f"; evaluated on {len(self.val.val)} labelled images of {self.val.source}"
        else:
            text += "; no labelled target data: target accuracy is not reported"
        if self.skipped:
            text += f"; skipped as unreadable: {len(self.skipped)}"
        return text


def _labelled(data: str, image_size: int, seed: int, val_split: float) -> sources.ImageData:
    return sources.load(data, image_size, val_split=val_split, seed=seed)


def _evaluation_data(data: str, image_size: int, seed: int, val_split: float) -> sources.ImageData:
    """``--target-val``: its validation/test split, or all of a ``label/image`` folder."""
    loaded = _labelled(data, image_size, seed, val_split)
    root = Path(data)
    if root.is_dir() and not any((root / d).is_dir() for d in sources.TRAIN_DIRS):
        both = sources.Split(
            np.concatenate([loaded.train.images, loaded.val.images]),
            np.concatenate([loaded.train.labels, loaded.val.labels]),
        )
        loaded.val = both  # nothing of it trains: evaluate on every image
    return loaded


def load_target(
    target: str,
    target_val: str | None,
    image_size: int,
    class_names: list[str],
    seed: int = 0,
    val_split: float = 0.2,
) -> Target:
    """Reads ``--target`` and ``--target-val``; checks the evaluation classes are the source's.

    Raises:
        UserError: The target cannot be read, or the labelled target data's classes differ from
            the source's ``class_names``.
    """
    skipped: list[dict] = []
    if unlabelled.is_folder(target):
        images, skipped = unlabelled.load_folder(target, image_size)
        val = None
    else:
        data = _labelled(target, image_size, seed, val_split)
        images, val = data.train.images, data
    if target_val is not None:
        val = _evaluation_data(target_val, image_size, seed, val_split)
    if val is not None and list(val.class_names) != list(class_names):
        raise UserError(
            "the labelled target data must have the source's classes, in the same order",
            got=f"target {val.class_names} vs source {list(class_names)}",
            fix="name the class folders as in the source, or pass --target-val "
            "with matching classes (or a target folder without labels)",
        )
    return Target(images, val, target, skipped)


def target_batches(
    images: np.ndarray, image_size: int, batch_size: int, seed: int, augmenter=None
) -> tf.data.Dataset:
    """Endless shuffled batches of target images (float32 0-255), no labels."""
    if len(images) < batch_size:
        raise UserError(
            "the target must hold at least one batch of images",
            got=len(images),
            fix=f"add target images, or lower --batch-size (now {batch_size})",
        )
    dtype = tf.as_dtype(images.dtype)
    ds = pipeline.index_batches(
        len(images), batch_size, shuffle=True, seed=seed, drop_remainder=True
    ).repeat()
    ds = ds.map(
        lambda idx: pipeline.to_model_input(pipeline.gather_rows(images, idx, dtype), image_size),
        num_parallel_calls=pipeline.AUTOTUNE,
    )
    if augmenter is not None:
        ds = ds.map(
            lambda x: tf.cast(augmenter(x, training=True), tf.float32),
            num_parallel_calls=pipeline.AUTOTUNE,
        )
    return ds
