"""TensorBoard logs of a run: ``logs/`` in its output directory (``tensorboard --logdir RUN``).

- ``logs/<phase>/train`` and ``logs/<phase>/validation``: every epoch's losses and metrics, as
  the fit logs them (the adaptation and text trainers' extras included: target accuracy, the
  domain classifier's, λ), and the learning rate, written by Keras's own ``TensorBoard``
  callback (:class:`PhaseBoard`). Epochs are numbered across the run, so the phases follow one
  another on one axis; a resumed phase rewrites the epochs it repeats.
- ``logs/evaluation``: after training, every number of ``metrics.json`` (nested keys joined by
  ``/``, e.g. ``adapt/target_accuracy`` or ``zero_shot/eszsl/gzsl/h``) at the run's last epoch,
  and each confusion matrix as an image (:func:`write_evaluation`).

Only the chief worker writes. The summaries need the ``tensorboard`` package (a dependency of
the ``cpu`` and ``tf`` extras); without it a run says so once and writes no logs.

Example:
    >>> flat({"val_accuracy": 0.9, "adapt": {"lambda": 1.0}, "class_names": ["a"]})
    {'val_accuracy': 0.9, 'adapt/lambda': 1.0}
"""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger("tfxfer")
LOGS = "logs"
_warned: list[bool] = []


def available() -> bool:
    """Whether the summaries can be written (the ``tensorboard`` package is installed)."""
    if importlib.util.find_spec("tensorboard") is not None:
        return True
    if not _warned:
        log.info("no TensorBoard logs: the tensorboard package is not installed")
        _warned.append(True)
    return False


class PhaseBoard(keras.callbacks.TensorBoard):
    """Keras's ``TensorBoard`` callback for one phase, epochs numbered across the run.

    Args:
        out: The run's output directory.
        label: The phase's name in logs and history (one sub-directory per phase).
        first_epoch: Epochs the run trained before this phase (the x-axis offset).
    """

    def __init__(self, out: str | Path, label: str, first_epoch: int):
        super().__init__(
            log_dir=str(Path(out) / LOGS / _folder(label)),
            write_graph=False,
            update_freq="epoch",
            profile_batch=0,
        )
        self.first_epoch = int(first_epoch)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + self.first_epoch, logs)


def callback(out, label: str, first_epoch: int) -> keras.callbacks.Callback | None:
    """A :class:`PhaseBoard`, or None where nothing is written (no output directory: a worker
    that is not the chief; no ``tensorboard`` package). Put it last among the callbacks, so
    that the logs other callbacks add to an epoch are written too."""
    if out is None or not available():
        return None
    return PhaseBoard(out, label, first_epoch)


def flat(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a metrics dict, nested keys joined by ``/`` (lists and strings left out)."""
    found = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(flat(value, name + "/"))
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            found[name] = float(value)
    return found


def write_evaluation(out, metrics: dict, step: int, images: dict[str, str | Path]) -> None:
    """``logs/evaluation``: the numbers of ``metrics`` at ``step``, and the PNG files of
    ``images`` (e.g. ``{"confusion_matrix": path}``) as image summaries."""
    if out is None or not available():
        return
    writer = tf.summary.create_file_writer(str(Path(out) / LOGS / "evaluation"))
    with writer.as_default():
        for name, value in flat(metrics).items():
            tf.summary.scalar(name, value, step=step)
        for name, path in images.items():
            png = tf.io.decode_png(tf.io.read_file(str(path)), channels=3)
            tf.summary.image(name, png[None], step=step)
    writer.close()


def _folder(label: str) -> str:
    return re.sub(r"[^\w.\-\[\]]+", "_", label)
