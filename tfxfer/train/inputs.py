"""The training and validation batches of one stage: images or cached features, per worker.

- One process: ``tf.data`` datasets of the global batch; Keras's ``fit`` splits each batch over
  the strategy's replicas. With ``data_service`` the training batches come from a ``tf.data``
  service (:func:`tfxfer.data.pipeline.via_service`; rows gathered in the graph).
- Several workers (:class:`~tfxfer.data.shard.Shard`): each worker's training batches hold only
  its own rows (decoded, featurised and augmented there), ``batch_size / workers`` of them per
  step, built by ``strategy.distribute_datasets_from_function``; no element is read and then
  dropped. Validation holds the whole split on every worker and is split by element, so each
  validation image is evaluated once in the cluster.

Example:
    >>> from tfxfer.train import inputs  # doctest: +SKIP
    >>> args = (tm, cfg, data, cache, seed, targets, True, strategy, shard)  # doctest: +SKIP
    >>> b = inputs.stage(*args)  # doctest: +SKIP
    >>> model.fit(b.train, validation_data=b.val)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfxfer.config import Config
from tfxfer.data import augment as augment_lib
from tfxfer.data import features, pipeline
from tfxfer.data.shard import Shard
from tfxfer.errors import UserError


@dataclass
class Batches:
    """``train`` is what ``fit`` takes (a distributed dataset under several workers);
    ``local()`` builds this process's plain training dataset of the global batch (the LR
    finder's, only when one runs); ``val`` the validation batches."""

    train: object
    local: Callable[[], tf.data.Dataset]
    val: tf.data.Dataset


def class_weights(cfg: Config, labels: np.ndarray, num_classes: int) -> np.ndarray | None:
    """Per-class weights ``N / (K * n_class)`` for ``class_weight="balanced"``, else None."""
    if cfg.class_weight == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return len(labels) / (num_classes * np.maximum(counts, 1.0))


def with_sample_weights(ds: tf.data.Dataset, weights: np.ndarray | None) -> tf.data.Dataset:
    """Adds each sample's weight ``sum_c y_c * w_c``: its label-weighted class weight.

    For a one-hot label this is Keras's ``class_weight``; for a MixUp/CutMix label it weights
    the sample by the classes it was mixed from, in their proportions (Keras's ``class_weight``
    would take the argmax of the mixed label).
    """
    if weights is None:
        return ds
    w = tf.constant(weights, tf.float32)
    return ds.map(
        lambda x, y: (x, y, tf.linalg.matvec(tf.cast(y, tf.float32), w)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def per_worker_batch(batch_size: int, shard: Shard) -> int:
    """Rows each worker takes per step; the global batch must split evenly over the workers."""
    if batch_size % shard.count:
        fit = batch_size - batch_size % shard.count or shard.count
        raise UserError(
            "batch_size must be a multiple of the number of workers",
            got=f"batch_size={batch_size}, {shard.count} workers",
            fix=f"pass --batch-size {fit}",
        )
    return batch_size // shard.count


def stage(
    tm,
    cfg: Config,
    data,
    cache,
    seed: int,
    targets,
    augment_in_data: bool,
    strategy: tf.distribute.Strategy,
    shard: Shard,
) -> Batches:
    """The batches of one stage (see the module docstring)."""
    weights = class_weights(cfg, data.train_labels, data.num_classes)
    service = cfg.data_service and cache is None  # cached features are small and local

    def train(batch_size: int) -> tf.data.Dataset:
        if cache is not None:
            ds = features.feature_dataset(
                cache,
                data.num_classes,
                batch_size,
                train=True,
                seed=seed,
                targets=targets,
                mixer=augment_lib.feature_mixer(cfg.mixup, cfg.cutmix, cfg.seed),
            )
        else:
            mixer = augment_lib.batch_mixer(cfg.mixup, cfg.cutmix, cfg.seed)
            ds = pipeline.image_dataset(
                data.train,
                data.num_classes,
                tm.image_size,
                batch_size,
                shuffle=True,
                seed=seed,
                augmenter=tm.augmenter if augment_in_data else None,
                mixer=mixer,
                drop_remainder=mixer is not None,
                targets=targets,
                service=cfg.data_service if service else "",
            )
        return with_sample_weights(ds, weights)

    if cache is not None:
        val = features.feature_dataset(
            cache, data.num_classes, cfg.batch_size, train=False, targets=targets
        )
    else:
        val = pipeline.image_dataset(
            data.val, data.num_classes, tm.image_size, cfg.batch_size, targets=targets
        )
    if shard.whole:
        local = train(cfg.batch_size)
        return Batches(local, lambda: local, val)
    per_worker_batch(cfg.batch_size, shard)
    if cfg.batch_size % strategy.num_replicas_in_sync:
        raise UserError(
            "batch_size must be a multiple of the number of replicas",
            got=f"batch_size={cfg.batch_size}, {strategy.num_replicas_in_sync} replicas",
            fix=f"pass a multiple of {strategy.num_replicas_in_sync}",
        )
    distributed = strategy.distribute_datasets_from_function(
        lambda ctx: train(ctx.get_per_replica_batch_size(cfg.batch_size))
    )
    return Batches(distributed, lambda: train(cfg.batch_size), val)
