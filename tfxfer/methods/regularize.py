"""Conservative training: L2-SP (Li, Grandvalet & Davoine, 2018) and its plain-L2 baseline.

L2-SP keeps a fine-tuned backbone close to where it started instead of close to zero:

    Omega(w) = alpha/2 * ||w_backbone - w0||^2 + beta/2 * ||w_head||^2

``w0`` (the *anchor*) is the backbone's weights when training starts: its pretrained weights.
``regularization="l2"`` is the paper's baseline, the same penalty with ``w0 = 0``. The head term
covers the kernels of the new Dense layers (biases are not penalised).

The penalty is attached as Keras variable regularizers, so it counts only the weights a phase
actually trains (a frozen block adds nothing) and is part of the reported ``loss`` and
``val_loss``. Under ``tf.distribute`` Keras's TensorFlow trainer scales it per replica like the
data loss, so a step is the same on any number of replicas
(``tests/integration/test_distribute.py``).

The anchor is written to ``checkpoints/l2sp_anchor.npz`` when it is captured, and a resumed run
reads it back from there instead of capturing it again.

Example:
    >>> import numpy as np
    >>> from tfxfer.models import model
    >>> from tfxfer.methods import regularize
    >>> tm = model.build("MobileNet025", 2, 32, weights=None)
    >>> anchors = regularize.attach(tm, "l2sp", alpha=0.1, beta=0.01)
    >>> tm.backbone.trainable = True
    >>> float(regularize.penalty(tm)["backbone"])
    0.0
"""

from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np
from keras import ops

from tfxfer.atomic import write_with
from tfxfer.errors import UserError

ANCHOR_FILE = "l2sp_anchor.npz"


@keras.saving.register_keras_serializable(package="tfxfer")
class DistanceL2(keras.regularizers.Regularizer):
    """``strength/2 * ||w - anchor||^2`` (``anchor=None``: distance to 0)."""

    def __init__(self, strength: float, anchor: keras.Variable | None = None):
        self.strength = float(strength)
        self.anchor = anchor

    def __call__(self, w):
        d = w if self.anchor is None else w - ops.cast(self.anchor, w.dtype)
        return 0.5 * self.strength * ops.sum(ops.square(d))

    def get_config(self):  # the anchor is run state (a checkpoint file), not configuration
        return {"strength": self.strength}


def _backbone_variables(backbone: keras.Model) -> list[keras.Variable]:
    """Every variable of the backbone that can be trained (BatchNorm's gamma/beta included)."""
    flags = [layer.trainable for layer in backbone.layers]
    was = backbone.trainable
    backbone.trainable = True  # does not reach layers frozen one by one (BatchNorm): set each
    for layer in backbone.layers:
        layer.trainable = True
    variables = list(backbone.trainable_weights)
    backbone.trainable = was
    for layer, flag in zip(backbone.layers, flags):
        layer.trainable = flag
    return variables


def _head_kernels(tm) -> list[keras.Variable]:
    return [
        layer.kernel
        for head in tm.heads.values()
        for layer in head.layers
        if isinstance(layer, keras.layers.Dense)
    ]


def load_anchor(path: Path, variables: list[keras.Variable]) -> list[np.ndarray]:
    """Reads a saved anchor, checking it matches ``variables`` by path and shape."""
    with np.load(path) as saved:
        names = list(saved["paths"])
        if names != [v.path for v in variables]:
            raise UserError(
                "the saved L2-SP anchor must belong to this model",
                got=str(path),
                fix="re-run with --overwrite to start the run afresh",
            )
        return [saved[f"w{i}"] for i in range(len(names))]


def save_anchor(path: Path, variables: list[keras.Variable], values: list[np.ndarray]) -> None:
    """Writes the anchor atomically (paths plus one array per variable)."""
    buf = io.BytesIO()
    np.savez(
        buf,
        paths=np.array([v.path for v in variables]),
        **{f"w{i}": value for i, value in enumerate(values)},
    )
    write_with(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()), suffix=".npz")


def attach(
    tm, kind: str, alpha: float, beta: float, checkpoint_dir: Path | None = None
) -> list[keras.Variable]:
    """Sets the regularizers of ``kind`` (``none``, ``l2``, ``l2sp``) on the model's variables.

    Call it in the distribution strategy's scope, before training. For ``l2sp`` the anchor is
    read from ``checkpoint_dir`` when a previous run saved one there, else captured from the
    current backbone weights and saved there.

    Returns:
        The anchor variables (empty unless ``kind == "l2sp"``).
    """
    variables = _backbone_variables(tm.backbone)
    kernels = _head_kernels(tm)
    for v in variables + kernels:
        v.regularizer = None
    anchor = REGULARIZERS[kind]
    if anchor is None:
        return []
    anchors = anchor(variables, checkpoint_dir)
    for i, v in enumerate(variables):
        v.regularizer = DistanceL2(alpha, anchors[i] if anchors else None)
    for v in kernels:
        v.regularizer = DistanceL2(beta)
    return anchors


def _start_anchor(variables: list[keras.Variable], checkpoint_dir: Path | None):
    """L2-SP's ``w0``: the weights when training started, saved with (and read back from) the
    run's checkpoints so that a resumed run keeps pulling towards the same point."""
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / ANCHOR_FILE
    if path is not None and path.is_file():
        values = load_anchor(path, variables)
    else:
        values = [np.array(v.numpy()) for v in variables]
        if path is not None:
            save_anchor(path, variables, values)
    return [
        keras.Variable(value, trainable=False, name="l2sp_anchor", dtype=v.dtype)
        for v, value in zip(variables, values)
    ]


# Name -> where the backbone's pull goes: the config's ``regularization.method`` choices
# (tfxfer.config.REGULARIZATIONS, checked against these by tests/unit/test_layout.py). None: no
# penalty; an anchor function: towards what it returns, or towards 0 when that is empty.
REGULARIZERS = {"none": None, "l2": lambda variables, checkpoint_dir: [], "l2sp": _start_anchor}


def attach_settings(tm, settings, checkpoint_dir: Path | None = None) -> list[keras.Variable]:
    """:func:`attach` with a config's :class:`~tfxfer.config.Regularization` section (its
    ``method``, ``alpha`` and ``beta``): what every trainer calls."""
    return attach(tm, settings.method, settings.alpha, settings.beta, checkpoint_dir)


def penalty(tm) -> dict[str, float]:
    """The current penalty split into its ``backbone`` and ``head`` terms (trainable weights)."""
    parts = {"backbone": 0.0, "head": 0.0}
    head_ids = {id(v) for v in _head_kernels(tm)}
    for v in tm.model.trainable_weights:
        if v.regularizer is not None:
            parts["head" if id(v) in head_ids else "backbone"] += float(v.regularizer(v))
    return parts
