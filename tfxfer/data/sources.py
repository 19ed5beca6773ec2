"""Resolving ``--data`` to decoded ``uint8`` images, labels, class names and a data report.

A ``--data`` value is one of:

- a directory in ``split/label/image`` layout (``train`` plus ``val``/``validation``/``valid``/
  ``test``) or ``label/image`` layout (a stratified validation split is drawn with the run's seed;
  every class of 2+ images gets at least one validation and one training image);
- ``tfds:NAME`` (TensorFlow Datasets; ``manual_dir`` in the config points at pre-downloaded files);
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

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tfxfer import storage
from tfxfer.data import arrays
from tfxfer.errors import UserError
from tfxfer.data.images import IMAGE_EXTENSIONS, UnreadableImage, decode

log = logging.getLogger(__name__)

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
IMBALANCE_WARN_RATIO = 3.0


@dataclass
class Split:
    """Images (``(N, H, W, C)`` uint8, possibly smaller than the model input) and int labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ImageData:
    """A resolved dataset: both splits, class names, and the report of what was read."""

    class_names: list[str]
    train: Split
    val: Split
    source: str
    skipped: list[dict] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    generated: int = 0  # the last ``generated`` rows of ``train`` are GAN samples (synthetic_ratio)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {c: int((s.labels == i).sum()) for i, c in enumerate(self.class_names)}
                for name, s in (("train", self.train), ("val", self.val))}

    def imbalance(self) -> float:
        train = list(self.counts()["train"].values())
        return max(train) / max(1, min(train))

    def report(self) -> dict:
        """The data report saved as ``data_report.json``."""
        return {"source": self.source, "class_names": self.class_names, "counts": self.counts(),
                "imbalance_ratio": round(self.imbalance(), 3),
                "skipped_unreadable": self.skipped, "ignored_non_images": self.ignored,
                "generated_train_images": self.generated}

    def describe(self) -> str:
        """A human-readable summary: classes, counts per split and class, skipped files."""
        counts = self.counts()
        width = max(len(c) for c in self.class_names)
        lines = [f"data: {self.source}",
                 f"  {'class':<{width}}  {'train':>7}  {'val':>7}"]
        for c in self.class_names:
            lines.append(f"  {c:<{width}}  {counts['train'][c]:>7}  {counts['val'][c]:>7}")
        lines.append(f"  {'total':<{width}}  {len(self.train):>7}  {len(self.val):>7}")
        if self.generated:
            lines.append(f"  of which generated (train only): {self.generated}")
        lines.append(f"  skipped as unreadable: {len(self.skipped)}")
        lines += [f"    {s['path']}: {s['reason']}" for s in self.skipped]
        if self.ignored:
            lines.append(f"  ignored non-image files: {len(self.ignored)}")
        if self.imbalance() >= IMBALANCE_WARN_RATIO:
            lines.append(f"  WARNING: class imbalance {self.imbalance():.1f}:1 in train; "
                         "consider --set class_weight=balanced")
        return "\n".join(lines)


