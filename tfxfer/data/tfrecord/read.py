"""Reading ``tfrecord:DIR``: the training split streamed, validation decoded once (see the
package docstring, :mod:`tfxfer.data.tfrecord`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfxfer import progress, storage
from tfxfer.data import graph_decode
from tfxfer.data.shard import Shard
from tfxfer.errors import UserError

log = logging.getLogger(__name__)

ENCODED, LABEL = "image/encoded", "image/class/label"
SHUFFLE_BUFFER = 4096
VAL_PREFIXES = ("val", "validation", "test")


@dataclass
class Stream:
    """A training split read from shards every epoch (this worker's shards).

    ``labels`` are in stream order, repeated from the start up to ``len(self)`` records (the
    fullest worker's count), which is how many one epoch yields.
    """

    files: list[str]
    labels: np.ndarray
    size: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def images(self) -> np.ndarray:
        raise UserError(
            "this needs the training images decoded as an array, and a tfrecord: "
            "source streams its training split from the shards",
            got=self.files[0],
            fix="use the folder the shards were written from as --data",
        )

    def _raw(
        self, shuffle: bool, seed: int | None, exact: bool = True, epoch: tf.Tensor | None = None
    ) -> tf.data.Dataset:
        files = tf.data.Dataset.from_tensor_slices(self.files)
        if shuffle and epoch is not None:  # this epoch's own order, from (seed, epoch)
            key = tf.stack([tf.constant(seed or 0, tf.int64), tf.cast(epoch, tf.int64)])
            files = tf.data.Dataset.from_tensor_slices(
                tf.random.experimental.stateless_shuffle(tf.constant(self.files), key)
            )
        elif shuffle:
            files = files.shuffle(len(self.files), seed=seed, reshuffle_each_iteration=True)
        if shuffle:
            ds = files.interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(8, len(self.files)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            ds = (
                _seeded_shuffle(ds, SHUFFLE_BUFFER, key)
                if epoch is not None
                else ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
            )
        else:  # file order, record order: the order of ``labels``
            ds = files.flat_map(tf.data.TFRecordDataset)
        return ds.repeat().take(len(self)) if exact else ds

    def records(
        self,
        shuffle: bool,
        seed: int | None = None,
        exact: bool = True,
        epoch: tf.Tensor | None = None,
    ) -> tf.data.Dataset:
        """``(uint8 image, int32 label)`` pairs: exactly ``len(self)`` of them per pass, or
        (``exact=False``) each of this worker's records once, for the ``tf.data`` service,
        whose client then repeats and takes.

        ``epoch`` (a tensor): the order is drawn from ``(seed, epoch)`` instead of reshuffled
        on each pass; for a dataset rebuilt every epoch (:func:`tfxfer.data.passes.per_epoch`).
        """
        size = self.size
        return self._raw(shuffle, seed, exact, epoch).map(
            lambda r: _decode(r, size), num_parallel_calls=tf.data.AUTOTUNE
        )

    def rows(self, idx) -> np.ndarray:
        """The images at stream positions ``idx`` (one pass over the shards, decoding only
        those)."""
        idx = np.asarray(idx)
        wanted = tf.constant(np.unique(idx), tf.int64)
        size = self.size
        ds = (
            self._raw(False, None)
            .take(int(idx.max()) + 1)
            .enumerate()
            .filter(lambda i, r: tf.reduce_any(tf.equal(i, wanted)))
        )
        found = {int(i): x.numpy() for i, x in ds.map(lambda i, r: (i, _decode(r, size)[0]))}
        return np.stack([found[int(i)] for i in idx])


def _seeded_shuffle(ds: tf.data.Dataset, buffer: int, key: tf.Tensor) -> tf.data.Dataset:
    """``ds.shuffle(buffer)`` seeded by the int64 pair ``key``, which may be a tensor computed
    in the graph (``Dataset.shuffle`` takes its seed in Python)."""
    spec = ds.element_spec
    variant = tf.raw_ops.ShuffleDataset(
        input_dataset=tf.data.experimental.to_variant(ds),
        buffer_size=tf.constant(buffer, tf.int64),
        seed=key[0],
        seed2=key[1],
        reshuffle_each_iteration=False,
        output_types=[spec.dtype],
        output_shapes=[spec.shape],
    )
    return tf.data.experimental.from_variant(variant, spec)


def _parse(record: tf.Tensor) -> dict:
    return tf.io.parse_single_example(
        record,
        {ENCODED: tf.io.FixedLenFeature([], tf.string), LABEL: tf.io.FixedLenFeature([], tf.int64)},
    )


def _decode(record: tf.Tensor, size: int):
    example = _parse(record)
    image = graph_decode.decode_image(example[ENCODED], size)  # whole numbers 0-255, float32
    return tf.cast(image, tf.uint8), tf.cast(example[LABEL], tf.int32)


def scan_labels(files: list[str], what: str) -> np.ndarray:
    """Every record's label, in file order, parsing only the label (no image is decoded)."""
    spec = {LABEL: tf.io.FixedLenFeature([], tf.int64)}
    ds = (
        tf.data.TFRecordDataset(files)
        .map(
            lambda r: tf.io.parse_single_example(r, spec)[LABEL],
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .batch(4096)
    )
    bar = progress.Progress(f"reading labels of {what}", 0, "records")
    parts = []
    for batch in ds:
        parts.append(batch.numpy().astype(np.int32))
        bar.add(len(parts[-1]))
    bar.done()
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _split_files(root: str) -> tuple[list[str], list[str]]:
    names = sorted(tf.io.gfile.listdir(root))
    train = [f"{root.rstrip('/')}/{n}" for n in names if n.startswith("train") and ".tfrecord" in n]
    val = next(
        (
            [f"{root.rstrip('/')}/{n}" for n in names if n.startswith(p + "-") and ".tfrecord" in n]
            for p in VAL_PREFIXES
            if any(n.startswith(p + "-") and ".tfrecord" in n for n in names)
        ),
        [],
    )
    return train, val


def read(root: str, image_size: int, shard: Shard = Shard()):
    """``(train Stream, val Split, class names, train labels of all workers, description)``."""
    from tfxfer.data.splits import Split

    classes_file = f"{root.rstrip('/')}/classes.txt"
    if not tf.io.gfile.exists(classes_file):
        raise UserError(
            "a tfrecord: folder needs classes.txt (one class name per line)",
            got=root,
            fix="write the shards with python -m tfxfer.data.tfrecord",
        )
    with tf.io.gfile.GFile(classes_file) as f:
        names = [line.strip() for line in f if line.strip()]
    train_files, val_files = _split_files(root)
    if not train_files or not val_files:
        raise UserError(
            "a tfrecord: folder needs train-*.tfrecord and val-*.tfrecord shards "
            "(or validation-/test-)",
            got=f"{len(train_files)} train, {len(val_files)} validation shards in {root}",
            fix="write them with python -m tfxfer.data.tfrecord --data FOLDER --output DIR",
        )
    if len(train_files) < shard.count:
        raise UserError(
            "every worker needs a training shard of its own",
            valid=f">= {shard.count} shards",
            got=f"{len(train_files)} in {root}",
            fix=f"rewrite them with --shards {max(16, shard.count)}",
        )
    mine = train_files[shard.index :: shard.count]
    local = scan_labels(mine, "training shards")
    counts = shard.each(len(local))  # every worker sees every count: all stop, or none
    if counts.min() == 0:
        raise UserError(
            "every worker needs training records of its own",
            got=f"workers with none: {np.flatnonzero(counts == 0).tolist()} "
            f"({len(train_files)} shards in {root})",
            fix="rewrite the shards with fewer --shards than there are images",
        )
    everyone = local if shard.whole else _gather_labels(local, counts, shard)
    stream = Stream(mine, np.resize(local, int(counts.max())), image_size)
    val_labels = scan_labels(val_files, "validation shards")
    val = Split(_decode_val(val_files, len(val_labels), image_size, shard), val_labels)
    _check_labels(everyone, val_labels, names, root)
    return (
        stream,
        val,
        names,
        everyone,
        (
            f"tfrecord:{root} ({len(train_files)} training "
            f"shards, streamed; {len(val_files)} validation)"
        ),
    )


def _gather_labels(local: np.ndarray, counts: np.ndarray, shard: Shard) -> np.ndarray:
    padded = np.full(int(counts.max()), -1, np.int32)
    padded[: len(local)] = local
    got = np.asarray(shard.gather(padded))
    return got[got >= 0]


def _decode_val(files: list[str], n: int, size: int, shard: Shard) -> np.ndarray:
    mine = shard.size(n) if not shard.whole else n
    images = storage.allocate((mine, size, size, 3), "uint8")
    ds = tf.data.TFRecordDataset(files).enumerate()
    if not shard.whole:
        ds = ds.filter(lambda i, r: tf.equal(i % shard.count, shard.index))
    ds = ds.map(lambda i, r: _decode(r, size)[0], num_parallel_calls=tf.data.AUTOTUNE)
    bar = progress.Progress("decoding validation", mine, "images")
    start = 0
    for batch in ds.batch(256).prefetch(tf.data.AUTOTUNE):
        images[start : start + len(batch)] = batch.numpy()
        start += len(batch)
        bar.add(len(batch))
    bar.done()
    return shard.assemble(images, n)


def _check_labels(train: np.ndarray, val: np.ndarray, names: list[str], root: str) -> None:
    for split, labels in (("training", train), ("validation", val)):
        bad = labels[(labels < 0) | (labels >= len(names))]
        if len(bad):
            raise UserError(
                f"every {split} label must index classes.txt",
                valid=f"0..{len(names) - 1}",
                got=f"label {int(bad[0])} in {root}",
                fix="rewrite the shards, or add the missing class names",
            )
