"""Learning-rate finder: an exponential sweep on the phase's own trainable scope, then a rule.

The learning-rate range test (Smith 2017, "Cyclical learning rates"; fastai's ``lr_find``):
train for ``steps`` batches while the rate grows exponentially from ``LR_MIN`` to ``LR_MAX``,
record the loss of every batch, and stop early once the loss has clearly diverged. It runs on
the model exactly as the phase will train it: the same trainable scope (frozen blocks, BatchNorm
mode), optimiser, per-block rate multipliers, data and augmentation (cached features for a
head-only phase). Every weight, non-trainable ones (BatchNorm statistics) included, is restored
afterwards, so the phase then starts from where it would have started. A ``gradual`` phase is
swept once, on its first step's scope (block 5), and every later step uses that rate.

**The pick rule.** The per-batch losses are smoothed by a *centred* moving average (half-width
``n // 25`` batches, at least 2), and the rate picked is one tenth of the rate at the smoothed
loss's minimum (the ``lr_min`` rule of fastai): at the minimum the loss has stopped falling, and
a tenth of it is the largest rate still well inside the region where it falls. A centred window
adds no lag; fastai's exponential average (``beta = 0.98``) lags by about 49 batches, which
over a 200-step sweep of 7 decades moves the minimum about 1.7 decades to the right (measured
on hymenoptera's head: 0.25 instead of 0.01). That causal average is kept for the early stop:
the sweep ends once it exceeds ``DIVERGED`` times its minimum, or a loss is not finite.

Example:
    >>> import numpy as np
    >>> lrs = np.geomspace(1e-6, 1.0, 100)
    >>> losses = 2.0 - np.log10(lrs / 1e-6) * 0.2          # falls steadily ...
    >>> losses[80:] = losses[79] + np.arange(20) * 0.5       # ... then diverges after 6.1e-2
    >>> f"{pick(lrs, losses)[0]:.1e}"
    '4.0e-03'
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import keras
import numpy as np

from tfxfer.atomic import write_json
from tfxfer.errors import UserError
from tfxfer.train import optim, prebuild

log = logging.getLogger("tfxfer")

LR_MIN, LR_MAX = 1e-7, 1.0
SMOOTHING = 0.98
DIVERGED = 4.0
MIN_STEPS = 10  # before this many batches the smoothed loss is not trusted to have diverged


class ExponentialRamp(keras.optimizers.schedules.LearningRateSchedule):
    """``lr_min * (lr_max / lr_min) ** (step / (steps - 1))``: the sweep's rate."""

    def __init__(self, lr_min: float, lr_max: float, steps: int):
        self.lr_min, self.lr_max, self.steps = float(lr_min), float(lr_max), int(steps)

    def __call__(self, step):
        t = keras.ops.cast(step, "float32") / max(1, self.steps - 1)
        return self.lr_min * (self.lr_max / self.lr_min) ** keras.ops.minimum(t, 1.0)

    def get_config(self):
        return {"lr_min": self.lr_min, "lr_max": self.lr_max, "steps": self.steps}

    def rate(self, step: int) -> float:
        return self.lr_min * (self.lr_max / self.lr_min) ** min(1.0, step / max(1, self.steps - 1))


def smooth(losses) -> np.ndarray:
    """Bias-corrected exponential moving average of ``losses`` (``beta = SMOOTHING``): the
    causal average that decides the early stop."""
    out, avg = [], 0.0
    for i, value in enumerate(losses):
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        out.append(avg / (1 - SMOOTHING ** (i + 1)))
    return np.asarray(out)


