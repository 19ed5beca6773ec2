"""Built-in datasets stored as arrays rather than image folders: Fashion-MNIST and MNIST (the
original IDX ``.gz`` files) and USPS (``usps.h5``, 16x16 grey digits in [0, 1]).

Each reader returns ``(train, val)`` :class:`~tfxfer.data.sources.Split` pairs of ``uint8``
images at their native size, ``(N, H, W, 1)``; the ``tf.data`` pipeline resizes per batch and
replicates grey to RGB (:func:`tfxfer.data.pipeline.to_model_input`). Digits are named
``"0"`` to ``"9"``, the folder names of the MNIST-M built-in, so the three digit domains share
one label set.

Example:
    >>> DIGITS[:3]
    ('0', '1', '2')
"""

from __future__ import annotations

import gzip
import os

import numpy as np

DIGITS = tuple(str(d) for d in range(10))
_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def read_idx(path: str) -> np.ndarray:
    """One IDX file (gzip-compressed) as a uint8 array of its declared shape."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _splits(x_tr, y_tr, x_va, y_va):
    from tfxfer.data.splits import Split

    return (
        Split(np.asarray(x_tr)[..., None], np.asarray(y_tr).astype(np.int32)),
        Split(np.asarray(x_va)[..., None], np.asarray(y_va).astype(np.int32)),
    )


def read_idx_folder(path: str):
    """The four IDX files of an MNIST-style folder (train = train, val = t10k)."""
    return _splits(*(read_idx(os.path.join(path, name)) for name in _IDX_FILES))


def read_keras(name: str):
    """``keras.datasets.<name>.load_data()``: the download path when no mirror is set."""
    import keras

    (x_tr, y_tr), (x_va, y_va) = getattr(keras.datasets, name).load_data()
    return _splits(x_tr, y_tr, x_va, y_va)


def read_usps(path: str):
    """``usps.h5``: rows of 256 floats in [0, 1], ink high, as 16x16 uint8 images."""
    import h5py  # a Keras 3 dependency

    with h5py.File(path, "r") as f:
        parts = [(f[s]["data"][:], f[s]["target"][:]) for s in ("train", "test")]
    images = [
        np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).reshape(-1, 16, 16) for x, _ in parts
    ]
    return _splits(images[0], parts[0][1], images[1], parts[1][1])
