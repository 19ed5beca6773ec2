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

import dataclasses

import numpy as np

from tfxfer.data.filling import FillingSplit
from tfxfer.data.splits import Split
from tfxfer.errors import UserError


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


# ---- wise_ft="auto": alpha chosen on a held-out slice of the training split ------------------

GRID = tuple(round(0.1 * i, 1) for i in range(11))  # the alphas tried, 0 to 1


def hold_out(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held)``: sorted indices of the training rows kept for training and of those held
    out to choose alpha, ``round(fraction * n)`` of each class's ``n`` (at least 1, and at least
    1 left to train), drawn with ``seed``.

    Raises:
        UserError: A class has fewer than two training images.

    Example:
        >>> kept, held = hold_out(np.array([0] * 10 + [1] * 5), 0.2, seed=0)
        >>> len(kept), len(held), np.bincount(np.array([0] * 10 + [1] * 5)[held]).tolist()
        (12, 3, [2, 1])
    """
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2:
            raise UserError(
                "wise_ft=auto holds out training images of every class to choose alpha, and "
                "a class has fewer than two",
                got=f"class index {int(c)}: {len(rows)} image(s)",
                fix="set alpha yourself (e.g. --set wise_ft=0.5), or add images",
            )
        n = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held.append(rng.choice(rows, n, replace=False))
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


def choose(scores: dict[float, tuple[float, float]]) -> float:
    """The alpha of the best ``(accuracy, loss)`` score: the highest accuracy, then the lowest
    loss, then the largest alpha (the fine-tuned side).

    Example:
        >>> choose({0.0: (0.8, 0.5), 0.5: (0.9, 0.4), 1.0: (0.9, 0.3)})
        1.0
    """
    return max(scores, key=lambda a: (scores[a][0], -scores[a][1], a))


def choose_on(model, probe: list, fine_tuned: list, labels, predict) -> tuple[float, dict]:
    """Tries every alpha of :data:`GRID` on held-out images: sets ``model`` to each
    interpolation, scores it (``predict(model)``: its logits for the images) by accuracy and
    mean cross-entropy against their ``labels``, and leaves ``model`` at the fine-tuned end.
    Returns the chosen alpha (:func:`choose`) and ``{alpha: [accuracy, loss]}``."""
    scores = {}
    for alpha in GRID:
        apply(model, fine_tuned, 0.0)  # back to the fine-tuned end: all of `fine_tuned`
        apply(model, probe, alpha)
        logits = np.asarray(predict(model), np.float64)
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        accuracy = float((logits.argmax(-1) == labels).mean())
        loss = float(-log_probs[np.arange(len(labels)), labels].mean())
        scores[alpha] = (accuracy, loss)
    apply(model, fine_tuned, 0.0)
    return choose(scores), {str(a): [round(s[0], 4), round(s[1], 4)] for a, s in scores.items()}


def split_data(data, fraction: float, seed: int):
    """``(data, held)``: the run's data with :func:`hold_out`'s rows taken out of its training
    split, and those rows (a ``Split``), which choose alpha and train nothing.

    Raises:
        UserError: The training split is streamed from shards (its rows are not held here).
    """
    if isinstance(data.train, FillingSplit):  # its rows are needed now: wait for the decoding
        data = dataclasses.replace(data, train=data.train.finish())
    if not isinstance(data.train, Split):
        raise UserError(
            "wise_ft=auto holds training images out to choose alpha, and this training split "
            "is streamed from shards",
            got=type(data.train).__name__,
            fix="set alpha yourself (e.g. --set wise_ft=0.5)",
        )
    kept, held = hold_out(np.asarray(data.train.labels), fraction, seed)
    train = Split(data.train.images[kept], data.train.labels[kept])
    return dataclasses.replace(data, train=train), Split(
        data.train.images[held], data.train.labels[held]
    )
