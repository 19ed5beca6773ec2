"""One worker's share of the data work under multi-worker training.

Worker ``k`` of ``W`` decodes (and later extracts features for and augments) only rows
``k, k + W, k + 2W, ...`` of each split. Every worker holds the same number of rows,
``ceil(n / W)``: a shorter shard repeats its own first rows, so the workers take the same number
of steps and their collectives meet (PyTorch's ``DistributedSampler`` pads the same way).

The training rows stay on their worker. Validation rows are decoded once in the cluster, one
shard per worker, then :meth:`Shard.assemble` all-gathers them, so every worker evaluates the same
split (split across the workers by ``tf.distribute`` as before) and writes the same report.

``gather`` is the all-gather the strategy provides (:func:`tfxfer.train.distribute.shard_of`):
each worker passes its ``(m, ...)`` array and receives the workers' arrays concatenated in
worker order. This module only needs that callable, so the data code does not import the
training code.

Example:
    >>> s = Shard(1, 3)
    >>> s.rows(7).tolist()  # rows 1 and 4, padded with its own first row to ceil(7 / 3) = 3
    [1, 4, 1]
    >>> Shard().rows(3).tolist()
    [0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfxfer import storage

GATHER_BYTES = 64 << 20  # per worker per all-gather call: bounds the memory of one exchange


@dataclass(frozen=True)
class Shard:
    """Worker ``index`` of ``count``; ``gather`` is the strategy's all-gather (see module)."""

    index: int = 0
    count: int = 1
    gather: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def whole(self) -> bool:
        """True for one worker: nothing is split or exchanged."""
        return self.count == 1

    def size(self, n: int) -> int:
        """Rows each worker holds for a split of ``n``: ``ceil(n / count)``."""
        return -(-n // self.count)

    def mine(self, n: int) -> np.ndarray:
        """This worker's row indices of a split of ``n``, unpadded."""
        return np.arange(self.index, n, self.count)

    def rows(self, n: int) -> np.ndarray:
        """This worker's row indices of a split of ``n``, padded to :meth:`size`."""
        mine = self.mine(n)
        if len(mine) == 0:
            mine = np.arange(min(n, 1))  # more workers than rows: borrow row 0
        pad = self.size(n) - len(mine)
        return np.concatenate([mine, mine[np.arange(pad) % len(mine)]]) if pad else mine

    def assemble(self, local: np.ndarray, n: int) -> np.ndarray:
        """The whole split, in its original order, from every worker's :meth:`rows` of it.

        Args:
            local: This worker's rows, ``(size(n), ...)``, in the order of :meth:`rows`.
            n: Rows of the whole split.
        """
        if self.whole:
            return local
        m = self.size(n)
        out = storage.allocate((n,) + local.shape[1:], local.dtype)
        step = max(1, GATHER_BYTES // max(1, local[:1].nbytes))  # the same on every worker
        for start in range(0, m, step):  # the same calls on every worker: m is shared
            stop = min(m, start + step)
            got = np.asarray(self.gather(np.ascontiguousarray(local[start:stop])))
            for k in range(self.count):
                original = k + self.count * np.arange(start, stop)
                keep = original < n
                out[original[keep]] = got[k * (stop - start) : (k + 1) * (stop - start)][keep]
        return out

    def each(self, value: int) -> np.ndarray:
        """An integer of every worker, in worker order (e.g. the rows each one could read)."""
        if self.whole:
            return np.asarray([value], np.int64)
        return np.asarray(self.gather(np.asarray([value], np.int64)))
