"""A folder's first epoch streams while its cache fills: training starts after one batch's decode.

A folder of at least :data:`STREAM_MIN_FILES` training files (``TFXFER_STREAM_MIN_FILES``;
0 streams every folder) is not decoded before training. :func:`stream_splits` returns its
training and validation splits as :class:`FillingSplit` objects at once, and decoding threads
fill their caches (:func:`tfxfer.storage.allocate`: memory, or a disk memmap whose written pages
are released as they go) in the background: the training rows first, in the order of the first
epoch (a permutation drawn from the run's seed), then the validation rows in file order.

- **No half-written row is ever read.** A row is marked ready only after its pixels are in the
  cache, and every read waits for the rows it takes.
- **The first epoch** (:meth:`FillingSplit.batches`) takes the rows in the order they are
  decoded, so its first batch waits for its own 64 images and no more. Its order is a full
  permutation of the files, drawn from the seed, as every later epoch's is (a fresh permutation
  per epoch): streaming does not weaken the shuffle.
- **Evaluation in file order** (:meth:`FillingSplit.in_order`: the validation batches made
  before training) also waits batch by batch. **Every other reader** (cached features,
  ``split.images``) waits for the whole split (:meth:`FillingSplit.finish`) and then sees an
  ordinary :class:`~tfxfer.data.splits.Split`.
- **An unreadable file** leaves its first-epoch batch one row short; once the split is complete
  it is out of the split and listed with the run's skipped files, as when decoding up front.
- **Resume.** The cache lives as long as the process. A run killed in its first epoch has no
  checkpoint of it, so on resume the first epoch streams again and the cache is rebuilt.

Example:
    >>> import numpy as np, os, tempfile
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> paths = [os.path.join(root, f"{i}.png") for i in range(6)]
    >>> for i, p in enumerate(paths):
    ...     Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(p)
    >>> train, val = stream_splits((paths[:4], [0, 1, 0, 1]), (paths[4:], [0, 1]), 8, 0, [])
    >>> x, y = next(iter(train.batches(4, seed=0)))
    >>> sorted(x.numpy()[:, 0, 0, 0].tolist()), len(val.finish())
    ([0, 1, 2, 3], 2)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque

import numpy as np
import tensorflow as tf

from tfxfer import progress, storage
from tfxfer.data.images import try_decode
from tfxfer.data.passes import per_epoch
from tfxfer.data.splits import Split, require_every_class
from tfxfer.errors import UserError

log = logging.getLogger(__name__)

STREAM_MIN_FILES = 4096
# Both splits of a folder add to one skipped list from their decoding threads; appends and the
# sort at each split's end go under this lock (a sort fails if the list changes under it).
_SKIPPED = threading.Lock()


def stream_min_files() -> int:
    """Training files from which a folder's first epoch streams (``TFXFER_STREAM_MIN_FILES``)."""
    value = os.environ.get("TFXFER_STREAM_MIN_FILES", "")
    try:
        return int(value) if value else STREAM_MIN_FILES
    except ValueError:
        raise UserError(
            "TFXFER_STREAM_MIN_FILES must be a whole number of files (0: every folder streams)",
            got=value,
            fix=f"unset it (default {STREAM_MIN_FILES}) or set e.g. TFXFER_STREAM_MIN_FILES=0",
        ) from None


