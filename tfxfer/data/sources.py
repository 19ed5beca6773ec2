"""Resolving ``--data`` to decoded ``uint8`` images, labels, class names and a data report.

A ``--data`` value is one of:

- a directory in ``split/label/image`` layout (``train`` plus ``val``/``validation``/``valid``/
  ``test``) or ``label/image`` layout (a stratified validation split is drawn with the run's seed;
  every class of 2+ images gets at least one validation and one training image);
- ``tfds:NAME`` (TensorFlow Datasets; ``manual_dir`` in the config points at pre-downloaded files);
- ``tfrecord:DIR`` (TFRecord shards of encoded images, the training split streamed every epoch;
  :mod:`tfxfer.data.tfrecord`);
- a built-in name: ``hymenoptera``, ``cats_and_dogs_filtered``, ``fashion_mnist``, ``mnist``,
  ``mnist_m`` (a subset: 10,000 train, 9,001 test) or ``usps``. Each resolves to
  ``$TFXFER_DATA_DIR/<folder>`` when that variable is set (an air-gapped mirror, such as the
  offline kit); the first four are otherwise downloaded once into the Keras cache, while
  ``mnist_m`` and ``usps`` need the mirror (:mod:`tfxfer.data.arrays` reads the array ones).

Images are decoded and resized once (see :mod:`tfxfer.data.images`) into ``uint8`` arrays;
Fashion-MNIST and other small-image sources stay at their native size and are resized in the
``tf.data`` pipeline, so 60,000 images never exist as float32 at backbone resolution.

Example:
    >>> from tfxfer.data import sources as data
    >>> sorted(data.BUILTINS)
    ['cats_and_dogs_filtered', 'fashion_mnist', 'hymenoptera', 'mnist', 'mnist_m', 'usps']
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from tfxfer.data import arrays, filling
from tfxfer.data.decoding import decode_files, decode_shard  # noqa: F401 - re-exported
from tfxfer.data.folders import TRAIN_DIRS, VAL_DIRS, list_directory  # noqa: F401 - re-exported
from tfxfer.data.shard import Shard
from tfxfer.data.splits import ImageData, Split, require_every_class
from tfxfer.errors import UserError

FASHION_MNIST_CLASSES = (
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
)
BUILTINS = {
    "hymenoptera": (
        "hymenoptera_data",
        "https://download.pytorch.org/tutorial/hymenoptera_data.zip",
    ),
    "cats_and_dogs_filtered": (
        "cats_and_dogs_filtered",
        "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
    ),
    "fashion_mnist": ("fashion-mnist", None),
    "mnist": ("mnist", None),
    "mnist_m": ("mnist_m", None),
    "usps": ("usps.h5", None),
}
# Built-ins read as arrays (the rest are image folders): reader of the mirror, class names, and
# the keras.datasets name that downloads it when there is no mirror (None: mirror only).
ARRAY_BUILTINS = {
    "fashion_mnist": (arrays.read_idx_folder, FASHION_MNIST_CLASSES, "fashion_mnist"),
    "mnist": (arrays.read_idx_folder, arrays.DIGITS, "mnist"),
    "usps": (arrays.read_usps, arrays.DIGITS, None),
}


def load(
    data: str,
    image_size: int,
    *,
    val_split: float = 0.2,
    seed: int = 0,
    train_per_class: int | None = None,
    val_per_class: int | None = None,
    manual_dir: str | None = None,
    shard: Shard = Shard(),
) -> ImageData:
    """Resolves and reads a ``--data`` value (see the module docstring).

    Under multi-worker training ``shard`` names this worker's share: it decodes only its rows of
    each split, keeps its training rows and receives the validation rows of the others
    (:func:`decode_shard`).

    Raises:
        UserError: The path does not exist, a class is empty or missing from validation, only
            one class is present, or no image is readable.
    """
    limits = dict(seed=seed, train_per_class=train_per_class, val_per_class=val_per_class)
    if data.startswith("tfrecord:"):
        from tfxfer.data import tfrecord

        if train_per_class is not None or val_per_class is not None:
            raise UserError(
                "train_per_class / val_per_class pick images by class, and a "
                "tfrecord: source streams its training split unpicked",
                got=data,
                fix="drop them, or write shards of the subset you want",
            )
        stream, val, names, everyone, src = tfrecord.read(data[9:], image_size, shard)
        return _finish(names, stream, val, src, all_train_labels=everyone, shard=shard)
    if data.startswith("tfds:"):
        from tfxfer.data.tfds_source import load_tfds  # optional dependency, imported on demand

        tr, va, names, src = load_tfds(data[5:], image_size, manual_dir)
        return _finish(
            names,
            _limit(tr, train_per_class, seed),
            _limit(va, val_per_class, seed),
            src,
            shard=shard,
        )
    if data in BUILTINS:
        path = builtin_path(data)
        if data in ARRAY_BUILTINS:
            tr, va = _read_arrays(data, path)
            return _finish(
                list(ARRAY_BUILTINS[data][1]),
                _limit(tr, train_per_class, seed),
                _limit(va, val_per_class, seed),
                f"{data} ({path or 'Keras cache'})",
                shard=shard,
            )
        return load_directory(path, image_size, val_split=val_split, shard=shard, **limits)
    if os.path.isdir(data):
        return load_directory(data, image_size, val_split=val_split, shard=shard, **limits)
    raise UserError(
        "data must be an existing directory, tfds:NAME, tfrecord:DIR or a built-in name",
        valid=list(BUILTINS) + ["<dir>", "tfds:<name>", "tfrecord:<dir>"],
        got=data,
        fix="check the path (it must exist and hold one folder per class)",
    )


def builtin_path(name: str) -> str:
    """Folder of a built-in dataset: the air-gapped mirror, or a cached download."""
    folder, origin = BUILTINS[name]
    mirror = os.environ.get("TFXFER_DATA_DIR")
    if mirror and os.path.exists(os.path.join(mirror, folder)):
        return os.path.join(mirror, folder)
    if origin is None:
        if name in ARRAY_BUILTINS and ARRAY_BUILTINS[name][2]:
            return ""  # read through keras.datasets (its own cache and download)
        raise _not_downloadable(name, FileNotFoundError("no public download is wired for it"))
    import keras

    try:
        got = keras.utils.get_file(origin=origin, extract=True, cache_subdir="datasets")
    except Exception as exc:
        raise _not_downloadable(name, exc) from None
    for root, dirs, _ in os.walk(got):
        if os.path.basename(root) == folder or any(d in TRAIN_DIRS for d in dirs):
            return root
    raise UserError(
        f"downloaded archive for {name} lacks a {folder}/ folder",
        got=got,
        fix=f"delete {got} and run again",
    )


def _not_downloadable(name: str, exc: Exception) -> UserError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return UserError(
        f"built-in dataset {name} is neither in $TFXFER_DATA_DIR/"
        f"{BUILTINS[name][0]} nor downloadable here",
        got=first,
        fix="connect once to download it, or set TFXFER_DATA_DIR to a folder "
        f'holding {BUILTINS[name][0]}/ (eval "$(../shared/kit/prepare.sh)" '
        "sets it from the offline kit)",
    )


# ---- directories -------------------------------------------------------------------------------
def load_directory(
    path: str,
    image_size: int,
    *,
    val_split: float = 0.2,
    seed: int = 0,
    train_per_class: int | None = None,
    val_per_class: int | None = None,
    shard: Shard = Shard(),
) -> ImageData:
    """Reads a ``split/label/image`` or ``label/image`` folder (see :func:`load`)."""
    names, splits, ignored = list_directory(
        path,
        val_split=val_split,
        seed=seed,
        train_per_class=train_per_class,
        val_per_class=val_per_class,
    )
    skipped: list[dict] = []
    if shard.whole and len(splits[0][0]) >= max(1, filling.stream_min_files()):
        train, val = filling.stream_splits(splits[0], splits[1], image_size, seed, skipped, names)
        return _finish(names, train, val, str(Path(path)), skipped, ignored)
    decoded, all_train = [], None
    for paths, labels in splits:
        split, readable = decode_shard(paths, labels, image_size, skipped, shard, train=not decoded)
        all_train = readable if all_train is None else all_train
        decoded.append(split)
    return _finish(
        names,
        decoded[0],
        decoded[1],
        str(Path(path)),
        skipped,
        ignored,
        all_train_labels=None if shard.whole else all_train,
        shard=shard,
    )


# ---- arrays ------------------------------------------------------------------------------------
def _limit(split: Split, per_class: int | None, seed: int) -> Split:
    if per_class is None:
        return split
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(split.labels):
        idx = np.flatnonzero(split.labels == c)
        keep.append(np.sort(rng.choice(idx, min(per_class, len(idx)), replace=False)))
    keep = np.sort(np.concatenate(keep))
    return Split(split.images[keep], split.labels[keep])


def _read_arrays(name: str, path: str):
    reader, _, keras_name = ARRAY_BUILTINS[name]
    if path:
        return reader(path)
    try:
        return arrays.read_keras(keras_name)
    except Exception as exc:
        raise _not_downloadable(name, exc) from None


def _take_shard(split: Split, shard: Shard) -> Split:
    """This worker's training rows of an array split (padded; see :mod:`tfxfer.data.shard`)."""
    rows = shard.rows(len(split))
    return Split(split.images[rows], split.labels[rows])


