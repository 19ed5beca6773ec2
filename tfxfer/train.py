"""The one training core every recipe calls: data, model, phases, evaluation, export.

:func:`run` takes a :class:`~tfxfer.config.Config` and

1. resolves the distribution strategy and refuses an output directory holding another run;
2. loads the data and prints its report (classes, counts, skipped images);
3. builds the model in the strategy's scope;
4. runs each phase: sets the ``trainable`` scope, **recompiles** (a ``trainable`` change only
   takes effect after ``compile``), and fits, on cached backbone features when only the head
   trains (``cache_features``) or on images otherwise. Every completed epoch is checkpointed
   (:mod:`tfxfer.checkpoint`): re-running the same command after a crash skips completed phases
   and resumes the running one from its last completed epoch; a multi-worker run, whose
   checkpoints only the chief holds, starts over instead. A NaN/Inf loss stops the run
   with a message naming the phase and epoch;
5. evaluates on the validation split. Writing the artefacts is :func:`tfxfer.export.save_run`'s
   job (the recipes' ``run`` does both).

Example:
    >>> from tfxfer.config import Config, Phase
    >>> from tfxfer import train  # doctest: +SKIP
    >>> result = train.run(Config(data="hymenoptera", phases=(Phase(epochs=2),)))  # doctest: +SKIP
    >>> result.metrics["val_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from typing import Sequence

import keras
import numpy as np

from tfxfer import backbones, distribute, evaluate, features, freeze, pipeline
from tfxfer import augment as augment_lib
from tfxfer import data as data_lib
from tfxfer import model as model_lib
from tfxfer.checkpoint import RunState, all_finite, history_from_epochs, prepare_output_dir
from tfxfer.config import Config, Phase
from tfxfer.errors import UserError

log = logging.getLogger("tfxfer")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunResult:
    """What a run produced: the trained model, metrics, per-phase history, artefact paths.

    ``output`` is None on a non-chief worker; ``paths`` is filled by
    :func:`tfxfer.export.save_run`.
    """

    metrics: dict
    history: list
    seconds: float
    model: model_lib.TransferModel
    data_report: dict
    output: str | None
    paths: dict = field(default_factory=dict)

    def summary(self) -> str:
        m = self.metrics
        text = (f"val_accuracy={m['val_accuracy']:.4f} ({m['correct']}/{m['num_val']})  "
                f"val_loss={m['val_loss']:.4f}  time={self.seconds:.0f}s")
        if self.paths:
            text += (f"\nexported SavedModel: {self.paths['saved_model']}\n"
                     f"Keras model: {self.paths['keras']}\nmetrics: {self.paths['metrics']}")
        return text


class _EpochGuard(keras.callbacks.Callback):
    """Stops on a non-finite loss, and checkpoints the full model after every finite epoch."""

    def __init__(self, tm, phase: Phase, index: int, state: RunState):
        super().__init__()
        self.tm, self.phase, self.index, self.state = tm, phase, index, state
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
            self.state.log_epoch(self.tm.model, self.index, epoch, logs or {})


def make_optimizer(phase: Phase, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The phase's optimiser with its learning-rate schedule."""
    lr = phase.lr
    if phase.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(phase.lr, max(1, phase.epochs * steps_per_epoch))
    wd = phase.weight_decay or None
    if phase.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if phase.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=phase.weight_decay)
    if phase.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=phase.momentum, nesterov=True, weight_decay=wd)
    return keras.optimizers.RMSprop(lr, momentum=phase.momentum if phase.momentum < 1 else 0.0)


