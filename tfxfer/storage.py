"""Where large arrays live: in memory when they fit a budget, else memory-mapped on disk.

Decoded images and cached backbone features both go through :func:`allocate`, so a dataset of a
few hundred thousand images never needs that much RAM.

- ``TFXFER_MEMORY_BUDGET_GB`` (default 2): the largest array kept in memory.
- ``TFXFER_CACHE_DIR`` (default ``~/.cache/tfxfer``): where larger ones are mapped. The files are
  unlinked as soon as they are mapped, so they vanish when the process ends, even on SIGKILL.

Example:
    >>> from tfxfer import storage
    >>> a = storage.allocate((4, 8, 8, 3), "uint8")
    >>> a.shape, type(a).__name__
    ((4, 8, 8, 3), 'ndarray')
"""

from __future__ import annotations

import os
import tempfile

import numpy as np


def memory_budget_bytes() -> int:
    return int(float(os.environ.get("TFXFER_MEMORY_BUDGET_GB", "2")) * 2**30)


def cache_dir() -> str:
    path = os.environ.get("TFXFER_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache",
                                                             "tfxfer")
    os.makedirs(path, exist_ok=True)
    return path


def allocate(shape: tuple[int, ...], dtype: str | np.dtype, budget: int | None = None) -> np.ndarray:
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