def take_shard(data: ImageData, shard: Shard) -> ImageData:
    """``data`` read whole, reduced to this worker's training rows (validation stays whole)."""
    train = data.train.finish() if isinstance(data.train, filling.FillingSplit) else data.train
    if isinstance(train, Split):
        return dataclasses.replace(
            data,
            train=_take_shard(train, shard),
            all_train_labels=train.labels,
            workers=(shard.index, shard.count),
        )
    raise UserError(
        "a streamed training split must be read per worker",
        got=data.source,
        fix="let the run read --data itself",
    )


def _finish(
    names,
    train: Split,
    val: Split,
    source: str,
    skipped=None,
    ignored=None,
    *,
    all_train_labels: np.ndarray | None = None,
    shard: Shard = Shard(),
) -> ImageData:
    if len(train) == 0:
        raise UserError(
            "no training image could be read",
            got=source,
            fix="check the files are images (see the skipped list in the log)",
        )
    if not shard.whole and all_train_labels is None:  # arrays: read whole, then keep a shard
        all_train_labels, train = train.labels, _take_shard(train, shard)
    result = ImageData(
        list(names),
        train,
        val,
        source,
        [] if skipped is None else skipped,  # the same list: a streamed split adds to it
        ignored or [],
        all_train_labels=all_train_labels,
        workers=(shard.index, shard.count),
    )
    every = range(len(result.class_names))
    require_every_class("training", result.train_labels, every, result.class_names)
    require_every_class("validation", val.labels, every, result.class_names)
    return result
