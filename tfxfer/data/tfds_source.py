"""``--data tfds:NAME``: TensorFlow Datasets as a data source (optional extra ``tfxfer[tfds]``).

``NAME`` may carry a version (``tfds:fashion_mnist:3.0.1``). The training split is ``train``; the
validation split is the first of ``validation``, ``val``, ``test`` the dataset has. Datasets whose
images all share one size at or below the model input are kept at that size and resized in the
``tf.data`` pipeline; others are resized once at load time.

Example (needs tensorflow-datasets and the files, e.g. the kit's Fashion-MNIST as manual_dir):
    >>> from tfxfer.data.tfds_source import load_tfds  # doctest: +SKIP
    >>> train, val, names, src = load_tfds("fashion_mnist", 32, manual_dir="...")  # doctest: +SKIP
"""

from __future__ import annotations

import os

import numpy as np

from tfxfer.errors import UserError


def load_tfds(name: str, image_size: int, manual_dir: str | None = None):
    """Returns ``(train Split, val Split, class names, source description)``."""
    from tfxfer.data.sources import Split  # data imports this module lazily; no import cycle at load

    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError("tfds: data needs tensorflow-datasets", got=f"tfds:{name}",
                        fix="pip install 'tfxfer[tfds]'") from None
    import tensorflow as tf

    data_dir = os.environ.get("TFDS_DATA_DIR")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # noqa: BLE001 - tfds raises several types for unknown names
        raise UserError("tfds: name must be a TFDS dataset", got=name,
                        fix=f"see tfds.list_builders() ({type(exc).__name__})") from None
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=config)
    splits = builder.info.splits
    val_name = next((s for s in ("validation", "val", "test") if s in splits), None)
    if "train" not in splits or val_name is None:
        raise UserError("a tfds dataset needs a train split and a validation or test split",
                        got=sorted(splits), fix="use a dataset with both, or a directory")
    label = builder.info.features["label"]
    names = list(label.names)

    def read(split: str) -> Split:
        images, labels = [], []
        for ex in tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True)):
            images.append(ex[0])
            labels.append(ex[1])
        shapes = {im.shape for im in images}
        if len(shapes) == 1 and next(iter(shapes))[0] <= image_size:
            return Split(np.stack(images).astype(np.uint8), np.asarray(labels, np.int32))
        resized = [tf.image.resize(im if im.shape[-1] == 3 else tf.image.grayscale_to_rgb(
            tf.convert_to_tensor(im)), (image_size, image_size), antialias=True) for im in images]
        batch = np.clip(np.stack([r.numpy() for r in resized]) + 0.5, 0, 255).astype(np.uint8)
        return Split(batch, np.asarray(labels, np.int32))

    return read("train"), read(val_name), names, f"tfds:{name} ({builder.data_dir})"
