"""Images without labels: a folder of image files, or the training split of any data source with
its labels dropped. Domain adaptation reads its ``--target`` here and distillation its
``--unlabelled`` pool.

A folder that holds image files at its top level is read as one pool of images, recursively,
whatever its sub-folders are called. Anything else is read as ``--data`` reads it
(:func:`tfxfer.data.sources.load`), and only its training split's images are kept: its labels
and its validation split never reach the caller.

Example:
    >>> from tfxfer.data import unlabelled
    >>> unlabelled.is_folder("no/such/folder")
    False
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfxfer.data import sources
from tfxfer.data.images import IMAGE_EXTENSIONS
from tfxfer.errors import UserError


def is_folder(path: str, role: str = "target") -> bool:
    """True for a directory holding image files at its top level (see the module docstring).

    Args:
        path: The folder.
        role: What the folder is to the caller (``target``, ``--unlabelled``), for the errors.

    Raises:
        UserError: The folder also holds split folders (``train``, ``val``, ...): read as one
            pool, their validation images would train.
    """
    root = Path(path)
    if not (
        root.is_dir()
        and any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in root.iterdir())
    ):
        return False
    splits = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name.lower() in sources.TRAIN_DIRS + sources.VAL_DIRS
    )
    if splits:
        raise UserError(
            f"a {role} folder holds either images (unlabelled) or split folders, not both",
            got=f"{path}: images beside {splits}",
            fix="move the loose images into a folder of their own, or out",
        )
    return True


def load_folder(path: str, image_size: int, role: str = "target") -> tuple[np.ndarray, list]:
    """Every readable image under ``path`` (recursively), decoded at ``image_size``, and the
    files skipped as unreadable."""
    files = sorted(
        str(p)
        for p in Path(path).rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    skipped: list[dict] = []
    split = sources.decode_files(files, np.zeros(len(files), np.int32), image_size, skipped)
    if not len(split):
        raise UserError(
            f"the {role} folder must hold at least one readable image",
            got=path,
            fix="check the files are images (see the skipped list)",
        )
    return split.images, skipped


def images(
    spec: str, image_size: int, seed: int = 0, val_split: float = 0.2, role: str = "target"
) -> tuple[np.ndarray, list]:
    """The images of ``spec`` without labels (see the module docstring), and the skipped files."""
    if is_folder(spec, role):
        return load_folder(spec, image_size, role)
    return sources.load(spec, image_size, val_split=val_split, seed=seed).train.images, []
