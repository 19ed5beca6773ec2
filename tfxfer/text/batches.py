"""Texts as the encoder's batches: tokenised once, grouped by length, padded per batch.

- :func:`tokenize` turns every text into its token ids once (:mod:`tfxfer.text.wordpiece`, no
  special tokens), in chunks.
- :func:`batches` makes each epoch's ``(inputs, targets)`` batches: in training, texts of
  similar length go together (sorted within shuffled pools of :data:`POOL_BATCHES` batches,
  the batch order shuffled, as fastai's sortish sampler does), a new order each epoch drawn
  from ``(seed, epoch)``; each batch is padded only to its longest text, rounded up to a
  multiple of 8 (at most the encoder's sequence length).
- :func:`predict` runs a model on rows in order, in inference mode.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfxfer.text import encoder
from tfxfer.text.wordpiece import pad_rows

POOL_BATCHES = 50


def tokenize(tm: encoder.TextModel, texts: list[str], chunk: int = 2048) -> list[np.ndarray]:
    """Token ids of every text (no special tokens), in chunks."""
    fn = tf.function(tm.tokenizer.ids)
    rows = []
    for i in range(0, len(texts), chunk):
        part = fn(tf.constant(texts[i : i + chunk], tf.string))
        rows.extend(np.asarray(r, np.int32) for r in part.to_list())
    return rows


def _inputs(tm, rows) -> dict:
    """The encoder's inputs for ``rows``, padded to the longest, rounded up to a multiple of 8."""
    longest = min(max(len(r) for r in rows) + 2, tm.sequence_length)
    width = min(8 * math.ceil(longest / 8), tm.sequence_length)
    batch = pad_rows(
        rows,
        tm.sequence_length,
        tm.tokenizer.cls_id,
        tm.tokenizer.sep_id,
        tm.tokenizer.pad_id,
        width,
    )
    return {k: v for k, v in batch.items() if k in tm.input_names}


def batches(
    tm, rows, targets, batch_size: int, seed: int, shuffle: bool, first_epoch: int = 0
) -> tf.data.Dataset:
    """``(inputs, targets)`` batches, each padded to its longest text; a new sortish order
    every epoch when ``shuffle``, epoch ``e``'s drawn from ``(seed, e)``, counting from
    ``first_epoch`` (a resumed phase goes on with the orders it had not yet seen)."""
    n = len(rows)
    lengths = np.array([len(r) for r in rows])
    names = tm.input_names
    spec = {
        k: tf.TensorSpec((None, None), tf.bool if k == "padding_mask" else tf.int32) for k in names
    }
    epoch = [first_epoch]

    def order():
        if not shuffle:
            return [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
        rng = np.random.default_rng([seed, epoch[0]])
        epoch[0] += 1
        perm = rng.permutation(n)
        pool = batch_size * POOL_BATCHES
        out = []
        for i in range(0, n, pool):
            part = perm[i : i + pool]
            part = part[np.argsort(-lengths[part], kind="stable")]
            out.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
        return [out[i] for i in rng.permutation(len(out))]

    def gen():
        for idx in order():
            picked = [rows[i] for i in idx]
            yield _inputs(tm, picked), targets[idx]

    ds = tf.data.Dataset.from_generator(
        gen, output_signature=(spec, tf.TensorSpec((None,) + targets.shape[1:], tf.float32))
    )
    return ds.apply(tf.data.experimental.assert_cardinality(math.ceil(n / batch_size))).prefetch(2)


def predict(tm, model: keras.Model, rows, batch_size: int = 128) -> np.ndarray:
    """``model`` (``tm.model`` or ``tm.feature_model``) on ``rows`` in inference mode, in order."""
    return np.concatenate(
        [
            np.asarray(model(_inputs(tm, rows[i : i + batch_size]), training=False), np.float32)
            for i in range(0, len(rows), batch_size)
        ]
    )
