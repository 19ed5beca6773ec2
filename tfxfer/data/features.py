"""Cached backbone features for head-only phases.

When a phase trains only the head, the backbone is a fixed function, so recomputing it every
epoch is wasted work. :func:`extract` runs the backbone once per image and view, and
:func:`feature_dataset` trains the head on the cached, pooled features.

Augmentation is kept through ``views``: view 0 is the clean image, views 1..K-1 are independent
draws of the model's augmenter. Each epoch every image contributes one randomly drawn view.
MixUp and CutMix act on the cached features instead of pixels
(:func:`tfxfer.data.augment.feature_mixer`).

Train features are stored as float16 (pooled activations lose nothing that matters to a linear
head at that precision), validation features as float32; both go through
:func:`tfxfer.storage.allocate`, so they live in memory or on disk by size.

Example:
    >>> import numpy as np
    >>> from tfxfer.data import features
    >>> from tfxfer.models import model
    >>> from tfxfer.data.sources import ImageData, Split
    >>> split = Split(np.zeros((6, 32, 32, 3), np.uint8), np.arange(6) % 2)
    >>> data = ImageData(["a", "b"], split, split, "synthetic")
    >>> tm = model.build("MobileNet025", 2, 32, weights=None)
    >>> cache = features.extract(tm, data, views=2, image_size=32)
    >>> cache.train.shape, cache.val.shape
    ((2, 6, 256), (6, 256))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfxfer import progress, storage
from tfxfer.data.pipeline import AUTOTUNE, dataset_options, image_dataset, index_batches
from tfxfer.data.shard import Shard
from tfxfer.data.sources import Split

log = logging.getLogger(__name__)

EXTRACT_BATCH = 64


@dataclass
class FeatureCache:
    """Pooled backbone features: ``train`` is ``(views, N, C)``, ``val`` is ``(N_val, C)``."""

    train: np.ndarray
    train_labels: np.ndarray
    val: np.ndarray
    val_labels: np.ndarray


def _predict(fn, ds: tf.data.Dataset, out: np.ndarray, bar: progress.Progress) -> None:
    start, size = 0, fn.input_signature[0].shape[0]
    for batch in ds:
        n = int(batch.shape[0])
        if n < size:  # pad: a new batch shape costs a new set of oneDNN kernels
            batch = tf.pad(batch, [[0, size - n], [0, 0], [0, 0], [0, 0]])
        out[start : start + n] = np.asarray(fn(batch))[:n]
        start += n
        bar.add(n)


def extract(tm, data, views: int, image_size: int, shard: Shard = Shard()) -> FeatureCache:
    """Computes the pooled features of every train image (``views`` times) and val image once.

    Under multi-worker training (``shard``) each worker computes its own training rows (the
    only ones it holds) and its share of the validation rows; the validation features are then
    all-gathered, so every worker holds all of them and none was computed twice.

    Args:
        tm: A :class:`tfxfer.models.model.TransferModel`.
        data: The :class:`tfxfer.data.sources.ImageData` of the run.
        views: Number of views per training image (1 = clean only).
        image_size: Model input size.
        shard: This worker's share (:class:`tfxfer.data.shard.Shard`).
    """
    t0 = time.perf_counter()
    views = views if tm.augmenter is not None else 1
    width = tm.head_model.input.shape[-1]
    # a split smaller than a batch is one batch of its own size: padding a dozen images to 64
    # would run the backbone on five times as many rows (seconds at 224 px on a CPU)
    val_rows = shard.size(len(data.val))
    batch = max(1, min(EXTRACT_BATCH, max(len(data.train), val_rows)))
    # One trace and one batch shape (a retrace of a whole backbone costs seconds on a CPU).
    # jit_compile was measured slower on CPU (bench/README.md), so it is off.
    spec = tf.TensorSpec((batch, image_size, image_size, 3), tf.float32)
    infer = tf.function(lambda x: tm.feature_model(x, training=False), input_signature=[spec])

    def images_only(split, view):
        ds = image_dataset(
            split,
            data.num_classes,
            image_size,
            batch,
            augmenter=tm.augmenter if view > 0 else None,
        )
        return ds.map(lambda x, y: x, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)

    # a strided view (a memmap stays a memmap); assemble drops the rows past this worker's
    val_mine = (
        data.val
        if shard.whole
        else Split(
            data.val.images[shard.index :: shard.count], data.val.labels[shard.index :: shard.count]
        )
    )
    n = views * len(data.train) + len(val_mine)
    bar = progress.Progress("features", n, "images")
    train = storage.allocate((views, len(data.train), width), "float16")
    for v in range(views):
        _predict(infer, images_only(data.train, v), train[v], bar)
    val = storage.allocate((val_rows, width), "float32")
    _predict(infer, images_only(val_mine, 0), val, bar)
    bar.done()
    val = shard.assemble(val, len(data.val))
    elapsed = time.perf_counter() - t0
    log.info(
        "cached features: %d images x views here in %.1fs (%.0f images/s)",
        n,
        elapsed,
        n / max(elapsed, 1e-9),
    )
    return FeatureCache(train, data.train.labels, val, data.val.labels)


def feature_dataset(
    cache: FeatureCache,
    num_classes: int,
    batch_size: int,
    *,
    train: bool,
    seed: int | None = None,
    targets=None,
    mixer=None,
) -> tf.data.Dataset:
    """(features, one-hot) batches; in training each sample draws one of its cached views.

    ``targets`` maps integer labels to the model's targets, as in
    :func:`tfxfer.data.pipeline.image_dataset`; ``mixer`` (training only) is
    :func:`tfxfer.data.augment.feature_mixer`, applied to whole batches (the last partial batch is
    then dropped, as on images).
    """
    feats = cache.train if train else cache.val[None]
    labels = np.asarray(cache.train_labels if train else cache.val_labels, np.int32)
    views = feats.shape[0]

    def gather(idx, view):
        return np.asarray(feats[view, idx], np.float32)

    def load(idx):
        view = (
            tf.random.uniform(tf.shape(idx), 0, views, tf.int64, seed=seed)
            if views > 1
            else tf.zeros_like(idx)
        )
        x = tf.numpy_function(gather, [idx, view], tf.float32, stateful=False)
        x.set_shape((None, feats.shape[-1]))
        y = tf.gather(labels, idx)
        return x, (targets(y) if targets is not None else tf.one_hot(y, num_classes))

    mix = mixer if train else None
    ds = index_batches(
        len(labels), batch_size, shuffle=train, seed=seed, drop_remainder=mix is not None
    )
    ds = ds.map(load, num_parallel_calls=AUTOTUNE)
    if mix is not None:
        ds = ds.map(mix, num_parallel_calls=AUTOTUNE)
    ds = ds.prefetch(AUTOTUNE)
    return ds.with_options(dataset_options())
