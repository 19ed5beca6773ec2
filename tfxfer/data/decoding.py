"""Decoding a folder's files into the cache: in threads, with progress, one worker's share.

:func:`decode_files` decodes every file of a split; :func:`decode_shard` only this worker's
files under multi-worker training (:mod:`tfxfer.data.shard`). Unreadable files are skipped and
listed; the decoded rows go to :func:`tfxfer.storage.allocate` (memory or a disk memmap, whose
pages are released as they are written).

Example:
    >>> import numpy as np, os, tempfile
    >>> from PIL import Image
    >>> path = os.path.join(tempfile.mkdtemp(), "x.png")
    >>> Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    >>> skipped = []
    >>> decode_files([path, path + ".missing"], np.array([0, 1]), 8, skipped).images.shape
    (1, 8, 8, 3)
    >>> len(skipped)
    1
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfxfer import progress, storage
from tfxfer.data.images import try_decode
from tfxfer.data.shard import Shard
from tfxfer.data.splits import Split
from tfxfer.errors import UserError

log = logging.getLogger(__name__)


def decode_rows(
    paths: list[str], size: int, skipped: list[dict], capacity: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes ``paths`` in threads into ``(images, ok)`` of ``max(capacity, len(paths))``
    rows; a row whose file is unreadable stays in place (``ok`` False) and the file goes to
    ``skipped``."""
    rows = max(capacity, len(paths))
    images = storage.allocate((rows, size, size, 3), "uint8")
    ok = np.zeros(rows, bool)
    bar = progress.Progress("decoding", len(paths), "images")
    pages = storage.Releaser(images)

    def work(i: int) -> None:
        pixels, reason = try_decode(paths[i], size)
        if reason is None:
            images[i] = pixels
            ok[i] = True
        else:
            skipped.append({"path": paths[i], "reason": reason})
        bar.add(1)
        pages.add(images[0].nbytes)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        list(pool.map(work, range(len(paths))))
    bar.done()
    skipped.sort(key=lambda s: s["path"])
    return images, ok


def _compact(images: np.ndarray, labels: np.ndarray, ok: np.ndarray) -> Split:
    keep = np.flatnonzero(ok)
    for dst, src in enumerate(keep):  # in place (also works for disk memmaps)
        if dst != src:
            images[dst] = images[src]
    return Split(images[: len(keep)], labels[keep])


def decode_files(paths: list[str], labels: np.ndarray, size: int, skipped: list[dict]) -> Split:
    """Decodes ``paths`` in threads; unreadable files go to ``skipped`` and leave the split."""
    images, ok = decode_rows(paths, size, skipped)
    return _compact(images, labels, ok)


def decode_shard(
    paths: list[str], labels: np.ndarray, size: int, skipped: list[dict], shard: Shard, train: bool
) -> tuple[Split, np.ndarray]:
    """Decodes only this worker's files of a split (see :mod:`tfxfer.data.shard`).

    Returns:
        ``(split, labels)``. For ``train``, the split holds this worker's readable rows,
        repeated up to the largest count of any worker; for validation, the whole split, decoded
        in shards and all-gathered. ``labels`` are those of every readable file of the split.
    """
    if shard.whole:
        split = decode_files(paths, labels, size, skipped)
        return split, split.labels
    mine, m = shard.mine(len(paths)), shard.size(len(paths))
    mine_skipped: list[dict] = []
    images, ok = decode_rows([paths[i] for i in mine], size, mine_skipped, capacity=m)
    whole_ok = shard.assemble(ok, len(paths))  # the padded tail (ok False) is dropped there
    # every worker lists every unreadable file of the split; the reason is known where it failed
    reasons = {s["path"]: s["reason"] for s in mine_skipped}
    skipped += [
        {
            "path": paths[i],
            "reason": reasons.get(
                paths[i], "unreadable (decoded by another worker, whose log says why)"
            ),
        }
        for i in np.flatnonzero(~whole_ok)
    ]
    skipped.sort(key=lambda s: s["path"])
    log.info(
        "worker %d of %d decoded %d of the %d %s images",
        shard.index,
        shard.count,
        len(mine),
        len(paths),
        "training" if train else "validation",
    )
    if not train:
        return _compact(shard.assemble(images, len(paths)), labels, whole_ok), labels[whole_ok]
    mine_labels = np.zeros(m, labels.dtype)
    mine_labels[: len(mine)] = labels[mine]
    local = _compact(images, mine_labels, ok)
    readable = shard.each(len(local))  # every worker learns every count: all stop, or none
    if readable.min() == 0:
        raise UserError(
            "every worker needs a readable training image of its own",
            got=f"workers with none: {np.flatnonzero(readable == 0).tolist()}",
            fix="check the files (see the skipped list), or use fewer workers",
        )
    most = int(readable.max())  # every worker takes as many steps as the others
    extra = np.arange(most - len(local)) % len(local)
    images[len(local) : most] = images[extra]  # most <= m: the array has room
    return Split(images[:most], np.concatenate([local.labels, local.labels[extra]])), labels[
        whole_ok
    ]
