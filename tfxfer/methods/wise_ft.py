"""WiSE-FT (Wortsman et al., CVPR 2022): ship a weighted average of the model before and after
fine-tuning.

``wise_ft = alpha`` makes the shipped model ``(1 - alpha) * probe + alpha * fine-tuned``, where
*probe* is the model after the head-only phase that precedes the first phase training the
backbone (the linear probe of LP-FT; :func:`tfxfer.config.wise_ft_probe`) and *fine-tuned* the
model after the last phase. The paper reports gains under distribution shift at no training
cost.

**Every variable is interpolated, BatchNorm's moving mean and variance included.** Where the
fine-tuning keeps BatchNorm in inference mode (``train_bn=False``, most recipes' default), the
statistics are the same at both ends, so this changes nothing there. Where BatchNorm trains,
the statistics move with their weights, to the same ``alpha``: neither end's statistics would
match the interpolated weights better. ``alpha = 0`` and ``alpha = 1`` give back the two ends
exactly, bit for bit: the weights are ``(1 - alpha) * probe + alpha * fine_tuned``, where a zero
factor contributes an exact zero.

Example:
    >>> import numpy as np
    >>> [float(interpolate(np.float32(2.0), np.float32(6.0), a)) for a in (0.0, 0.25, 1.0)]
    [2.0, 3.0, 6.0]
"""

from __future__ import annotations

import numpy as np


def interpolate(probe, fine_tuned, alpha: float):
    """``(1 - alpha) * probe + alpha * fine_tuned`` in the arrays' own dtype."""
    probe, fine_tuned = np.asarray(probe), np.asarray(fine_tuned)
    a = np.asarray(alpha, probe.dtype)
    return ((1 - a) * probe + a * fine_tuned).astype(probe.dtype)


def snapshot(model) -> list[np.ndarray]:
    """Every variable of ``model``, trainable or not, as arrays (the probe end)."""
    return [np.array(v.numpy()) for v in model.weights]


def apply(model, probe: list[np.ndarray], alpha: float) -> None:
    """Sets every variable of ``model`` (now the fine-tuned end) to its interpolation with
    ``probe`` (a :func:`snapshot` of the same model)."""
    if len(probe) != len(model.weights):
        raise ValueError(f"probe has {len(probe)} variables, the model {len(model.weights)}")
    for variable, start in zip(model.weights, probe):
        if np.issubdtype(start.dtype, np.floating):  # counters and seeds stay the fine-tuned's
            variable.assign(interpolate(start, variable.numpy(), alpha))