class FillingSplit:
    """A split whose rows are being decoded in the background; see the module docstring.

    It answers ``len()``, ``labels``, ``images`` and ``rows()`` as a
    :class:`~tfxfer.data.splits.Split` does. Until the split is complete, ``len()`` and
    ``labels`` count every file (the readable ones are known at the end) and ``images`` waits.
    """

    def __init__(
        self, paths, labels, size: int, skipped: list[dict], name: str, classes=(), order=None
    ):
        self.paths, self.name, self.skipped = list(paths), name, skipped
        self.classes = list(classes)  # class names, for the error of a class left empty
        self._labels = np.asarray(labels, np.int32)
        n = len(self.paths)
        self.array = storage.allocate((n, size, size, 3), "uint8")
        self.ready = np.zeros(n, bool)
        self.ok = np.zeros(n, bool)
        # the decode order (the training split's is its first epoch) and each row's place in it
        self.order = np.arange(n) if order is None else np.asarray(order)
        self._place = np.empty(n, np.int64)
        self._place[self.order] = np.arange(n)
        self._left = n
        self._cond = threading.Condition()
        self._wanted: set[int] = set()  # rows a reader waits for: only they wake it
        self._final: Split | None = None
        self._pages = storage.Releaser(self.array)

    # ---- the Split interface -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labels(self) -> np.ndarray:
        if self._final is None and not self.complete:
            return self._labels
        return self.finish().labels

    @property
    def images(self) -> np.ndarray:
        return self.finish().images

    def rows(self, idx) -> np.ndarray:
        return self.finish().rows(idx)

    @property
    def complete(self) -> bool:
        return self._left == 0

    # ---- filling -----------------------------------------------------------------------------
    def fill(self, i: int) -> None:
        """Decodes row ``i`` into the cache, then marks it ready (a decoding thread's work)."""
        pixels, reason = try_decode(self.paths[i], self.array.shape[1])
        if reason is None:
            self.array[i] = pixels
            self.ok[i] = True
        else:
            with _SKIPPED:
                self.skipped.append({"path": self.paths[i], "reason": reason})
        self._pages.add(self.array[0].nbytes)
        with self._cond:
            self.ready[i] = True
            self._left -= 1
            if self._left == 0 or i in self._wanted:
                self._wanted.discard(i)
                self._cond.notify_all()

    def wait(self, idx=None) -> None:
        """Blocks until rows ``idx`` (default: all) are decoded.

        A reader is woken by the row it waits for that comes last in the decode order, not by
        every row decoded (a wake-up per row per reader would cost a third of the decoding's
        throughput in Python and its lock); it then checks the others and waits again if need
        be. The one-second timeout is a safety net, not the mechanism.
        """
        with self._cond:
            if idx is None:
                self._cond.wait_for(lambda: self._left == 0)
                return
            while True:
                missing = idx[~self.ready[idx]]
                if not len(missing):
                    return
                self._wanted.add(int(missing[np.argmax(self._place[missing])]))
                self._cond.wait(timeout=1.0)

    def finish(self) -> Split:
        """The complete split, unreadable files left out (waits for the decoding).

        Raises:
            UserError: A class has no readable image in it.
        """
        if self._final is not None:
            return self._final
        self.wait()
        with self._cond:
            if self._final is None:
                self._final = self._complete()
        return self._final

    def _complete(self) -> Split:
        with _SKIPPED:
            self.skipped.sort(key=lambda s: s["path"])
        keep = np.flatnonzero(self.ok)
        wanted = np.unique(self._labels)  # every class among the split's files
        require_every_class(self.name, self._labels[keep], wanted, self.classes)
        if len(keep) == len(self.ok):
            return Split(self.array, self._labels)
        log.warning(
            "%s split: %d unreadable file(s) left out (listed with the skipped files)",
            self.name,
            len(self.ok) - len(keep),
        )
        images = storage.allocate((len(keep),) + self.array.shape[1:], "uint8")
        written = storage.Releaser(images)
        for start in range(0, len(keep), 1024):  # a copy: readers of the cache stay valid
            chunk = self.array[keep[start : start + 1024]]
            images[start : start + len(chunk)] = chunk
            written.add(chunk.nbytes)
            self._pages.add(chunk.nbytes)
        return Split(images, self._labels[keep])

    # ---- reading -----------------------------------------------------------------------------
    def take(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The decoded rows among ``idx`` and their labels, once they are all decoded."""
        self.wait(idx)
        idx = idx[self.ok[idx]]
        rows = np.asarray(self.array[idx])
        self._pages.add(rows.nbytes)
        return rows, self._labels[idx]

    def epoch_order(self, epoch: int, seed: int) -> np.ndarray:
        """The rows of one pass: the decode order first, then a fresh permutation of the
        readable rows per pass, drawn from ``(seed, epoch)``."""
        if epoch == 0:
            return self.order
        self.finish()
        readable = np.flatnonzero(self.ok)
        return readable[np.random.default_rng([seed, epoch]).permutation(len(readable))]

    def _gather(self, idx: tf.Tensor):
        # A read waiting for rows not yet decoded holds a thread of tf.data's pool. Reads run
        # one at a time (a copy of decoded rows is quick), so that waits for later rows never
        # take the threads the rest of the pipeline (augmentation) needs to finish a batch
        # whose rows are there: with parallel reads, the first step waited for many batches.
        x, y = tf.numpy_function(self.take, [idx], (tf.uint8, tf.int32), stateful=False)
        x.set_shape((None,) + self.array.shape[1:])
        y.set_shape([None])
        return x, y

    def batches(
        self, batch_size: int, seed: int | None = None, drop_remainder: bool = False
    ) -> tf.data.Dataset:
        """``(uint8 images, int32 labels)`` batches, one pass per epoch (see the module
        docstring): the first in the decode order, each batch waiting for its rows only. With
        ``drop_remainder``, a first-epoch batch left short by an unreadable file is dropped
        too, so that every batch is full."""
        base = int(np.random.randint(2**31 - 1)) if seed is None else int(seed)

        def one_pass(epoch):
            order = tf.numpy_function(lambda k: self.epoch_order(int(k), base), [epoch], tf.int64)
            order.set_shape([None])
            ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder)
            ds = ds.map(self._gather)  # one read at a time: see _gather
            return ds.filter(lambda x, y: tf.shape(y)[0] == batch_size) if drop_remainder else ds

        return per_epoch(one_pass)  # a pass's length is known at its end (unreadable files)

    def in_order(self, batch_size: int) -> tf.data.Dataset:
        """The readable rows in file order, each batch waiting for its own rows: what the
        complete split gives, without waiting for it when the dataset is made. A batch with
        an unreadable file in it is one row short."""
        ds = tf.data.Dataset.range(len(self.paths)).batch(batch_size)
        return ds.map(self._gather)  # one read at a time: see _gather


class Filler:
    """Decoding threads that fill :class:`FillingSplit` rows in a queued order."""

    def __init__(self, work: list[tuple[FillingSplit, np.ndarray]], threads: int):
        self._queue = deque((split, int(i)) for split, order in work for i in order)
        self._lock = threading.Lock()
        self._bar = progress.Progress("decoding", len(self._queue), "images")
        self._threads = [
            threading.Thread(target=self._work, name=f"tfxfer-decode-{k}", daemon=True)
            for k in range(threads)
        ]
        self._running = threads
        for t in self._threads:
            t.start()

    def _work(self) -> None:
        while True:
            try:
                split, i = self._queue.popleft()  # atomic: no lock needed
            except IndexError:
                with self._lock:
                    self._running -= 1
                    if self._running == 0:
                        self._bar.done()
                return
            split.fill(i)
            self._bar.add(1)


def stream_splits(train, val, size: int, seed: int, skipped: list[dict], classes=()):
    """``(train, val)`` :class:`FillingSplit` objects for two ``(paths, labels)`` lists, being
    decoded at ``size`` px in background threads: the training files first, in a permutation
    drawn from ``seed`` (the first epoch's order), then the validation files."""
    first_epoch = np.random.default_rng([seed, 0]).permutation(len(train[0]))
    train_split = FillingSplit(*train, size, skipped, "training", classes, first_epoch)
    val_split = FillingSplit(*val, size, skipped, "validation", classes)
    log.info(
        "the first epoch streams: %d training files are decoded while it trains (from %d files "
        "on; TFXFER_STREAM_MIN_FILES)",
        len(train_split.paths),
        stream_min_files(),
    )
    Filler(
        [(train_split, train_split.order), (val_split, val_split.order)],
        threads=min(8, (os.cpu_count() or 1) + 1),
    )
    return train_split, val_split


def check(data) -> None:
    """Raises a streamed split's own error (a class left without a readable image) in this
    thread, where it reads as one line; inside ``fit`` it surfaces as a TensorFlow error."""
    for split in (data.train, data.val):
        if isinstance(split, FillingSplit) and split.complete:
            split.finish()


@contextlib.contextmanager
def surfaced(data):
    """Around a ``fit`` on ``data``: a TensorFlow error that a streamed split's own error caused
    is raised as that error (:func:`check`), one line; any other error as it is."""
    try:
        yield
    except tf.errors.OpError:
        check(data)
        raise