def load(data: str, image_size: int, *, val_split: float = 0.2, seed: int = 0,
         train_per_class: int | None = None, val_per_class: int | None = None,
         manual_dir: str | None = None) -> ImageData:
    """Resolves and reads a ``--data`` value (see the module docstring).

    Raises:
        UserError: The path does not exist, a class is empty or missing from validation, only
            one class is present, or no image is readable.
    """
    limits = dict(seed=seed, train_per_class=train_per_class, val_per_class=val_per_class)
    if data.startswith("tfds:"):
        from tfxfer.data.tfds_source import load_tfds  # optional dependency, imported on demand
        tr, va, names, src = load_tfds(data[5:], image_size, manual_dir)
        return _finish(names, _limit(tr, train_per_class, seed), _limit(va, val_per_class, seed),
                       src)
    if data in BUILTINS:
        path = builtin_path(data)
        if data in ARRAY_BUILTINS:
            tr, va = _read_arrays(data, path)
            return _finish(list(ARRAY_BUILTINS[data][1]), _limit(tr, train_per_class, seed),
                           _limit(va, val_per_class, seed), f"{data} ({path or 'Keras cache'})")
        return load_directory(path, image_size, val_split=val_split, **limits)
    if os.path.isdir(data):
        return load_directory(data, image_size, val_split=val_split, **limits)
    raise UserError("data must be an existing directory, tfds:NAME or a built-in name",
                    valid=list(BUILTINS) + ["<dir>", "tfds:<name>"], got=data,
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
                   train_per_class: int | None = None, val_per_class: int | None = None
                   ) -> ImageData:
    """Reads a ``split/label/image`` or ``label/image`` folder (see :func:`load`)."""
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
    _check_classes(names, train_files, val_files, path)
    rng = np.random.default_rng(seed)
    skipped: list[dict] = []
    splits = []
    for files, limit in ((train_files, train_per_class), (val_files, val_per_class)):
        paths, labels = [], []
        for i, name in enumerate(names):
            chosen = list(files[name])
            if limit is not None and len(chosen) > limit:
                chosen = [chosen[j] for j in sorted(rng.choice(len(chosen), limit, replace=False))]
            paths += chosen
            labels += [i] * len(chosen)
        splits.append(decode_files(paths, np.asarray(labels, np.int32), image_size, skipped))
    return _finish(names, splits[0], splits[1], str(root), skipped, ignored)


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


def _check_classes(names, train_files, val_files, path) -> None:
    if len(names) < 2:
        raise UserError("data needs at least 2 classes (one sub-folder per class)",
                        got=f"{len(names)} class folder(s) in {path}: {names}",
                        fix="put each class's images in its own folder, e.g. data/cats, data/dogs")
    empty = [n for n in names if not train_files[n]]
    if empty:
        raise UserError("every class folder must hold at least one image", got=f"empty: {empty}",
                        fix="add images to those folders or remove them")
    missing = [n for n in names if not val_files.get(n)]
    if missing:
        raise UserError("the validation split must hold every class", got=f"missing: {missing}",
                        fix="add validation images for those classes, or remove the validation "
                            "folder to split off a fraction of train (--set val_split=0.2)")
    extra = sorted(set(val_files) - set(names))
    if extra:
        raise UserError("validation classes must also be training classes", got=extra,
                        fix="make the validation folders match the training folders")


def decode_files(paths: list[str], labels: np.ndarray, size: int, skipped: list[dict]) -> Split:
    """Decodes ``paths`` in threads; unreadable files go to ``skipped`` and leave the split."""
    images = storage.allocate((len(paths), size, size, 3), "uint8")
    ok = np.zeros(len(paths), bool)

    def work(i: int) -> None:
        try:
            images[i] = decode(paths[i], size)
            ok[i] = True
        except UnreadableImage as exc:
            skipped.append({"path": paths[i], "reason": str(exc)})
        except Exception as exc:  # noqa: BLE001 - any decoder failure is one bad file
            skipped.append({"path": paths[i], "reason": f"{type(exc).__name__}: {exc}".strip()})

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        list(pool.map(work, range(len(paths))))
    keep = np.flatnonzero(ok)
    for dst, src in enumerate(keep):  # compact in place (also works for disk memmaps)
        if dst != src:
            images[dst] = images[src]
    skipped.sort(key=lambda s: s["path"])
    return Split(images[: len(keep)], labels[keep])


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


def _finish(names, train: Split, val: Split, source: str, skipped=None, ignored=None) -> ImageData:
    if len(train) == 0:
        raise UserError("no training image could be read", got=source,
                        fix="check the files are images (see the skipped list in the log)")
    result = ImageData(list(names), train, val, source, skipped or [], ignored or [])
    for split_name, split in (("training", train), ("validation", val)):
        present = set(np.unique(split.labels).tolist())
        missing = [n for i, n in enumerate(result.class_names) if i not in present]
        if missing:
            raise UserError(f"the {split_name} split must hold readable images of every class",
                            got=f"missing: {missing}",
                            fix="add readable images for those classes (see the skipped list)")
    return result
