"""The text trainer: the image core's phases, checkpoints and outputs, on a KerasHub encoder.

:func:`run` is what the ``text_classify`` recipe calls (``runner.register(trainer=...)``). It
shares the image recipes' machinery: the :class:`~tfxfer.config.Config` and its phases, the
run directory's lock and the refusal of another run's folder (:mod:`tfxfer.train.rundir`),
per-epoch checkpoints and resume (:mod:`tfxfer.train.checkpoint`), the NaN guard, early
stopping, the optimisers and schedules (:mod:`tfxfer.train.optim`), L2-SP
(:mod:`tfxfer.methods.regularize`), label smoothing and class weights, and the metrics,
curves and confusion matrix written by :func:`tfxfer.deploy.export.save_run`.

What is text's own:

- texts are tokenised once and batched by similar length, each batch padded only to its longest
  text (:mod:`tfxfer.text.batches`);
- a phase with ``trainable="head"`` (or any phase under ``text.scope=frozen``) trains the head
  on pooled features computed once; other phases train ``text.scope``
  (:func:`tfxfer.text.scope.apply_scope`), ``phases.N.lr_decay`` being layer-wise;
- ``metrics.json`` gains ``text``: the preset, the scope, trainable and total parameters of the
  last phase, and how many validation texts were cut at ``text.sequence_length``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import keras
import numpy as np
import tensorflow as tf

from tfxfer.config import SCOPE_PHASES, Config
from tfxfer.errors import UserError
from tfxfer.methods import regularize
from tfxfer.methods import tasks as tasks_lib
from tfxfer.text import data as text_data
from tfxfer.text import encoder, lora
from tfxfer.text import scope as scope_lib
from tfxfer.text.batches import batches, predict, tokenize
from tfxfer.train import board, distribute, inputs, optim, prebuild, rundir
from tfxfer.train.checkpoint import RunState, history_from_epochs
from tfxfer.train.result import RunResult
from tfxfer.train.stage import EpochGuard, TrainingDiverged

log = logging.getLogger("tfxfer")


def check(cfg: Config) -> None:
    """One-line errors for text settings the text trainer cannot honour (the image parts of
    the config are refused by the runner, :func:`tfxfer.runner.refuse_foreign_sections`)."""
    default = Config()
    for i, phase in enumerate(cfg.phases):
        if phase.trainable not in ("head", "all") or phase.lr == "auto":
            raise UserError(
                f"a text phase's trainable is head (the head alone) or all (what "
                f"text.scope says), with a numeric lr (phase {i} {phase.name!r})",
                got=(phase.trainable, phase.lr),
                fix="set phases.N.trainable=all and pick the part with --scope",
            )
    scope = cfg.text.scope
    for other, phases in SCOPE_PHASES.items():
        if other != scope and tuple(cfg.phases) == phases:
            raise UserError(
                f"text.scope={scope} is set, but the phases are scope {other}'s "
                f"defaults (lr {phases[0].lr:g}); --scope sets both",
                got=dict(scope=scope, phases=other),
                fix=f"pass --scope {scope} (Python: text_classify.config("
                f'"{scope}")), or give the phases yourself',
            )
    if scope != "lora" and cfg.lora != default.lora:
        raise UserError(
            "lora.* settings apply to text.scope=lora only",
            got=cfg.lora,
            fix="pass --scope lora, or drop the lora.* keys",
        )
    if scope != "top_k" and cfg.text.top_k != default.text.top_k:
        raise UserError(
            "text.top_k applies to text.scope=top_k only",
            got=cfg.text.top_k,
            fix="pass --scope top_k, or drop text.top_k",
        )
    if cfg.strategy in ("multiworker", "tpu"):
        raise UserError(
            "the text recipe runs on one machine (default or mirrored strategy)",
            got=cfg.strategy,
            fix="pass --strategy auto",
        )


def run(cfg: Config, extra_augment=()) -> RunResult:
    """Trains and evaluates the text classifier of ``cfg``; see the module docstring."""
    t0 = time.perf_counter()
    check(cfg)
    encoder.keras_hub()  # the install error before anything else happens
    keras.utils.set_random_seed(cfg.seed)
    strategy, why = distribute.resolve(cfg.strategy)
    policy, _ = distribute.precision_policy(cfg.mixed_precision, strategy)
    keras.mixed_precision.set_global_policy(policy)
    with rundir.claim(cfg) as out:  # an unwritable --output is refused before data is read
        data = text_data.load(
            cfg.data, cfg.val_split, cfg.seed, cfg.train_per_class, cfg.val_per_class
        )
        return _run_locked(cfg, data, out, strategy, t0)


def _run_locked(cfg: Config, data, out, strategy, t0: float) -> RunResult:
    state = RunState(out)
    log.info("%s", data.describe())
    specs = tasks_lib.resolve((), data.class_names)
    with strategy.scope():
        tm = encoder.build(cfg, data.num_classes)
        regularize.attach_settings(tm, cfg.regularization, state.dir)
    log.info(
        "encoder: %s, %d transformer layers, %s parameters; pooling %s, sequence length "
        "%d, scope %s",
        cfg.text.preset,
        len(tm.transformer_layers),
        f"{scope_lib.count(tm.backbone.weights):,}",
        cfg.text.pooling,
        tm.sequence_length,
        cfg.text.scope,
    )
    train_rows, val_rows = tokenize(tm, data.train.texts), tokenize(tm, data.val.texts)
    targets = tasks_lib.targets_fn(specs, False)
    y_train = np.asarray(targets(data.train.labels), np.float32)
    y_val = np.asarray(targets(data.val.labels), np.float32)
    weights = inputs.class_weights(cfg, data.train.labels, data.num_classes)
    history, cache, params = [], None, {}
    for index, phase in enumerate(cfg.phases):
        start = time.perf_counter()
        done = state.completed(index)
        if done is not None:
            state.restore_completed(tm.model, index)
            lora.revive_lora(tm)  # loading zeroes the adapters (merged into the kernels)
            log.info("phase %r was completed by an earlier run: weights restored", phase.name)
            history.append(done)
            cache = None
            continue
        scope = (
            "head" if phase.trainable == "head" or cfg.text.scope == "frozen" else cfg.text.scope
        )
        use_cache = scope == "head" and cfg.cache_features
        with strategy.scope():
            scope_lib.apply_scope(tm, scope, cfg.text.top_k)
            target = tm.head_model if use_cache else tm.model
            steps = math.ceil(len(train_rows) / cfg.batch_size)
            multipliers = {} if scope == "head" else scope_lib.layer_multipliers(tm, phase)
            run_phase = dataclasses.replace(phase, lr=scope_lib.head_rate(phase), lr_range=())
            target.compile(
                optimizer=optim.make_optimizer(run_phase, steps, multipliers),
                **tasks_lib.compile_args(specs, False, cfg),
            )
        params = {
            "trainable": scope_lib.count(tm.model.trainable_weights),
            "total": scope_lib.count(tm.model.weights),
        }
        if use_cache and cache is None:
            cache = (
                predict(tm, tm.feature_model, train_rows),
                predict(tm, tm.feature_model, val_rows),
            )
        if use_cache:
            train_ds = (
                tf.data.Dataset.from_tensor_slices((cache[0], y_train))
                .shuffle(len(y_train), seed=cfg.seed + index)
                .batch(cfg.batch_size)
            )
            val_ds = tf.data.Dataset.from_tensor_slices((cache[1], y_val)).batch(256)
        else:
            train_ds = batches(
                tm,
                train_rows,
                y_train,
                cfg.batch_size,
                cfg.seed + index,
                True,
                state.resume_epoch(index),
            )
            val_ds = batches(tm, val_rows, y_val, 128, 0, False)
        train_ds = inputs.with_sample_weights(train_ds, weights)
        log.info(
            "phases.%d %r (%d of %d): %s, trainable parameters %s of %s (%.2f%%), %s, "
            "%d epochs %s lr=%g%s",
            index,
            phase.name,
            index + 1,
            len(cfg.phases),
            scope,
            f"{params['trainable']:,}",
            f"{params['total']:,}",
            100 * params["trainable"] / params["total"],
            "cached features" if use_cache else "token batches",
            phase.epochs,
            phase.optimizer,
            scope_lib.head_rate(phase),
            " layer-wise decay" if multipliers else "",
        )
        before = sum(p.epochs for p in cfg.phases[:index])  # TensorBoard's epoch axis
        hist = _fit(tm, target, phase, index, state, train_ds, val_ds, cfg.verbose, before)
        if not use_cache:
            cache = None
        record = {
            "phase": phase.name,
            "trainable": phase.trainable,
            "scope": scope,
            "cached_features": use_cache,
            "trainable_params": params["trainable"],
            "seconds": round(time.perf_counter() - start, 2),
            "history": hist,
        }
        state.mark_completed(tm.model, index, record)
        history.append(record)
    metrics = evaluate(tm, cfg, data, val_rows, specs)
    metrics["text"] = {
        "preset": cfg.text.preset,
        "scope": cfg.text.scope,
        "trainable_params": params.get("trainable", history[-1].get("trainable_params")),
        "total_params": scope_lib.count(tm.model.weights),
        "sequence_length": tm.sequence_length,
        "val_texts_cut": int(sum(len(r) + 2 > tm.sequence_length for r in val_rows)),
    }
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return RunResult(
        metrics, history, time.perf_counter() - t0, tm, data.report(), str(out), data=data
    )


def _fit(
    tm, target, phase, index: int, state: RunState, train_ds, val_ds, verbose: int, before: int
) -> dict:
    guard = EpochGuard(tm, index, state)
    callbacks = [c for c in (guard, state.backup(index)) if c is not None]
    if tm.lora_layers:  # after the backup's restore, which zeroes the adapters
        callbacks.append(lora.ReviveLora(tm))
    if phase.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=phase.early_stopping, restore_best_weights=True
            )
        )
    out = None if state.dir is None else state.dir.parent
    callbacks += [c for c in (board.callback(out, phase.name, before),) if c is not None]  # last
    done_before = state.resume_epoch(index)
    if done_before:
        log.info("resuming phase %r after its completed epoch %d", phase.name, done_before)
    prebuild.before_fit(target, train_ds)
    hist = target.fit(
        train_ds,
        validation_data=val_ds,
        epochs=phase.epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,
    )
    if guard.diverged_at is not None:
        raise TrainingDiverged(
            f"the loss became NaN or infinite in phase {phase.name!r} "
            f"(phases.{index}), epoch {guard.diverged_at}; the last good "
            f"checkpoint is kept in {state.dir}",
            fix=f"re-run with --resume and a lower phases.{index}.lr",
        )
    recorded = history_from_epochs(state.epochs(index))
    return recorded or {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def evaluate(tm, cfg: Config, data, val_rows, specs) -> dict:
    """The validation metrics of the trained model (``metrics.json``)."""
    per_task = tasks_lib.metrics(predict(tm, tm.model, val_rows), data.val.labels, specs)
    return dict(per_task[specs[0].name])
