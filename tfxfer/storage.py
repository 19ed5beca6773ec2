"""Where large arrays live: in memory when they fit a budget, else memory-mapped on disk.

Decoded images and cached backbone features both go through :func:`allocate`, so a dataset of a
few hundred thousand images never needs that much RAM.

- ``TFXFER_MEMORY_BUDGET_GB`` (default 2): the largest array kept in memory.
- ``TFXFER_CACHE_DIR`` (default ``~/.cache/tfxfer``): where larger ones are mapped. The files are
  unlinked as soon as they are mapped, so they vanish when the process ends, even on SIGKILL.

Pages of a mapped file that the process has touched count in its resident set until the kernel
needs the memory back. :func:`release` hands them back at once (the data stays in the file and
the page cache), so writing or reading a 10 GB memmap does not show as 10 GB of RSS; the
decoder and the input pipeline call it as they go.

Example:
    >>> from tfxfer import storage
    >>> a = storage.allocate((4, 8, 8, 3), "uint8")
    >>> a.shape, type(a).__name__
    ((4, 8, 8, 3), 'ndarray')
"""

from __future__ import annotations

import mmap
import os
import tempfile

import numpy as np


def memory_budget_bytes() -> int:
    return int(float(os.environ.get("TFXFER_MEMORY_BUDGET_GB", "2")) * 2**30)


def cache_dir() -> str:
    path = os.environ.get("TFXFER_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfxfer"
    )
    os.makedirs(path, exist_ok=True)
    return path


def allocate(
    shape: tuple[int, ...], dtype: str | np.dtype, budget: int | None = None
) -> np.ndarray:
    """An uninitialised array of ``shape``: in RAM under ``budget`` bytes, else a disk memmap."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= (memory_budget_bytes() if budget is None else budget):
        return np.empty(shape, dtype)
    fd, path = tempfile.mkstemp(prefix="array-", suffix=".mmap", dir=cache_dir())
    os.close(fd)
    try:
        return np.memmap(path, dtype=dtype, mode="w+", shape=shape)
    finally:
        os.unlink(path)  # the mapping keeps the data alive; the name goes now


def release(array: np.ndarray) -> None:
    """Drops a disk memmap's pages from this process's resident set (a no-op in memory)."""
    pages = getattr(array, "_mmap", None)
    if (
        isinstance(array, np.memmap)
        and pages is not None
        and hasattr(mmap, "MADV_DONTNEED")
        and array.mode != "c"
    ):  # a private (copy-on-write) map would lose its writes
        pages.madvise(mmap.MADV_DONTNEED)


class Releaser:
    """Calls :func:`release` on ``array`` after every ``every`` bytes counted by :meth:`add`."""

    def __init__(self, array: np.ndarray, every: int = 256 << 20):
        self.array, self.every, self.count = array, every, 0
        self.active = isinstance(array, np.memmap)

    def add(self, nbytes: int) -> None:
        if self.active:
            self.count += nbytes
            if self.count >= self.every:
                self.count = 0
                release(self.array)
