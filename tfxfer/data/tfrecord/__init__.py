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
    >>> import tensorflow as tf
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

from tfxfer.data.tfrecord.read import (
    ENCODED,
    LABEL,
    SHUFFLE_BUFFER,
    VAL_PREFIXES,
    Stream,
    read,
    scan_labels,
)
from tfxfer.data.tfrecord.write import GRAPH_FORMATS, main, write

__all__ = [
    "ENCODED",
    "GRAPH_FORMATS",
    "LABEL",
    "SHUFFLE_BUFFER",
    "VAL_PREFIXES",
    "Stream",
    "main",
    "read",
    "scan_labels",
    "write",
]
