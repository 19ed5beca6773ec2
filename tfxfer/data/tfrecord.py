"""``--data tfrecord:DIR``: TFRecord shards of encoded images; the training split streams.

For data larger than local disk, or on a bucket (``gs://``, ``s3://``: any path TensorFlow's file
system reads). A folder source decodes everything once onto local disk; this one never copies
the training images: every epoch reads the shards again and decodes in the ``tf.data`` graph.

Layout (what :func:`write` produces)::

    DIR/classes.txt                       one class name per line; a label is its line index
    DIR/train-00000-of-00016.tfrecord     tf.train.Example records:
    ...                                     image/encoded      the image file's bytes
    DIR/val-00000-of-00002.tfrecord         image/class/label  int64, 0-based
    (val-, validation- or test-)

Reading:

- **Training split, streamed.** Each epoch the shards are shuffled, read interleaved and
  through a shuffle buffer of :data:`SHUFFLE_BUFFER` records, decoded by
  :func:`tfxfer.data.graph_decode.decode_image` (for JPEG and 8-bit PNG the same pixels as the
  folder loader's Pillow decode) at the model's size. One pass that parses only the labels (no
  image is decoded) counts the classes and fixes the epoch's length.
- **Validation, decoded once** into the cache (:func:`tfxfer.storage.allocate`), as a folder's.
- **Several workers:** worker ``k`` of ``W`` streams shards ``k, k + W, ...`` (so there must be
  at least ``W`` training shards) and takes as many records per epoch as the fullest worker has
  (a worker with fewer repeats some); validation records are decoded in shares and
  all-gathered (:mod:`tfxfer.data.shard`).

Everything that needs the training images as an array (generative augmentation, zero-shot)
refuses a streamed split with a one-line error; int8 export's calibration images and the
``auto`` recipe's probe are read from the stream, in one pass.

Example:
    >>> import os, tempfile
    >>> from tfxfer.data import tfrecord
    >>> root = tempfile.mkdtemp()
    >>> for split in ("train", "val"):  # a 2-class folder to convert
    ...     for c in ("a", "b"):
    ...         os.makedirs(f"{root}/src/{split}/{c}")
    ...         png = tf.io.encode_png(tf.fill((8, 8, 3), tf.constant(60 * len(c), tf.uint8)))
    ...         tf.io.write_file(f"{root}/src/{split}/{c}/x.png", png)
    >>> report = tfrecord.write(f"{root}/src", f"{root}/shards", shards=1)
    >>> report["train"]["records"], report["val"]["records"], report["classes"]
    (2, 2, ['a', 'b'])
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
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


# ---- writing -----------------------------------------------------------------------------------
def _example(data: bytes, label: int) -> bytes:
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
        )
    ).SerializeToString()


GRAPH_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")  # what tf.io's decoders read


def _graph_readable(path: str) -> None:
    """Raises ValueError for a file the in-graph decoder refuses (its format or a CMYK JPEG);
    reads the header only (calling the graph decoder eagerly ran at ~30 files/s)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format not in GRAPH_FORMATS:
            raise ValueError(
                f"{im.format} is not decoded by TensorFlow (valid: {', '.join(GRAPH_FORMATS)})"
            )
        if im.format in ("JPEG", "MPO") and im.mode == "CMYK":
            raise ValueError("a CMYK JPEG is not decoded by TensorFlow")


def write(
    data: str,
    output: str,
    shards: int = 16,
    *,
    val_split: float = 0.2,
    seed: int = 0,
    val_shards: int | None = None,
) -> dict:
    """Writes a folder's images (their file bytes, unchanged) as TFRecord shards.

    The folder is read as ``--data`` reads it (``split/label/image`` or ``label/image``, the
    same validation split for the same seed); every file is test-decoded, by Pillow and by the
    in-graph decoder the stream uses, and one either cannot read (a TIFF, a CMYK JPEG) is left out
    and listed. Shards already in ``output`` are deleted first. Training records are shuffled by
    ``seed`` before they are dealt round-robin to ``shards`` files, so each shard holds a mix of
    classes.

    Returns:
        ``{"classes": [...], "train": {"records", "shards"}, "val": {...}, "skipped": [...]}``.
    """
    from tfxfer.data import folders
    from tfxfer.data.images import decode

    if not os.path.isdir(data):
        raise UserError(
            "--data must be an image folder to convert",
            got=data,
            fix="give a split/label/image or label/image folder",
        )
    if shards < 1:
        raise UserError("--shards must be at least 1", got=shards, fix="pass --shards 16")
    names, splits, _ = folders.list_directory(data, val_split=val_split, seed=seed)
    tf.io.gfile.makedirs(output)
    for old in tf.io.gfile.glob(f"{output.rstrip('/')}/*.tfrecord"):  # no stale shards mix in
        tf.io.gfile.remove(old)
    with tf.io.gfile.GFile(f"{output.rstrip('/')}/classes.txt", "w") as f:
        f.write("".join(n + "\n" for n in names))
    report: dict = {"classes": names, "skipped": []}
    for split, (paths, labels), n_shards in (
        ("train", splits[0], shards),
        ("val", splits[1], val_shards or max(1, min(shards, len(splits[1][0]) // 1000))),
    ):
        order = (
            np.random.default_rng(seed).permutation(len(paths))
            if split == "train"
            else np.arange(len(paths))
        )
        writers = [
            tf.io.TFRecordWriter(f"{output.rstrip('/')}/{split}-{i:05d}-of-{n_shards:05d}.tfrecord")
            for i in range(n_shards)
        ]
        bar, written = progress.Progress(f"writing {split}", len(paths), "images"), 0
        for j in order:
            with open(paths[j], "rb") as f:
                raw = f.read()
            try:  # a shard holds only what both decoders read: Pillow's and the graph's
                decode(paths[j], 8)
                _graph_readable(paths[j])
            except Exception as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                report["skipped"].append({"path": paths[j], "reason": reason})
                continue
            writers[written % n_shards].write(_example(raw, int(labels[j])))
            written += 1
            bar.add(1)
        bar.done()
        for w in writers:
            w.close()
        report[split] = {"records": written, "shards": n_shards}
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m tfxfer.data.tfrecord",
        description="Write an image folder as TFRecord shards for --data tfrecord:DIR.",
    )
    p.add_argument("--data", required=True, help="split/label/image or label/image folder")
    p.add_argument("--output", required=True, help="folder (or gs:// path) for the shards")
    p.add_argument("--shards", type=int, default=16, help="training shards (default 16)")
    p.add_argument("--val-split", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        report = write(a.data, a.output, a.shards, val_split=a.val_split, seed=a.seed)
    except UserError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{report['train']['records']:,} training records in {report['train']['shards']} "
        f"shards, {report['val']['records']:,} validation in {report['val']['shards']}, "
        f"{len(report['classes'])} classes, {len(report['skipped'])} unreadable files left out "
        f"-> {a.output} (use --data tfrecord:{a.output})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
