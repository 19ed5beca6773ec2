"""A run's output directory: one run at a time, never two runs' files side by side, resumable.

:func:`prepare` is called once, by the chief, before any data is read:

- **Lock.** It takes an exclusive ``flock`` on ``<output>/.tfxfer.lock`` and writes its process id,
  host and start time there. A second run into the same directory while the first is alive stops
  with a one-line error naming that process. The kernel releases the lock when its process ends,
  however it ends, so a run killed with SIGKILL never leaves a lock that blocks the next one. The
  lock is released by :func:`release` (the end of :func:`tfxfer.deploy.export.save_run`, or a
  failed run). Within one process (a notebook) the lock is re-entrant.
- **Which run may use it.** A directory whose ``config.json`` holds a *different* run (a key
  that changes what is computed) is refused, unless ``overwrite`` (start afresh) or ``resume``
  (see below). The same config may always be re-run into it: that is how a crashed run resumes.
- **Overwrite.** With ``overwrite=True`` the old run's checkpoints and artefacts (SavedModel,
  ``.keras``, metrics, history, report, plots) are deleted *before* the new ``config.json`` is
  written, so at no moment do the files in the directory come from two different runs.
- **Resume with changed settings** (``resume=True``, ``--resume``): after a NaN stop, or to
  change a rate mid-run, completed phases are kept and the running phase continues from its last
  good checkpoint. Only phases that have not completed may change, and only in the keys of
  :data:`RESUMABLE_PHASE_KEYS`; anything else is refused with the list of what differs.

Example:
    >>> import tempfile
    >>> from tfxfer.config import Config
    >>> out = prepare(Config(output=tempfile.mkdtemp()))
    >>> sorted(p.name for p in out.iterdir())
    ['.tfxfer.lock', 'config.json']
    >>> release(out)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from tfxfer.atomic import writable_dir, write_json
from tfxfer.config import Config
from tfxfer.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not protected from each other
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".tfxfer.lock"
# Keys that do not change what a run computes, so they may differ on a re-run into the same dir.
# Keys that do not change what trains (what is exported or reported after training included).
RUN_NEUTRAL_KEYS = (
    "overwrite",
    "resume",
    "verbose",
    "output",
    "strategy",
    "top_k",
    "tta",
    "export",
)
# Keys of a not-yet-completed phase that ``resume=True`` lets change.
RESUMABLE_PHASE_KEYS = (
    "lr",
    "lr_decay",
    "lr_range",
    "schedule",
    "weight_decay",
    "momentum",
    "early_stopping",
)
# What a finished run writes (tfxfer.deploy.export.save_run); overwrite deletes it before anything
# new is written.
ARTEFACTS = (
    "saved_model",
    "model.keras",
    "history.json",
    "metrics.json",
    "data_report.json",
    "curves.png",
    "confusion_matrix*.png",
    "model_*.tflite",
    "labels.txt",
    "checkpoints",
    "plan.json",
    "lr_find.png",
    "compare",
    "generator",
    "generator.keras",
    "generator.json",
    "samples.png",
    "training_images.npy",
    "logs",
)
KEPT_ON_RESUME = ("checkpoints", "generator", "logs")  # expensive to redo, or resumable
UNTRAINED_CHECKPOINTS = ("l2sp_anchor.npz",)  # written before the first step: nothing trained

_held: dict[str, int] = {}  # lock path -> open file descriptor, for this process
_fresh: set[str] = set()  # output directories whose config.json this process wrote first


def prepare(cfg: Config) -> Path:
    """Locks ``cfg.output``, checks it may hold this run, clears it if asked, writes the config."""
    out = writable_dir(cfg.output)
    fresh = not (out / "config.json").exists()
    acquire(out)
    if fresh:
        _fresh.add(str(out.resolve()))
    try:
        previous = _read_json(out / "config.json")
        if previous is None and (out / "config.json").exists():
            previous = {}  # unreadable: it cannot be shown to be the same run
        previous = _normalised(previous)
        new = cfg.to_dict()
        changed = (
            []
            if previous is None
            else sorted(k for k in new if k not in RUN_NEUTRAL_KEYS and previous.get(k) != new[k])
        )
        if changed and not cfg.overwrite:
            if not cfg.resume:
                raise UserError(
                    "output directory already holds a different run",
                    got=f"{out} (differs in: {', '.join(changed[:5])})",
                    fix="pass --overwrite to replace it, --resume to continue it "
                    "with changed phase rates, or choose another --output",
                )
            _check_resumable(cfg, previous, changed, out / "checkpoints")
        if cfg.overwrite or changed:
            clear(out, keep_checkpoints=not cfg.overwrite)
        write_json(out / "config.json", new)
    except BaseException:
        release(out)
        raise
    return out


@contextlib.contextmanager
def claim(cfg: Config, chief: bool = True) -> Iterator[Path | None]:
    """``with claim(cfg) as out:`` the output directory of a run, prepared and locked
    (:func:`prepare`; ``None`` on a non-chief worker, which writes nothing).

    A run that succeeds keeps the lock until its artefacts are written (:func:`release`, at the
    end of :func:`tfxfer.deploy.export.save_run`). A run that fails releases it, and when it
    failed before anything trained (a data error, missing weights) it also takes back what
    :func:`prepare` wrote (:func:`abandon`), so that the corrected command is not refused as a
    different run.
    """
    out = prepare(cfg) if chief else None
    try:
        yield out
    except BaseException:
        abandon(out)
        raise


def trained(out: Path) -> bool:
    """Whether ``out`` holds anything a run trained: checkpoints beyond the L2-SP anchor (which
    is only the starting weights), a generator, or artefacts."""
    ckpt = out / "checkpoints"
    if ckpt.is_dir() and any(p.name not in UNTRAINED_CHECKPOINTS for p in ckpt.iterdir()):
        return True
    return any(any(out.glob(pattern)) for pattern in ARTEFACTS if pattern != "checkpoints")


def abandon(out: Path | str | None) -> None:
    """Releases ``out`` after a failed run; if this process created its ``config.json`` and
    nothing trained, removes that, the empty checkpoints, the lock file and the directory if
    it is then empty: nothing is left that would refuse the corrected command."""
    if out is None:
        return
    out = Path(out)
    fresh = str(out.resolve()) in _fresh
    release(out)
    if not fresh or trained(out):
        return
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    for name in ("config.json", LOCK_NAME):
        (out / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        out.rmdir()  # only if empty: anything else the user keeps there stays
    log.info("the run failed before training anything: %s holds nothing of it", out)


def clear(out: Path, keep_checkpoints: bool = False) -> None:
    """Deletes a previous run's artefacts (and checkpoints unless ``keep_checkpoints``)."""
    for pattern in ARTEFACTS:
        if keep_checkpoints and pattern in KEPT_ON_RESUME:
            continue
        for path in out.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _check_resumable(cfg: Config, previous: dict, changed: list[str], ckpt: Path) -> None:
    from tfxfer.models import backbones  # its registry needs no Keras
    from tfxfer.models.freeze import stages  # heavy (Keras): only when a resume changes something

    old_phases = previous.get("phases") or []
    new_phases = cfg.to_dict()["phases"]
    problems = [k for k in changed if k != "phases"]
    if len(old_phases) != len(new_phases):
        problems.append("the number of phases")
    else:
        for i, (old, new) in enumerate(zip(old_phases, new_phases)):
            diff = sorted(k for k in new if old.get(k) != new[k])
            if not diff:
                continue
            n = backbones.num_blocks(cfg.backbone)
            keys = [s.key for s in stages(cfg.phases[i], i, cfg.freeze_blocks, n)]
            if all((ckpt / f"phase{k}.done.json").is_file() for k in keys):
                problems += [f"phases.{i}.{k} (phase {i} is completed)" for k in diff]
            else:
                problems += [f"phases.{i}.{k}" for k in diff if k not in RESUMABLE_PHASE_KEYS]
    if problems:
        raise UserError(
            "--resume keeps completed phases and lets only the phases still to run "
            f"change {', '.join(RESUMABLE_PHASE_KEYS)}",
            got=f"changes to {', '.join(problems[:5])}",
            fix="undo those changes, or start afresh with --overwrite",
        )
    log.info("resuming %s with changed phase settings; completed phases are kept", cfg.output)


def acquire(out: Path) -> None:
    """Takes the directory's lock, or raises a :class:`UserError` naming the process holding it."""
    path = out / LOCK_NAME
    key = str(path.resolve())
    if key in _held or fcntl is None:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_json(path) or {}
        os.close(fd)
        raise UserError(
            "one run at a time may write an output directory, and another is running there",
            got=f"{out} (locked by process {holder.get('pid', '?')} "
            f"on {holder.get('host', '?')}, started {holder.get('started', '?')})",
            fix="wait for that run to end, or choose another --output",
        ) from None
    record = json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    ).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, record, 0)
    _held[key] = fd


def release(out: Path | str | None) -> None:
    """Releases the lock this process holds on ``out`` (no-op when it holds none)."""
    if out is None:
        return
    _fresh.discard(str(Path(out).resolve()))
    fd = _held.pop(str((Path(out) / LOCK_NAME).resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock; the file itself stays


def _normalised(previous: dict | None) -> dict | None:
    """A saved config in today's form (``augment = "light"`` written before ``augment`` became a
    table, no ``generative`` table), so that an older run of the same config still resumes."""
    if not previous:
        return previous
    try:
        return Config.from_dict(previous).to_dict()
    except UserError:
        return previous


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
