"""``--data tfds:NAME``: TensorFlow Datasets as a data source (optional extra ``tfxfer[tfds]``).

``NAME`` may carry a version (``tfds:fashion_mnist:3.0.1``). The training split is ``train``; the
validation split is the first of ``validation``, ``val``, ``test`` the dataset has. Datasets whose
image feature has one fixed size at or below the model input are kept at that size and resized
in the ``tf.data`` pipeline; others are resized once at load time. Either way the examples
stream, in batches, into an array from :func:`tfxfer.storage.allocate` (in memory under the
budget, a disk memmap above it): no list of every example is ever held.

Example (needs tensorflow-datasets and the files, e.g. the kit's Fashion-MNIST as manual_dir):
    >>> from tfxfer.data.tfds_source import load_tfds  # doctest: +SKIP
    >>> train, val, names, src = load_tfds("fashion_mnist", 32, manual_dir="...")  # doctest: +SKIP
"""

from __future__ import annotations

import os

import numpy as np

from tfxfer import progress, storage
from tfxfer.errors import UserError

READ_BATCH = 256


def load_tfds(name: str, image_size: int, manual_dir: str | None = None):
    """Returns ``(train Split, val Split, class names, source description)``."""
    from tfxfer.data.splits import Split

    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError(
            "tfds: data needs tensorflow-datasets",
            got=f"tfds:{name}",
            fix="pip install 'tfxfer[tfds]'",
        ) from None
    import tensorflow as tf

    data_dir = os.environ.get("TFDS_DATA_DIR")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:
        raise UserError(
            "tfds: name must be a TFDS dataset",
            got=name,
            fix=f"see tfds.list_builders() ({type(exc).__name__})",
        ) from None
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=config)
    splits = builder.info.splits
    val_name = next((s for s in ("validation", "val", "test") if s in splits), None)
    if "train" not in splits or val_name is None:
        raise UserError(
            "a tfds dataset needs a train split and a validation or test split",
            got=sorted(splits),
            fix="use a dataset with both, or a directory",
        )
    label = builder.info.features["label"]
    names = list(label.names)

    image_key = (builder.info.supervised_keys or ("image",))[0]
    shape = tuple(builder.info.features[image_key].shape)
    native = None not in shape and max(shape[:2]) <= image_size
    stored = shape if native else (image_size, image_size, 3)

    def to_stored(image, label):  # one example, or a batch of one fixed size
        if native:
            return image, label
        x = tf.cast(image, tf.float32)
        x = tf.image.grayscale_to_rgb(x) if shape[-1] == 1 else x
        x = tf.image.resize(x, (image_size, image_size), antialias=True)
        return tf.cast(tf.clip_by_value(x + 0.5, 0, 255), tf.uint8), label

    def read(split: str) -> Split:
        n = builder.info.splits[split].num_examples
        images = storage.allocate((n,) + stored, "uint8")
        labels = np.empty(n, np.int32)
        ds = builder.as_dataset(split=split, as_supervised=True)
        if None in shape:  # sizes vary: each image is resized before it can be batched
            ds = ds.map(to_stored, num_parallel_calls=tf.data.AUTOTUNE).batch(READ_BATCH)
        else:  # one op per batch (Fashion-MNIST's 70,000 images to 16 px: 2.6 s, not 10.3 s)
            ds = ds.batch(READ_BATCH).map(to_stored, num_parallel_calls=tf.data.AUTOTUNE)
        start, pages = 0, storage.Releaser(images)
        bar = progress.Progress(f"reading {name}:{split}", n, "images")
        for x, y in tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE)):
            images[start : start + len(y)] = x
            labels[start : start + len(y)] = y
            start += len(y)
            bar.add(len(y))
            pages.add(x.nbytes)
        bar.done()
        return Split(images[:start], labels[:start])

    return read("train"), read(val_name), names, f"tfds:{name} ({builder.data_dir})"