def compile_for(target: keras.Model, phase: Phase, steps_per_epoch: int, cfg: Config) -> None:
    target.compile(
        optimizer=make_optimizer(phase, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                  label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def _class_weight(cfg: Config, labels: np.ndarray, num_classes: int) -> dict | None:
    if cfg.class_weight == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return {i: float(len(labels) / (num_classes * max(c, 1.0))) for i, c in enumerate(counts)}


def _fit_phase(tm, cfg: Config, index: int, data, cache, strategy, state: RunState) -> dict:
    phase = cfg.phases[index]
    with strategy.scope():
        freeze.apply_scope(tm.backbone, tm.family, phase.trainable, cfg.freeze_blocks,
                           cfg.train_bn)
        augment_in_data = cfg.augment_in == "data" and tm.augmenter is not None
        if cache is not None:
            target = tm.head_model
        else:
            target = tm.plain_model if augment_in_data else tm.model
        steps = math.ceil(len(data.train) / cfg.batch_size)
        compile_for(target, phase, steps, cfg)  # always recompile after a trainable change
    info = freeze.summary(tm.backbone, tm.family)
    log.info("phase %d/%d %r: trainable=%s blocks=%s backbone params trainable=%s "
             "BN %s, %s, %d epochs %s lr=%g", index + 1, len(cfg.phases), phase.name,
             phase.trainable, info["trainable_blocks"] or "none", f"{info['trainable_params']:,}",
             "trained" if info["bn_trainable"] else "frozen (inference mode)",
             "cached features" if cache is not None else
             f"images (augmentation in {'tf.data' if augment_in_data else 'the model'})",
             phase.epochs,
             phase.optimizer, phase.lr)
    if cache is not None:
        train_ds = features.feature_dataset(cache, data.num_classes, cfg.batch_size, train=True,
                                            seed=cfg.seed + index)
        val_ds = features.feature_dataset(cache, data.num_classes, cfg.batch_size, train=False)
    else:
        mixer = augment_lib.batch_mixer(cfg.mixup, cfg.cutmix, cfg.seed)
        train_ds = pipeline.image_dataset(data.train, data.num_classes, tm.image_size,
                                          cfg.batch_size, shuffle=True, seed=cfg.seed + index,
                                          augmenter=tm.augmenter if augment_in_data else None,
                                          mixer=mixer, drop_remainder=mixer is not None)
        val_ds = pipeline.image_dataset(data.val, data.num_classes, tm.image_size, cfg.batch_size)
    guard = _EpochGuard(tm, phase, index, state)
    callbacks = [c for c in (state.backup(index), guard) if c is not None]
    if phase.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=phase.early_stopping, restore_best_weights=True))
    done_before = len(state.epochs(index))
    if done_before:
        log.info("resuming phase %r after its completed epoch %d", phase.name, done_before)
    hist = target.fit(train_ds, validation_data=val_ds, epochs=phase.epochs, callbacks=callbacks,
                      verbose=cfg.verbose,
                      class_weight=_class_weight(cfg, data.train.labels, data.num_classes))
    if guard.diverged_at is not None:
        raise TrainingDiverged(f"the loss became NaN or infinite in phase {phase.name!r} "
                               f"(#{index + 1}), epoch {guard.diverged_at}; training stopped and "
                               f"the last good checkpoint is kept in {state.dir}",
                               fix=f"lower phases.{index}.lr (now {phase.lr:g})")
    recorded = history_from_epochs(state.epochs(index))
    return recorded or {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def run(cfg: Config, extra_augment: Sequence[keras.layers.Layer] = ()) -> RunResult:
    """Trains and evaluates a whole recipe from a config; see the module docstring.

    Args:
        cfg: The resolved configuration.
        extra_augment: Extra Keras augmentation layers (e.g. keras-cv) appended to the preset.

    Returns:
        A :class:`RunResult`; pass it to :func:`tfxfer.export.save_run` to write the artefacts.
    """
    t0 = time.perf_counter()
    # Set both ways: a policy left by an earlier run in the same process (Colab) must not leak.
    keras.mixed_precision.set_global_policy("mixed_float16" if cfg.mixed_precision else "float32")
    keras.utils.set_random_seed(cfg.seed)
    size = backbones.resolve_size(cfg.backbone, cfg.image_size)
    strategy, why = distribute.resolve(cfg.strategy)
    log.info("strategy: %s (%s), %d replica(s), global batch %d", type(strategy).__name__, why,
             strategy.num_replicas_in_sync, cfg.batch_size)
    out = prepare_output_dir(cfg) if distribute.is_chief(strategy) else None
    if out is not None and distribute.num_workers(strategy) > 1 and (out / "checkpoints").exists():
        # Only the chief holds checkpoints: resuming there alone would send the workers down
        # different paths and their collectives would fail. A multi-worker run starts over.
        log.warning("multi-worker run: not resuming; discarding %s", out / "checkpoints")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    state = RunState(out)
    data = data_lib.load(cfg.data, size, val_split=cfg.val_split, seed=cfg.seed,
                         train_per_class=cfg.train_per_class, val_per_class=cfg.val_per_class,
                         manual_dir=cfg.manual_dir)
    log.info("%s", data.describe())
    with strategy.scope():
        tm = model_lib.build(cfg.backbone, data.num_classes, size, cfg.weights, cfg.augment,
                             extra_augment, cfg.head_pooling, cfg.head_dropout, cfg.head_hidden,
                             cfg.seed)
    history, cache = [], None
    for index, phase in enumerate(cfg.phases):
        start = time.perf_counter()
        done = state.completed(index)
        if done is not None:
            state.restore_completed(tm.model, index)
            log.info("phase %r was completed by an earlier run: weights restored", phase.name)
            history.append(done)
            cache = None
            continue
        use_cache = phase.trainable == "head" and cfg.cache_features
        if use_cache and cache is None:
            cache = features.extract(tm, data, cfg.feature_views, size)
        hist = _fit_phase(tm, cfg, index, data, cache if use_cache else None, strategy, state)
        if not use_cache:
            cache = None  # the backbone may have changed: cached features are stale
        record = {"phase": phase.name, "trainable": phase.trainable, "cached_features": use_cache,
                  "seconds": round(time.perf_counter() - start, 2), "history": hist}
        state.mark_completed(tm.model, index, record)
        history.append(record)
    if cache is not None:
        logits = tm.head_model.predict(cache.val, batch_size=256, verbose=0)
    else:
        val_ds = pipeline.image_dataset(data.val, data.num_classes, size, cfg.batch_size)
        logits = tm.model.predict(val_ds.map(lambda x, y: x), verbose=0)
    metrics = evaluate.metrics_from_logits(logits, data.val.labels, data.class_names)
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return RunResult(metrics, history, time.perf_counter() - t0, tm, data.report(),
                     None if out is None else str(out))
