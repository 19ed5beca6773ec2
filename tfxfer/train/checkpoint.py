"""Checkpoints and resumption: a killed run re-run with the same command continues where it was.

Layout of ``<output>/checkpoints/``:

- ``last.weights.h5``: the full model after the last completed, finite epoch (kept on NaN).
- ``phase<i>.backup/``: ``keras.callbacks.BackupAndRestore`` state of the running phase (model and
  optimizer variables in ``epoch<n>.weights.h5``, and the epoch), written so that a kill never
  leaves half of it (:class:`_FiniteBackup`), removed when the phase completes. ``<i>`` is the
  phase's index, or ``<index>.<step>`` for a step of a gradual phase
  (:func:`tfxfer.models.freeze.stages`).
- ``l2sp_anchor.npz``: the L2-SP starting point (:mod:`tfxfer.methods.regularize`), read on resume.
- ``phase<i>.epochs.json``: per-epoch metrics of phase ``i`` so far, by epoch number.
- ``phase<i>.weights.h5`` + ``phase<i>.done.json``: the model after phase ``i`` completed, and
  its record; a re-run loads these instead of training the phase again.

Every file is written to a temporary name and renamed into place, so a SIGKILL at any moment leaves
either the previous or the new version, never half of one. Stale temporary files from a killed run
are removed at the next start (the directory's lock, :mod:`tfxfer.train.rundir`, makes sure no live
run owns them).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> state = RunState(Path(tempfile.mkdtemp()))
    >>> state.completed(0) is None
    True
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import keras

from tfxfer.atomic import remove_stale, write_json, write_with


def all_finite(logs: dict | None) -> bool:
    """True when every metric of a Keras ``logs`` dict is a finite number."""
    return all(math.isfinite(float(v)) for v in (logs or {}).values())


class _FiniteBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that never backs up a non-finite epoch, and whose state survives SIGKILL.

    Keras writes its weights file and then its epoch counter in place, so a kill during the
    first leaves a half-written HDF5 file (the resumed run fails to open it) and a kill between
    the two leaves weights and counter from different epochs. Here each epoch's weights go to
    their own file, ``epoch<n>.weights.h5``, written to a temporary name and renamed; then the
    metadata naming that file is replaced the same way; only then are older weight files
    deleted. A kill at any point leaves a metadata file naming complete weights of its epoch.
    """

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(logs):
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale(folder)
        weights = folder / f"epoch{self._current_epoch}.weights.h5"
        write_with(weights, self.model.save_weights, suffix=".weights.h5")
        write_json(
            self._training_metadata_path,
            {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": weights.name},
        )
        for old in folder.glob("epoch*.weights.h5"):
            if old != weights:
                old.unlink(missing_ok=True)

    def _load_model(self):
        meta = Path(self._training_metadata_path)
        if not meta.is_file():
            return
        state = json.loads(meta.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its slots are saved
        # a backup written by Keras itself (tfxfer before this change) names no weights file
        self.model.load_weights(
            str(Path(self.backup_dir) / state.get("weights", "latest.weights.h5"))
        )
        self.model._initial_epoch = state["epoch"]  # what Keras's own _load_model sets


class RunState:
    """Checkpoint files of one run directory (``out=None``: a non-chief worker, no files)."""

    def __init__(self, out: Path | None):
        self.dir = None if out is None else out / "checkpoints"
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            remove_stale(out)
            remove_stale(self.dir)

    def completed(self, index: int | str) -> dict | None:
        """The record of phase ``index`` if a previous run completed it, else None."""
        if self.dir is None or not (self.dir / f"phase{index}.done.json").is_file():
            return None
        return json.loads((self.dir / f"phase{index}.done.json").read_text())

    def restore_completed(self, model: keras.Model, index: int | str) -> None:
        model.load_weights(str(self.dir / f"phase{index}.weights.h5"))

    def mark_completed(self, model: keras.Model, index: int | str, record: dict) -> None:
        if self.dir is None:
            return
        self._save_weights(model, self.dir / f"phase{index}.weights.h5")
        write_json(self.dir / f"phase{index}.done.json", record)
        shutil.rmtree(self.dir / f"phase{index}.backup", ignore_errors=True)

    def backup(self, index: int | str) -> keras.callbacks.Callback | None:
        """Keras's BackupAndRestore for phase ``index`` (model + optimizer + epoch)."""
        if self.dir is None:
            return None
        return _FiniteBackup(str(self.dir / f"phase{index}.backup"), delete_checkpoint=False)

    def resume_epoch(self, index: int | str) -> int:
        """Epochs of phase ``index`` its backup holds: where a re-run continues (0: none)."""
        meta = (
            None
            if self.dir is None
            else (self.dir / f"phase{index}.backup" / "training_metadata.json")
        )
        return int(json.loads(meta.read_text())["epoch"]) if meta and meta.is_file() else 0

    def epochs(self, index: int | str) -> dict[str, dict]:
        path = None if self.dir is None else self.dir / f"phase{index}.epochs.json"
        return json.loads(path.read_text()) if path is not None and path.is_file() else {}

    def log_epoch(self, model: keras.Model, index: int | str, epoch: int, logs: dict) -> None:
        """Records a completed finite epoch and checkpoints the full model."""
        if self.dir is None:
            return
        self._save_weights(model, self.dir / "last.weights.h5")
        record = self.epochs(index)
        record[str(epoch + 1)] = {k: float(v) for k, v in logs.items()}
        write_json(self.dir / f"phase{index}.epochs.json", record)

    @staticmethod
    def _save_weights(model: keras.Model, path: Path) -> None:
        write_with(path, model.save_weights, suffix=".weights.h5")


def history_from_epochs(epochs: dict[str, dict]) -> dict[str, list[float]]:
    """Keras-style history (metric -> list) from the per-epoch records, in epoch order."""
    history: dict[str, list[float]] = {}
    for _, logs in sorted(epochs.items(), key=lambda kv: int(kv[0])):
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
    return history
