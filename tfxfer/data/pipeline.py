"""``tf.data`` pipelines over decoded ``uint8`` arrays: shuffle, gather, resize, mix, prefetch.

Images are decoded and resized once (:mod:`tfxfer.data.sources`); each epoch only shuffles indices,
gathers a batch of ``uint8`` rows, casts it to float32 0-255 (resizing and greyscale->RGB on the
fly for small native images such as Fashion-MNIST) and one-hot encodes the labels. Everything
after the cache runs in parallel with training and is prefetched.

Example:
    >>> import numpy as np
    >>> from tfxfer.data.sources import Split
    >>> from tfxfer.data.pipeline import image_dataset
    >>> split = Split(np.zeros((10, 28, 28, 1), np.uint8), np.arange(10) % 2)
    >>> x, y = next(iter(image_dataset(split, 2, 32, batch_size=4)))
    >>> x.shape, y.shape
    (TensorShape([4, 32, 32, 3]), TensorShape([4, 2]))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfxfer import storage
from tfxfer.data.filling import FillingSplit
from tfxfer.data.passes import per_epoch
from tfxfer.data.tfrecord import Stream
from tfxfer.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
GRAPH_ARRAY_LIMIT = 1 << 30


def dataset_options() -> tf.data.Options:
    """Options of every tfxfer dataset: explicit element sharding, deterministic order."""
    options = tf.data.Options()
    # Index datasets shard cleanly by element; FILE sharding would fail (there are no files).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return options


def index_batches(
    n: int, batch_size: int, *, shuffle: bool, seed: int | None, drop_remainder: bool = False
) -> tf.data.Dataset:
    """Batches of row indices, reshuffled every epoch when ``shuffle``."""
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder)


def gather_rows(array: np.ndarray, idx: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """``array[idx]`` for a numpy array (or disk memmap) inside a ``tf.data`` map."""
    pages = storage.Releaser(array)  # a memmap's touched pages leave the resident set

    def gather(i):
        rows = np.asarray(array[i])
        pages.add(rows.nbytes)
        return rows

    rows = tf.numpy_function(gather, [idx], dtype, stateful=False)
    rows.set_shape((None,) + tuple(array.shape[1:]))
    return rows


def graph_rows(array: np.ndarray) -> Callable[[tf.Tensor], tf.Tensor]:
    """``idx -> array[idx]`` with the array held in the dataset's graph: no Python call.

    What the ``tf.data`` service needs (a ``numpy_function`` cannot leave this process). The
    array is copied into the graph, so it must be in memory and under
    :data:`GRAPH_ARRAY_LIMIT` bytes (a serialised graph is capped at 2 GB).

    Raises:
        UserError: The array is a disk memmap or over the limit.
    """
    if isinstance(array, np.memmap) or array.nbytes > GRAPH_ARRAY_LIMIT:
        raise UserError(
            "data_service needs the decoded images in memory and under "
            f"{GRAPH_ARRAY_LIMIT / 2**30:g} GiB, to ship them inside the dataset "
            "graph",
            got=f"{array.nbytes / 2**30:.2f} GiB"
            f"{' (a disk memmap)' if isinstance(array, np.memmap) else ''}",
            fix="use a smaller image_size, or train without data_service",
        )
    constant = tf.constant(array)
    return lambda idx: tf.gather(constant, idx)


def via_service(rows: tf.data.Dataset, address: str) -> tf.data.Dataset:
    """``rows`` (single decoded rows, not batches) produced by the ``tf.data`` service at
    ``address`` (``grpc://host:port``).

    The dispatcher hands each epoch's source (row indices, or shard files) out to its workers in
    pieces (``distributed_epoch``): every row is produced once per epoch, by whichever worker is
    free, and streams back here, where :func:`image_dataset` batches it. Batching here, not on
    the service's workers, keeps ``ceil(n / batch)`` batches per epoch however many workers
    there are. The graph must not call Python (:func:`graph_rows`); row order then depends on
    the workers' timing.
    """
    return rows.apply(
        tf.data.experimental.service.distribute(
            processing_mode="distributed_epoch", service=address
        )
    )


def _service_rows(split, shuffle: bool, seed: int | None, address: str) -> tf.data.Dataset:
    """Single ``(uint8 row, label)`` pairs made by the service, ``len(split)`` per epoch, in an
    order of their own each epoch when ``shuffle``."""
    n = len(split)
    base = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)
    if isinstance(split, Stream):  # each record once on the service, repeated up to len here

        def make(epoch):
            records = split.records(shuffle, base, exact=False, epoch=epoch)
            return via_service(records, address).repeat().take(n)

        return per_epoch(make, n)
    images, labels = graph_rows(split.images), tf.constant(np.asarray(split.labels, np.int32))

    def make(epoch):
        idx = tf.data.Dataset.range(n)
        if shuffle:  # a permutation of the rows, drawn from (seed, epoch)
            key = tf.stack([tf.constant(base, tf.int64), tf.cast(epoch, tf.int64)])
            idx = idx.map(lambda i: tf.random.experimental.index_shuffle(i, key, n - 1))
        rows = idx.map(lambda i: (images(i), tf.gather(labels, i)), num_parallel_calls=AUTOTUNE)
        return via_service(rows, address)

    return per_epoch(make, n)


def to_model_input(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 batch at any size/channels -> float32 0-255 RGB at ``image_size``."""
    x = tf.cast(images, tf.float32)
    if images.shape[-1] == 1:
        x = tf.image.grayscale_to_rgb(x)
    if images.shape[1] != image_size or images.shape[2] != image_size:
        x = tf.clip_by_value(tf.image.resize(x, (image_size, image_size), antialias=True), 0, 255)
    return x


def image_dataset(
    split,
    num_classes: int,
    image_size: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    augmenter: Callable | None = None,
    mixer: Callable | None = None,
    drop_remainder: bool = False,
    targets: Callable | None = None,
    service: str = "",
) -> tf.data.Dataset:
    """(float32 images 0-255, one-hot labels) batches from a :class:`~tfxfer.data.sources.Split`.

    Args:
        split: Decoded images and labels, or a streamed
            :class:`~tfxfer.data.tfrecord.Stream` (read from its shards each pass).
        num_classes: Width of the one-hot labels.
        image_size: Model input size (rows are resized when they differ).
        batch_size: Global batch size.
        shuffle: Reshuffle each epoch (training) or keep order (evaluation).
        seed: Shuffle seed.
        augmenter: Optional Keras augmentation applied (in training mode) to each batch here,
            when the model trains without its in-graph augmenter.
        mixer: Optional batch-level MixUp/CutMix from :func:`tfxfer.data.augment.batch_mixer`.
        drop_remainder: Drop the last partial batch (needed by some strategies and by MixUp).
        targets: Maps a batch of integer labels to the model's targets (e.g. a dict of one-hot
            labels per task, :func:`tfxfer.methods.tasks.targets_fn`); default: one-hot labels.
        service: ``grpc://host:port`` of a ``tf.data`` service that produces the decoded rows
            (:func:`via_service`; arrays are then gathered in the graph, :func:`graph_rows`);
            empty: this process produces them (gathering with numpy, which also reads disk
            memmaps).
    """

    def encode(x, y):
        x = to_model_input(x, image_size)
        return x, (targets(y) if targets is not None else tf.one_hot(y, num_classes))

    if service:
        ds = _service_rows(split, shuffle, seed, service)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(encode, num_parallel_calls=AUTOTUNE)
    elif isinstance(split, Stream):  # shards read every epoch, decoded in the graph
        ds = split.records(shuffle, seed).batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(encode, num_parallel_calls=AUTOTUNE)
    elif isinstance(split, FillingSplit) and shuffle:  # streamed while decoding, or not: its
        # order depends on the seed alone
        ds = split.batches(batch_size, seed, drop_remainder).map(
            encode, num_parallel_calls=AUTOTUNE
        )
    elif isinstance(split, FillingSplit) and not split.complete and not drop_remainder:
        ds = split.in_order(batch_size).map(encode, num_parallel_calls=AUTOTUNE)  # evaluation
    else:
        images, labels = split.images, np.asarray(split.labels, np.int32)
        img_dtype = tf.as_dtype(images.dtype)
        gather = lambda i: gather_rows(images, i, img_dtype)
        ds = index_batches(
            len(labels), batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder
        )
        ds = ds.map(
            lambda idx: encode(gather(idx), tf.gather(labels, idx)), num_parallel_calls=AUTOTUNE
        )
    if augmenter is not None:
        # under a mixed policy the layers compute in (b)float16; the model takes float32 0-255
        ds = ds.map(
            lambda x, y: (tf.cast(augmenter(x, training=True), tf.float32), y),
            num_parallel_calls=AUTOTUNE,
        )
    if mixer is not None:
        ds = ds.map(mixer, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE).with_options(dataset_options())
