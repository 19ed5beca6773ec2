"""Writing a folder as ``tfrecord:DIR`` shards, and ``python -m tfxfer.data.tfrecord`` (see the
package docstring, :mod:`tfxfer.data.tfrecord`)."""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import tensorflow as tf

from tfxfer import progress
from tfxfer.data.tfrecord.read import ENCODED, LABEL
from tfxfer.errors import UserError


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