def centred(losses) -> np.ndarray:
    """Centred moving average of half-width ``max(2, n // 25)`` (shorter at the ends)."""
    losses = np.asarray(losses, np.float64)
    h = max(2, len(losses) // 25)
    sums = np.concatenate([[0.0], np.cumsum(losses)])
    lo = np.maximum(np.arange(len(losses)) - h, 0)
    hi = np.minimum(np.arange(len(losses)) + h + 1, len(losses))
    return (sums[hi] - sums[lo]) / (hi - lo)


def pick(lrs, losses) -> tuple[float, int]:
    """``(rate, index of the smoothed minimum)``: a tenth of the rate at the minimum of the
    centred average over the finite part of the sweep."""
    losses = np.asarray(losses, np.float64)
    finite = np.isfinite(losses)
    n = int(np.argmin(finite)) if not finite.all() else len(losses)
    if n < 2:
        raise ValueError("the sweep needs at least two finite losses")
    best = int(np.argmin(centred(losses[:n])))
    return float(lrs[best]) / 10.0, best


class _Recorder(keras.callbacks.Callback):
    """Per-batch losses and the early stop on divergence.

    Keras logs the running mean of the loss weighted by batch size, so a batch's own loss is
    recovered from the loss metric's running total and count: ``(total_b - total_{b-1}) /
    (count_b - count_{b-1})``, right for a partial batch too.
    """

    def __init__(self, ramp: ExponentialRamp):
        super().__init__()
        self.ramp, self.lrs, self.losses = ramp, [], []
        self._seen = (0.0, 0.0)  # the loss metric's (total, count) after the previous batch

    def on_train_begin(self, logs=None):
        self._seen = (0.0, 0.0)

    def _loss_metric(self) -> keras.metrics.Metric:
        for metric in self.model.metrics:
            if metric.name == "loss" and hasattr(metric, "total"):
                return metric
        raise RuntimeError(
            "the learning-rate finder needs the model's loss metric (a Mean "
            "named 'loss', as Keras's own train_step keeps)"
        )

    def on_train_batch_end(self, batch, logs=None):
        metric = self._loss_metric()
        total, count = float(metric.total.numpy()), float(metric.count.numpy())
        loss = (
            (total - self._seen[0]) / (count - self._seen[1]) if count > self._seen[1] else math.nan
        )
        self._seen = (total, count)
        self.lrs.append(self.ramp.rate(batch))
        self.losses.append(loss)
        smoothed = smooth(self.losses)
        if not math.isfinite(loss) or (
            batch >= MIN_STEPS and smoothed[-1] > DIVERGED * smoothed.min()
        ):
            self.model.stop_training = True


def sweep(target: keras.Model, train_ds, make_optimizer, compile_kwargs: dict, steps: int) -> dict:
    """Runs the sweep on ``target`` and restores its weights; returns the sweep's record.

    Args:
        target: The model the phase will fit, its trainable scope already set.
        train_ds: The phase's training batches (repeated here as needed).
        make_optimizer: ``schedule -> optimizer``: the phase's optimiser at a given rate.
        compile_kwargs: Loss and metrics, as the phase compiles them.
        steps: Length of the sweep in batches.

    Returns:
        ``{"lr": picked rate, "lrs": [...], "losses": [...], "smoothed": [...], "steps": n}``.
    """
    saved = [np.array(w) for w in target.get_weights()]
    ramp = ExponentialRamp(LR_MIN, LR_MAX, steps)
    target.compile(optimizer=make_optimizer(ramp), **compile_kwargs)
    recorder = _Recorder(ramp)
    try:
        prebuild.before_fit(target, train_ds)
        target.fit(
            train_ds.repeat(), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[recorder]
        )
    finally:
        target.set_weights(saved)
    finite = int(np.sum(np.isfinite(recorder.losses[:2])))
    if finite < 2:
        raise UserError(
            "the learning-rate finder needs finite losses at its smallest rates",
            got=f"loss {recorder.losses[:2]} at lr {LR_MIN:g}",
            fix="check the data and labels, or turn mixed precision off for the "
            "sweep; then set the phase's lr by hand",
        )
    lr, best = pick(recorder.lrs, recorder.losses)
    if best in (0, len(recorder.losses) - 1):
        log.warning(
            "lr finder: the loss was lowest at the %s of the sweep (lr %.2g): the "
            "pick %.2g is a bound, not a measured minimum",
            "start" if best == 0 else "end",
            recorder.lrs[best],
            lr,
        )
    return {
        "lr": lr,
        "min_index": best,
        "steps": len(recorder.losses),
        "lrs": recorder.lrs,
        "losses": recorder.losses,
        "smoothed": centred(recorder.losses).tolist(),
    }


def resolve(
    tm,
    cfg,
    index: int,
    target: keras.Model,
    train_ds,
    state_dir: Path | None,
    compile_kwargs: dict,
    found: dict,
):
    """Phase ``index`` of ``cfg`` with ``lr="auto"`` replaced by the finder's rate.

    One sweep a phase, kept in ``found`` and written to ``state_dir`` (the run's checkpoints),
    so the steps of a gradual phase and a resumed run reuse it; ``lr_find.png`` goes next to
    ``state_dir``. Call it inside the strategy's scope, after the phase's scope is set.
    """
    phase = cfg.phases[index]
    settings = {
        "trainable": phase.trainable,
        "optimizer": phase.optimizer,
        "lr_decay": phase.lr_decay,
        "momentum": phase.momentum,
        "weight_decay": phase.weight_decay,
        "steps": cfg.lr_find_steps,
        "batch_size": cfg.batch_size,
    }
    if index in found and found[index].get("settings") != settings:
        del found[index]  # a resume changed what the sweep depends on: sweep again
    plot = None if state_dir is None else Path(state_dir).parent / "lr_find.png"
    if index not in found:
        multipliers = optim.block_multipliers(tm.backbone, tm.family, phase.lr_decay)
        found[index] = sweep(
            target,
            train_ds,
            lambda ramp: optim.make_optimizer(phase, 1, multipliers, learning_rate=ramp),
            compile_kwargs,
            cfg.lr_find_steps,
        )
        found[index]["settings"] = settings
        rec = found[index]
        log.info(
            "lr finder, phase %r: %d steps from %.0e, centred-average loss lowest at lr "
            "%.2g; picked %.2g (a tenth of it)",
            phase.name,
            rec["steps"],
            LR_MIN,
            rec["lrs"][rec["min_index"]],
            rec["lr"],
        )
        save(found, state_dir, plot, {i: p.name for i, p in enumerate(cfg.phases)})
    elif plot is not None and not plot.exists():  # a resume after the plot was cleared
        save(found, None, plot, {i: p.name for i, p in enumerate(cfg.phases)})
    return dataclasses.replace(phase, lr=found[index]["lr"])


def load(state_dir: Path | None) -> dict:
    """Sweeps recorded by an earlier run into this directory (``lr_find.json``): ``{phase: …}``."""
    path = None if state_dir is None else Path(state_dir) / "lr_find.json"
    if path is None or not path.is_file():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def save(found: dict, state_dir: Path | None, plot_path: Path | None, names: dict) -> None:
    """Writes the sweeps (``lr_find.json``) and their plot (``lr_find.png``)."""
    if state_dir is not None:
        write_json(Path(state_dir) / "lr_find.json", {str(k): v for k, v in found.items()})
    if plot_path is not None and found:
        figure(found, names, str(plot_path))


def figure(found: dict, names: dict, path: str | None = None):
    """Loss against rate, one panel per swept phase, the pick and the minimum marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(found), figsize=(5.5 * len(found), 4), squeeze=False)
    for ax, (index, rec) in zip(axes[0], sorted(found.items())):
        ax.plot(rec["lrs"], rec["losses"], color="0.75", lw=1, label="loss per batch")
        ax.plot(rec["lrs"], rec["smoothed"], color="C0", lw=2, label="centred average")
        ax.axvline(rec["lrs"][rec["min_index"]], color="C3", ls=":", label="smoothed minimum")
        ax.axvline(rec["lr"], color="C2", ls="--", label=f"picked {rec['lr']:.2g} (min / 10)")
        ax.set_xscale("log")
        top = max(rec["smoothed"][: rec["min_index"] + 1]) * 1.5
        ax.set_ylim(min(rec["smoothed"]) * 0.9, top)
        ax.set_xlabel("learning rate (head)")
        ax.set_ylabel("training loss")
        ax.set_title(f"phase {index} {names.get(index, '')!r}: {rec['steps']} steps")
        ax.legend(fontsize=8)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig
