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

from tfxfer.data import arrays
from tfxfer.data.decoding import decode_files, decode_shard  # noqa: F401 - re-exported
from tfxfer.data.images import IMAGE_EXTENSIONS
from tfxfer.data.shard import Shard
from tfxfer.data.splits import ImageData, Split  # noqa: F401 - re-exported
from tfxfer.errors import UserError

TRAIN_DIRS = ("train", "training")
VAL_DIRS = ("val", "validation", "valid", "test")
FASHION_MNIST_CLASSES = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle_boot")
BUILTINS = {
    "hymenoptera": ("hymenoptera_data",
                    "https://download.pytorch.org/tutorial/hymenoptera_data.zip"),
    "cats_and_dogs_filtered": ("cats_and_dogs_filtered",
                               "https://storage.googleapis.com/mledu-datasets/"
                               "cats_and_dogs_filtered.zip"),
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


def load(data: str, image_size: int, *, val_split: float = 0.2, seed: int = 0,
         train_per_class: int | None = None, val_per_class: int | None = None,
         manual_dir: str | None = None, shard: Shard = Shard()) -> ImageData:
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
            raise UserError("train_per_class / val_per_class pick images by class, and a "
                            "tfrecord: source streams its training split unpicked",
                            got=data, fix="drop them, or write shards of the subset you want")
        stream, val, names, everyone, src = tfrecord.read(data[9:], image_size, shard)
        return _finish(names, stream, val, src, all_train_labels=everyone, shard=shard)
    if data.startswith("tfds:"):
        from tfxfer.data.tfds_source import load_tfds  # optional dependency, imported on demand
        tr, va, names, src = load_tfds(data[5:], image_size, manual_dir)
        return _finish(names, _limit(tr, train_per_class, seed), _limit(va, val_per_class, seed),
                       src, shard=shard)
    if data in BUILTINS:
        path = builtin_path(data)
        if data in ARRAY_BUILTINS:
            tr, va = _read_arrays(data, path)
            return _finish(list(ARRAY_BUILTINS[data][1]), _limit(tr, train_per_class, seed),
                           _limit(va, val_per_class, seed), f"{data} ({path or 'Keras cache'})",
                           shard=shard)
        return load_directory(path, image_size, val_split=val_split, shard=shard, **limits)
    if os.path.isdir(data):
        return load_directory(data, image_size, val_split=val_split, shard=shard, **limits)
    raise UserError("data must be an existing directory, tfds:NAME, tfrecord:DIR or a "
                    "built-in name",
                    valid=list(BUILTINS) + ["<dir>", "tfds:<name>", "tfrecord:<dir>"], got=data,
                    fix="check the path (it must exist and hold one folder per class)")


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
    except Exception as exc:  # noqa: BLE001 - no network, a proxy, a truncated download
        raise _not_downloadable(name, exc) from None
    for root, dirs, _ in os.walk(got):
        if os.path.basename(root) == folder or any(d in TRAIN_DIRS for d in dirs):
            return root
    raise UserError(f"downloaded archive for {name} lacks a {folder}/ folder", got=got,
                    fix=f"delete {got} and run again")


def _not_downloadable(name: str, exc: Exception) -> UserError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return UserError(f"built-in dataset {name} is neither in $TFXFER_DATA_DIR/"
                     f"{BUILTINS[name][0]} nor downloadable here", got=first,
                     fix="connect once to download it, or set TFXFER_DATA_DIR to a folder "
                         f"holding {BUILTINS[name][0]}/ (eval \"$(../shared/kit/prepare.sh)\" "
                         "sets it from the offline kit)")


# ---- directories -------------------------------------------------------------------------------
def _class_dirs(root: Path, ignored: list[str]) -> dict[str, list[str]]:
    classes: dict[str, list[str]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(str(entry))
            continue
        files = []
        for f in sorted(entry.rglob("*")):
            if f.is_dir():
                continue
            if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."):
                files.append(str(f))
            else:
                ignored.append(str(f))
        classes[entry.name] = files
    return classes


def load_directory(path: str, image_size: int, *, val_split: float = 0.2, seed: int = 0,
                   train_per_class: int | None = None, val_per_class: int | None = None,
                   shard: Shard = Shard()) -> ImageData:
    """Reads a ``split/label/image`` or ``label/image`` folder (see :func:`load`)."""
    names, splits, ignored = list_directory(path, val_split=val_split, seed=seed,
                                            train_per_class=train_per_class,
                                            val_per_class=val_per_class)
    skipped: list[dict] = []
    decoded, all_train = [], None
    for paths, labels in splits:
        split, readable = decode_shard(paths, labels, image_size, skipped, shard,
                                       train=not decoded)
        all_train = readable if all_train is None else all_train
        decoded.append(split)
    return _finish(names, decoded[0], decoded[1], str(Path(path)), skipped, ignored,
                   all_train_labels=None if shard.whole else all_train, shard=shard)


def list_directory(path: str, *, val_split: float = 0.2, seed: int = 0,
                   train_per_class: int | None = None, val_per_class: int | None = None):
    """A folder's class names, its ``[(paths, labels)]`` for train and validation, and the
    non-image files it ignores; nothing is decoded (:func:`load_directory` decodes)."""
    root = Path(path)
    ignored: list[str] = []
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    train_dir = next((subdirs[d] for d in TRAIN_DIRS if d in subdirs), None)
    if train_dir is not None:
        train_files = _class_dirs(train_dir, ignored)
        val_dir = next((subdirs[d] for d in VAL_DIRS if d in subdirs), None)
        if val_dir is None:
            train_files, val_files = _split_files(train_files, val_split, seed)
        else:
            val_files = _class_dirs(val_dir, ignored)
    else:
        train_files, val_files = _split_files(_class_dirs(root, ignored), val_split, seed)
    names = sorted(train_files)
    split_off = train_dir is None or val_dir is None  # validation taken from the training folders
    _check_classes(names, train_files, val_files, path, split_off)
    rng = np.random.default_rng(seed)
    splits = []
    for files, limit in ((train_files, train_per_class), (val_files, val_per_class)):
        paths, labels = [], []
        for i, name in enumerate(names):
            chosen = list(files[name])
            if limit is not None and len(chosen) > limit:
                chosen = [chosen[j] for j in sorted(rng.choice(len(chosen), limit, replace=False))]
            paths += chosen
            labels += [i] * len(chosen)
        splits.append((paths, np.asarray(labels, np.int32)))
    return names, splits, ignored


def _split_files(classes: dict[str, list[str]], val_split: float, seed: int):
    rng = np.random.default_rng(seed)
    train, val = {}, {}
    for name, files in classes.items():
        order = rng.permutation(len(files))
        # a class of 2+ files keeps at least one image on each side, however small val_split is
        n_val = (min(len(files) - 1, max(1, int(round(len(files) * val_split))))
                 if len(files) > 1 else 0)
        val[name] = sorted(files[j] for j in order[:n_val])
        train[name] = sorted(files[j] for j in order[n_val:])
    return train, val


def _check_classes(names, train_files, val_files, path, split_off: bool = False) -> None:
    if len(names) < 2:
        raise UserError("data needs at least 2 classes (one sub-folder per class)",
                        got=f"{len(names)} class folder(s) in {path}: {names}",
                        fix="put each class's images in its own folder, e.g. data/cats, data/dogs")
    empty = [n for n in names if not train_files[n]]
    if empty:
        raise UserError("every class folder must hold at least one image", got=f"empty: {empty}",
                        fix="add images to those folders or remove them")
    missing = [n for n in names if not val_files.get(n)]
    if missing and split_off:  # no validation folder: each such class has a single image
        raise UserError("every class needs at least 2 images, one to train on and one to "
                        "validate on (there is no validation folder, so validation is split "
                        "off the training images)", got=f"a single image: {missing}",
                        fix="add images to those classes, or remove their folders")
    if missing:
        raise UserError("the validation split must hold every class", got=f"missing: {missing}",
                        fix="add validation images for those classes, or remove the validation "
                            "folder to split off a fraction of train (--set val_split=0.2)")
    extra = sorted(set(val_files) - set(names))
    if extra:
        raise UserError("validation classes must also be training classes", got=extra,
                        fix="make the validation folders match the training folders")


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
    except Exception as exc:  # noqa: BLE001 - no network and nothing in the Keras cache
        raise _not_downloadable(name, exc) from None


def _take_shard(split: Split, shard: Shard) -> Split:
    """This worker's training rows of an array split (padded; see :mod:`tfxfer.data.shard`)."""
    rows = shard.rows(len(split))
    return Split(split.images[rows], split.labels[rows])


def take_shard(data: ImageData, shard: Shard) -> ImageData:
    """``data`` read whole, reduced to this worker's training rows (validation stays whole)."""
    if isinstance(data.train, Split):
        return dataclasses.replace(data, train=_take_shard(data.train, shard),
                                   all_train_labels=data.train_labels,
                                   workers=(shard.index, shard.count))
    raise UserError("a streamed training split must be read per worker",
                    got=data.source, fix="let the run read --data itself")


def _finish(names, train: Split, val: Split, source: str, skipped=None, ignored=None, *,
            all_train_labels: np.ndarray | None = None, shard: Shard = Shard()) -> ImageData:
    if len(train) == 0:
        raise UserError("no training image could be read", got=source,
                        fix="check the files are images (see the skipped list in the log)")
    if not shard.whole and all_train_labels is None:  # arrays: read whole, then keep a shard
        all_train_labels, train = train.labels, _take_shard(train, shard)
    result = ImageData(list(names), train, val, source, skipped or [], ignored or [],
                       all_train_labels=all_train_labels,
                       workers=(shard.index, shard.count))
    for split_name, labels in (("training", result.train_labels), ("validation", val.labels)):
        present = set(np.unique(labels).tolist())
        missing = [n for i, n in enumerate(result.class_names) if i not in present]
        if missing:
            raise UserError(f"the {split_name} split must hold readable images of every class",
                            got=f"missing: {missing}",
                            fix="add readable images for those classes (see the skipped list)")
    return result
