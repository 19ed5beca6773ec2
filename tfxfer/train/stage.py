"""One stage of training, what :func:`tfxfer.train.loop.run` repeats for every stage of every
phase: set the ``trainable`` scope, resolve ``lr="auto"``, **recompile**, fit with the run's
callbacks (a checkpoint per epoch, the NaN guard, early stopping, pruning), and stop with a
one-line error naming the phase when the loss diverges.

The stage's shared context is a :class:`Training` (the model, data, strategy, run state, tasks,
shard, pruning plan and finder sweeps), built once per run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import keras

from tfxfer.config import Config, Phase
from tfxfer.data import filling
from tfxfer.data.shard import Shard
from tfxfer.errors import UserError
from tfxfer.methods import prune as prune_lib
from tfxfer.methods import tasks as tasks_lib
from tfxfer.models import backbones, freeze
from tfxfer.train import board, inputs, lr_find, optim, prebuild
from tfxfer.train.checkpoint import RunState, all_finite, history_from_epochs

log = logging.getLogger("tfxfer")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class EpochGuard(keras.callbacks.Callback):
    """Stops on a non-finite loss, and checkpoints the full model after every finite epoch."""

    def __init__(self, tm, key: str, state: RunState):
        super().__init__()
        self.tm, self.key, self.state = tm, key, state
        self.diverged_at: int | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _check(self, logs, epoch: int) -> None:
        if self.diverged_at is None and not all_finite(logs):
            self.diverged_at = epoch + 1
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._check({"loss": (logs or {}).get("loss", 0.0)}, self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, epoch)
        if self.diverged_at is None:
            self.state.log_epoch(self.tm.model, self.key, epoch, logs or {})


def compile_for(
    target: keras.Model,
    tm,
    phase: Phase,
    steps_per_epoch: int,
    cfg: Config,
    specs: list[tasks_lib.TaskSpec],
    first_epoch: int = 0,
) -> None:
    """Compiles ``target`` for a phase: optimiser with per-block rates, per-task losses."""
    target.compile(
        optimizer=optim.for_phase(tm, phase, steps_per_epoch, first_epoch),
        **tasks_lib.compile_args(specs, tm.multi, cfg),
    )


def _rates(phase: Phase, family: str) -> str:
    lr, decay = phase.rates()
    if decay == 1.0:
        return f"lr={lr:g}"
    n = backbones.num_blocks(family)
    return (
        "lr="
        + " ".join(f"b{b}:{lr * optim.block_factor(decay, b, n):.2g}" for b in range(1, n + 1))
        + f" head:{lr:g}"
    )


@dataclass
class Training:
    """What every stage of one run shares, built once by :func:`run` and handed to each stage.

    Attributes:
        cfg: The run's config.
        tm: The model (:class:`tfxfer.models.model.TransferModel`).
        data: The training and validation data (:class:`tfxfer.data.splits.Split`).
        strategy: The ``tf.distribute`` strategy.
        state: The run's checkpoints and completed phases.
        specs: The output tasks (:func:`tfxfer.methods.tasks.resolve`).
        shard: This worker's share of the data.
        pruning: The pruning plan per stage (:func:`tfxfer.methods.prune.plan`).
        found: The learning-rate finder's sweeps by phase, kept across a resume.
        find_only: Stop after the finder's sweep of this phase (``tfxfer lr-find``).
    """

    cfg: Config
    tm: Any
    data: Any
    strategy: Any
    state: RunState
    specs: list
    shard: Shard
    pruning: dict
    found: dict
    find_only: int | None = None


def fit_stage(run: Training, stage: freeze.Stage, cache) -> dict | None:
    """Trains one stage; returns its history, or None when ``find_only`` stopped after the
    finder."""
    cfg, tm, data, strategy, state = run.cfg, run.tm, run.data, run.strategy, run.state
    specs, shard, found = run.specs, run.shard, run.found
    phase = cfg.phases[stage.index]
    targets = tasks_lib.targets_fn(specs, tm.multi)
    with strategy.scope():
        freeze.apply_scope(tm.backbone, tm.family, stage.scope, stage.freeze_blocks, cfg.train_bn)
        augment_in_data = cfg.augment_in == "data" and tm.augmenter is not None
        if cache is not None:
            target = tm.head_model
        else:
            target = tm.plain_model if augment_in_data else tm.model
        steps = math.ceil(len(data.train) / inputs.per_worker_batch(cfg.batch_size, shard))
        freeze.fit_bn_momentum(tm.backbone, stage.epochs * steps)
    batches = inputs.stage(
        tm,
        cfg,
        data,
        cache,
        cfg.seed + stage.index + stage.first_epoch if cache is None else cfg.seed + stage.index,
        targets,
        augment_in_data,
        strategy,
        shard,
    )
    if phase.lr == "auto":
        with strategy.scope():
            phase = lr_find.resolve(
                tm,
                cfg,
                stage.index,
                target,
                batches.local(),
                state.dir,
                tasks_lib.compile_args(specs, tm.multi, cfg),
                found,
            )
        if run.find_only == stage.index:
            return None
    with strategy.scope():  # always recompile after a trainable change
        compile_for(target, tm, phase, steps, cfg, specs, stage.first_epoch)
    info = freeze.summary(tm.backbone, tm.family)
    log.info(
        "phases.%d %r (%d of %d): trainable=%s blocks=%s backbone params trainable=%s "
        "BN %s, %s, %d epochs %s %s%s",
        stage.index,
        stage.label,
        stage.index + 1,
        len(cfg.phases),
        phase.trainable,
        info["trainable_blocks"] or "none",
        f"{info['trainable_params']:,}",
        "trained" if info["bn_trainable"] else "frozen (inference mode)",
        "cached features"
        if cache is not None
        else f"images (augmentation in {'tf.data' if augment_in_data else 'the model'})",
        stage.epochs,
        phase.optimizer,
        _rates(phase, tm.family),
        f" regularization={cfg.regularization.method}"
        if cfg.regularization.method != "none"
        else "",
    )
    guard = EpochGuard(tm, stage.key, state)
    # the epoch's record first, then the backup: a kill between the two repeats the epoch on
    # resume (its record is rewritten under the same number) instead of losing its record
    callbacks = [c for c in (guard, state.backup(stage.key)) if c is not None]
    if phase.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=phase.early_stopping, restore_best_weights=True
            )
        )
    if cfg.prune.sparsity and stage.key in run.pruning:  # after EarlyStopping: its restore of
        # earlier, denser weights is followed by the masks at the end of training
        callbacks.append(prune_lib.callback(tm.model, cfg.prune, run.pruning, stage.key))
    out = None if state.dir is None else state.dir.parent
    before = sum(p.epochs for p in cfg.phases[: stage.index]) + stage.first_epoch
    callbacks += [c for c in (board.callback(out, stage.label, before),) if c is not None]  # last
    done_before = state.resume_epoch(stage.key)
    if done_before:
        log.info("resuming phase %r after its completed epoch %d", stage.label, done_before)
    prebuild.before_fit(target, batches.train)
    with filling.surfaced(run.data):  # a streamed split's error, as one line
        hist = target.fit(
            batches.train,
            validation_data=batches.val,
            epochs=stage.epochs,
            callbacks=callbacks,
            verbose=cfg.verbose,
        )
    if guard.diverged_at is not None:
        raise TrainingDiverged(
            f"the loss became NaN or infinite in phase {stage.label!r} "
            f"(phases.{stage.index}), epoch {guard.diverged_at}; training "
            f"stopped and the last good checkpoint is kept in {state.dir}",
            fix=f"re-run the same command with --resume and a lower "
            f"phases.{stage.index}.lr (now {phase.rates()[0]:g}), e.g. "
            f"--set phases.{stage.index}.lr={phase.rates()[0] / 10:g}: "
            "completed phases are kept and this one goes on from its "
            "last good epoch",
        )
    recorded = history_from_epochs(state.epochs(stage.key))
    return recorded or {k: [float(v) for v in vals] for k, vals in hist.history.items()}
