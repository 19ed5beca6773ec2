"""Self-training after adaptation: confident target pseudo-labels with class-balanced thresholds.

After the adaptation phases, ``adapt.self_train`` more epochs train on the source's labels and
on the target images' own predictions (Zou et al., ECCV 2018, class-balanced self-training):

- at the start of every self-training epoch the current model predicts every target training
  image in inference mode (no augmentation). Each image's pseudo-label is its most probable
  class; for each class ``c``, the ``adapt.self_train_fraction`` most confident of the images
  predicted ``c`` are kept (:func:`class_balanced`). The threshold is per class, so a class the
  model is less sure of still contributes, and an easy class cannot crowd out the others;
- the kept images' cross-entropy against their pseudo-labels is added to the method's loss,
  weighted by ``adapt.self_train_weight``. The other target images keep their place in each
  batch with weight 0, so the method's own target terms (the adversary, MCC) still see every
  target image;
- the target's labels are never read: the pseudo-labels come from the model alone.

The stage is one more phase of the run, ``self_train``: the last phase's trainable scope and
optimiser, at ``adapt.self_train_lr`` (default: a tenth of the last phase's rate) with a
constant schedule; the reversal weight stays at its final value.

Example:
    >>> import numpy as np
    >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    >>> labels, keep = class_balanced(probs, 0.5)
    >>> labels.tolist(), keep.tolist()
    ([0, 0, 1, 1], [True, False, True, False])
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from tfxfer.data import pipeline

PHASE_NAME = "self_train"


def class_balanced(probs: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-labels and which to keep: per predicted class, the ``ceil(fraction * n_c)`` most
    confident of its ``n_c`` images (ties: the earlier image first).

    Args:
        probs: ``(N, classes)`` predicted probabilities.
        fraction: In (0, 1]: the share of each class's predictions kept.

    Returns:
        ``(labels, keep)``: the ``(N,)`` argmax labels, and a boolean mask of the kept ones.
    """
    probs = np.asarray(probs)
    labels = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    keep = np.zeros(len(probs), bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        order = np.argsort(-confidence[rows], kind="stable")
        keep[rows[order[: math.ceil(fraction * len(rows))]]] = True
    return labels, keep


def phase(cfg):
    """The self-training phase: the last phase's scope and optimiser, constant rate."""
    last = cfg.phases[-1]
    lr = cfg.adapt.self_train_lr
    if lr is None:
        lr = 0.1 * last.rates()[0]
    return dataclasses.replace(
        last,
        name=PHASE_NAME,
        epochs=cfg.adapt.self_train,
        lr=float(lr),
        lr_range=(),
        schedule="constant",
        early_stopping=0,
    )


def predict(tm, images: np.ndarray, image_size: int, batch_size: int = 256) -> np.ndarray:
    """The model's probabilities for ``images`` (uint8), in inference mode, in order."""
    forward = tf.function(lambda x: tf.nn.softmax(tf.cast(tm.model(x, training=False), tf.float32)))
    ds = pipeline.index_batches(len(images), batch_size, shuffle=False, seed=None)
    dtype = tf.as_dtype(images.dtype)
    ds = ds.map(
        lambda idx: pipeline.to_model_input(pipeline.gather_rows(images, idx, dtype), image_size)
    )
    return np.concatenate([forward(x).numpy() for x in ds])


def labelled_batches(
    images: np.ndarray,
    labels: np.ndarray,
    keep: np.ndarray,
    num_classes: int,
    image_size: int,
    batch_size: int,
    seed: int,
    augmenter=None,
) -> tf.data.Dataset:
    """Endless shuffled ``(images, one-hot pseudo-labels, weights)`` batches of every target
    image: weight 1 for the kept ones, 0 for the rest."""
    labels = np.asarray(labels, np.int32)  # one-hot in the map: N x classes never held whole
    weights = keep.astype(np.float32)
    dtype = tf.as_dtype(images.dtype)
    ds = pipeline.index_batches(
        len(images), batch_size, shuffle=True, seed=seed, drop_remainder=True
    ).repeat()

    def rows(idx):
        x = pipeline.to_model_input(pipeline.gather_rows(images, idx, dtype), image_size)
        if augmenter is not None:
            x = tf.cast(augmenter(x, training=True), tf.float32)
        return x, tf.one_hot(tf.gather(labels, idx), num_classes), tf.gather(weights, idx)

    return ds.map(rows, num_parallel_calls=pipeline.AUTOTUNE)


def summary(labels: np.ndarray, keep: np.ndarray, num_classes: int) -> dict:
    """How many target images were kept, in all and per pseudo-class (for the history)."""
    return {
        "kept": int(keep.sum()),
        "of": int(len(keep)),
        "kept_per_class": np.bincount(labels[keep], minlength=num_classes).tolist(),
    }
