"""The one training core every recipe calls: data, model, phases, evaluation, export.

:func:`run` takes a :class:`~tfxfer.config.Config` and

1. resolves the distribution strategy and refuses an output directory holding another run;
2. loads the data and prints its report (classes, counts, skipped images);
3. builds the model in the strategy's scope;
4. runs each phase: sets the ``trainable`` scope, **recompiles** (a ``trainable`` change only
   takes effect after ``compile``), and fits, on cached backbone features when only the head
   trains (``cache_features``) or on images otherwise; a checkpoint is written every epoch;
5. evaluates on the validation split and writes every artefact (see :mod:`tfxfer.export`).

Example:
    >>> from tfxfer.config import Config, Phase
    >>> from tfxfer import train  # doctest: +SKIP
    >>> result = train.run(Config(data="hymenoptera", phases=(Phase(epochs=2),)))  # doctest: +SKIP
    >>> result.metrics["val_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from tfxfer import backbones, distribute, evaluate, export, features, freeze, pipeline
from tfxfer import augment as augment_lib
from tfxfer import data as data_lib
from tfxfer import model as model_lib
from tfxfer.config import Config, Phase
from tfxfer.errors import UserError

log = logging.getLogger("tfxfer")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunResult:
    """What a run produced: final metrics, artefact paths, per-phase history."""

    metrics: dict
    paths: dict
    history: list
    seconds: float

    def summary(self) -> str:
        m = self.metrics
        return (f"val_accuracy={m['val_accuracy']:.4f} ({m['correct']}/{m['num_val']})  "
                f"val_loss={m['val_loss']:.4f}  time={self.seconds:.0f}s\n"
                f"exported SavedModel: {self.paths['saved_model']}\n"
                f"Keras model: {self.paths['keras']}\nmetrics: {self.paths['metrics']}")


class _EpochGuard(keras.callbacks.Callback):
    """Stops on a non-finite loss, and checkpoints the full model after every good epoch."""

    def __init__(self, tm, phase: Phase, index: int, ckpt_dir: Path | None):
        super().__init__()
        self.tm, self.phase, self.index, self.ckpt_dir = tm, phase, index, ckpt_dir
        self.diverged_at: int | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = self.epoch + 1
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is None and self.ckpt_dir is not None:
            final = self.ckpt_dir / "last.weights.h5"
            tmp = self.ckpt_dir / ".last.tmp.weights.h5"
            self.tm.model.save_weights(str(tmp))
            tmp.replace(final)
            export.write_json(self.ckpt_dir / "last.json",
                              {"phase_index": self.index, "phase": self.phase.name,
                               "epoch": epoch + 1})


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


def _fit_phase(tm, cfg: Config, index: int, data, cache, strategy, out: Path | None) -> dict:
    phase = cfg.phases[index]
    with strategy.scope():
        freeze.apply_scope(tm.backbone, tm.family, phase.trainable, cfg.freeze_blocks,
                           cfg.train_bn)
        target = tm.head_model if cache is not None else tm.model
        steps = math.ceil(len(data.train) / cfg.batch_size)
        compile_for(target, phase, steps, cfg)  # always recompile after a trainable change
    info = freeze.summary(tm.backbone, tm.family)
    log.info("phase %d/%d %r: trainable=%s blocks=%s backbone params trainable=%s "
             "BN %s, %s, %d epochs %s lr=%g", index + 1, len(cfg.phases), phase.name,
             phase.trainable, info["trainable_blocks"] or "none", f"{info['trainable_params']:,}",
             "trained" if info["bn_trainable"] else "frozen (inference mode)",
             "cached features" if cache is not None else "images", phase.epochs,
             phase.optimizer, phase.lr)
    if cache is not None:
        train_ds = features.feature_dataset(cache, data.num_classes, cfg.batch_size, train=True,
                                            seed=cfg.seed + index)
        val_ds = features.feature_dataset(cache, data.num_classes, cfg.batch_size, train=False)
    else:
        mixer = augment_lib.batch_mixer(cfg.mixup, cfg.cutmix, cfg.seed)
        train_ds = pipeline.image_dataset(data.train, data.num_classes, tm.image_size,
                                          cfg.batch_size, shuffle=True, seed=cfg.seed + index,
                                          mixer=mixer, drop_remainder=mixer is not None)
        val_ds = pipeline.image_dataset(data.val, data.num_classes, tm.image_size, cfg.batch_size)
    ckpt = None
    if out is not None:
        ckpt = out / "checkpoints"
        ckpt.mkdir(exist_ok=True)
    guard = _EpochGuard(tm, phase, index, ckpt)
    callbacks: list[keras.callbacks.Callback] = [guard]
    if phase.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=phase.early_stopping, restore_best_weights=True))
    hist = target.fit(train_ds, validation_data=val_ds, epochs=phase.epochs,
                      callbacks=callbacks, verbose=cfg.verbose)
    if guard.diverged_at is not None:
        raise TrainingDiverged(f"the loss became NaN or infinite in phase {phase.name!r} "
                               f"(#{index + 1}), epoch {guard.diverged_at}; the last good "
                               f"checkpoint is kept in {ckpt}",
                               fix=f"lower phases.{index}.lr (now {phase.lr:g})")
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def run(cfg: Config, extra_augment: Sequence[keras.layers.Layer] = ()) -> RunResult:
    """Runs a whole recipe from a config; see the module docstring for the steps.

    Args:
        cfg: The resolved configuration.
        extra_augment: Extra Keras augmentation layers (e.g. keras-cv) appended to the preset.

    Returns:
        A :class:`RunResult` with the validation metrics and the paths of every artefact.
    """
    t0 = time.perf_counter()
    if cfg.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(cfg.seed)
    size = backbones.resolve_size(cfg.backbone, cfg.image_size)
    strategy, why = distribute.resolve(cfg.strategy)
    log.info("strategy: %s (%s), %d replica(s), global batch %d", type(strategy).__name__, why,
             strategy.num_replicas_in_sync, cfg.batch_size)
    chief = distribute.is_chief(strategy)
    out = export.prepare_output_dir(cfg) if chief else None
    if out is not None:
        export.write_json(out / "config.json", cfg.to_dict())
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
        use_cache = phase.trainable == "head" and cfg.cache_features
        if use_cache and cache is None:
            cache = features.extract(tm, data, cfg.feature_views, size)
        hist = _fit_phase(tm, cfg, index, data, cache if use_cache else None, strategy, out)
        if not use_cache:
            cache = None  # the backbone may have changed: cached features are stale
        history.append({"phase": phase.name, "trainable": phase.trainable,
                        "cached_features": use_cache, "seconds": round(time.perf_counter() - start, 2),
                        "history": hist})
    if cache is not None:
        logits = tm.head_model.predict(cache.val, batch_size=256, verbose=0)
    else:
        val_ds = pipeline.image_dataset(data.val, data.num_classes, size, cfg.batch_size)
        logits = tm.model.predict(val_ds.map(lambda x, y: x), verbose=0)
    metrics = evaluate.metrics_from_logits(logits, data.val.labels, data.class_names)
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    paths = export.write_run(tm, cfg, out, history, metrics, data.report()) if out else {}
    return RunResult(metrics, paths, history, time.perf_counter() - t0)
