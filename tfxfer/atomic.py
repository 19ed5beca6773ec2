"""Atomic file writes: write to a hidden temporary name in the same folder, then rename; and
the check, before any work, that a path can be written at all.

A rename within one filesystem is atomic, so a reader (or a run killed with SIGKILL) only ever
sees the old complete file or the new complete file.

Example:
    >>> import json, os, tempfile
    >>> from tfxfer.atomic import write_json
    >>> p = os.path.join(tempfile.mkdtemp(), "x.json"); write_json(p, {"a": 1})
    >>> json.load(open(p))
    {'a': 1}
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tfxfer.errors import UserError


def temp_name(path: Path, suffix: str = "") -> Path:
    """Hidden temporary sibling of ``path`` (removed as stale by the next run if left behind)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


def write_json(path: str | Path, obj: Any) -> None:
    """Writes JSON to a temporary name, then renames it over ``path``."""
    path = Path(path)
    tmp = temp_name(path)
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def write_with(path: str | Path, writer: Callable[[str], None], suffix: str = "") -> None:
    """Calls ``writer(tmp_path)`` and renames the result over ``path`` (file or directory).

    ``suffix`` keeps an extension a writer insists on (``.keras``, ``.weights.h5``, ``.png``).
    """
    path = Path(path)
    tmp = temp_name(path, suffix)
    writer(str(tmp))
    if path.is_dir():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def remove_stale(folder: Path) -> None:
    """Deletes temporary files and folders left in ``folder`` by a killed run."""
    for p in folder.iterdir():
        if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def writable_dir(path: str | Path, what: str = "output", keep: bool = True) -> Path:
    """Creates ``path`` (and its parents) and checks a file can be written in it; a path that
    cannot be (``/proc/x``, an existing file, no permission) is one :class:`UserError` line.
    ``keep=False`` removes again the folders it created: a check that leaves no trace."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{path} is a file, not a directory")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".tfxfer-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        if not keep:
            for folder in created:  # deepest first
                folder.rmdir()
    except OSError as exc:
        raise UserError(
            f"the {what} directory must be one tfxfer can create and write in",
            got=f"{path} ({exc.strerror or exc})",
            fix=f"choose another --{what} (a folder you own, e.g. runs/NAME)",
        ) from None
    return path


def writable_file(path: str | Path, what: str = "output") -> Path:
    """Checks that the file ``path`` can be written (its folder created if needed), before the
    work whose result it will hold; one :class:`UserError` line otherwise."""
    path = Path(path)
    if path.is_dir():
        raise UserError(
            f"the {what} file must be a file path, and this is a directory",
            got=str(path),
            fix=f"pass --{what} {path / 'predictions.csv'}",
        )
    writable_dir(path.parent if str(path.parent) else ".", what)
    return path
