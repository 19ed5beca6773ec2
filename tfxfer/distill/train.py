"""The training core of distillation: a finished run teaches a smaller student.

:func:`run` is :func:`tfxfer.train.loop.run`'s counterpart for the ``distill`` recipe. It uses
the same pieces (strategy, output directory, data loading, model builder, freezing scopes,
per-block optimisers, TensorBoard, evaluation, export) and trains with
:class:`tfxfer.distill.step.Distiller`:

1. reads the teacher (:mod:`tfxfer.distill.teacher`) and the teacher's data, split as the
   teacher split it; refuses a teacher whose classes are not the data's;
2. adds ``distill.unlabelled``'s images, without labels, to the training images
   (:mod:`tfxfer.data.unlabelled`); they count in the soft term only;
3. builds the student and loads the teacher (frozen, in inference mode; not loaded at all with
   ``alpha = 1``);
4. for each phase: sets its ``trainable`` scope, recompiles, and fits on augmented batches
   that the teacher and the student both see, validating on the validation split each epoch;
5. evaluates the student on the validation split and reports the teacher's numbers beside its
   own under ``metrics["distill"]``. The student is what is saved and exported (SavedModel,
   LiteRT); int8 is calibrated on its training images, as for any image run.

An interrupted distillation starts over when re-run (it writes no per-epoch checkpoints).

Example:
    >>> from tfxfer.recipes import distill  # doctest: +SKIP
    >>> result = distill.run(distill={"teacher": "runs/small_similar"})  # doctest: +SKIP
    >>> result.metrics["distill"]["teacher_val_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfxfer.config import Config
from tfxfer.data import filling, pipeline, unlabelled
from tfxfer.data.splits import Split
from tfxfer.distill import teacher as teacher_lib
from tfxfer.distill.step import Distiller
from tfxfer.errors import UserError
from tfxfer.methods import regularize
from tfxfer.methods import tasks as tasks_lib
from tfxfer.models import backbones, freeze
from tfxfer.models import model as model_lib
from tfxfer.train import board, distribute, optim, prebuild, rundir, validate
from tfxfer.train.checkpoint import RunState
from tfxfer.train.loop import load_data, start
from tfxfer.train.result import RunResult

log = logging.getLogger("tfxfer")


def run(cfg: Config, extra_augment=()) -> RunResult:
    """Distils ``cfg.distill.teacher`` into the student ``cfg`` describes (see the module
    docstring)."""
    cfg, _ = teacher_lib.prepare(cfg)  # the runner has done so and logged the plan: idempotent
    teacher = teacher_lib.read(cfg.distill.teacher)
    t0 = time.perf_counter()
    size, strategy = start(cfg)
    d = cfg.distill
    log.info("distillation: temperature %g, alpha %g (the labels' share)", d.temperature, d.alpha)
    with rundir.claim(cfg, distribute.is_chief(strategy)) as out:
        return _run_locked(cfg, teacher, out, strategy, size, extra_augment, t0)


def pool_size(cfg: Config, teacher, size: int) -> int:
    """The size the training images are decoded at: the larger of the student's ``size`` and
    the teacher's input (the student's alone when the teacher is not run, ``alpha`` 1)."""
    if cfg.distill.alpha >= 1:
        return size
    c = teacher.config
    return max(size, backbones.resolve_size(c["backbone"], c.get("image_size")))


def training_pool(cfg: Config, data, size: int) -> tuple[Split, int]:
    """The training images with their labels (``data``'s, decoded at ``size``), then
    ``distill.unlabelled``'s with label -1 (an all-zero one-hot row); and how many of the
    latter there are."""
    if cfg.distill.unlabelled is None:
        return data.train, 0
    extra, skipped = unlabelled.images(
        cfg.distill.unlabelled, size, cfg.seed, cfg.val_split, role="--unlabelled"
    )
    log.info(
        "--unlabelled %s: %d images (soft targets only)%s",
        cfg.distill.unlabelled,
        len(extra),
        f", {len(skipped)} skipped as unreadable" if skipped else "",
    )
    pool = Split(
        np.concatenate([data.train.images, extra]),
        np.concatenate([data.train.labels, np.full(len(extra), -1, data.train.labels.dtype)]),
    )
    return pool, len(extra)


def _run_locked(cfg: Config, teacher, out, strategy, size: int, extra_augment, t0) -> RunResult:
    data = load_data(cfg, size)
    log.info("%s", data.describe())
    if list(data.class_names) != teacher.class_names:
        raise UserError(
            "the data's classes must be the teacher's, in the same order",
            got=f"data {list(data.class_names)} vs teacher {teacher.class_names}",
            fix=f"distil from the data the teacher trained on ({teacher.config.get('data')})",
        )
    big = pool_size(cfg, teacher, size)
    if big != size:  # the teacher's resolution: each model sees the same view at its own size
        larger = load_data(cfg, big)
        if not np.array_equal(larger.train.labels, data.train.labels):  # a bug, not the user's
            raise RuntimeError("the training split differs between its two decoded sizes")
        log.info(
            "training images decoded at %d px, the teacher's input (the student's: %d)", big, size
        )
    else:
        larger = data
    pool, extra = training_pool(cfg, larger, big)
    specs = tasks_lib.resolve((), data.class_names)
    d = cfg.distill
    with strategy.scope():
        tm = model_lib.build_for(cfg, data.num_classes, size, extra_augment)
        regularize.attach_settings(tm, cfg.regularization, RunState(out).dir)
        model = teacher.load_model() if d.alpha < 1 else None  # alpha 1: labels alone
        trainer = Distiller(tm, model, d.temperature, d.alpha, cfg.label_smoothing)
    steps = math.ceil(len(pool) / cfg.batch_size)
    n = backbones.num_blocks(cfg.backbone)
    stages = [
        (st, p)
        for i, p in enumerate(cfg.phases)
        for st in freeze.stages(p, i, cfg.freeze_blocks, n)
    ]
    run = Distillation(cfg, tm, trainer, pool, data, strategy, steps, size, out, big)
    history = [_fit_stage(run, stage, phase) for stage, phase in stages]
    metrics = validate.evaluate(tm, cfg, data, None, specs, size)
    metrics["distill"] = {
        "teacher": str(teacher.path),
        "teacher_recipe": teacher.config.get("recipe"),
        "teacher_backbone": teacher.config.get("backbone"),
        "teacher_val_accuracy": teacher.val_accuracy,
        "temperature": d.temperature,
        "alpha": d.alpha,
        "unlabelled_images": extra,
    }
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    log.info(
        "student val_accuracy %.4f, teacher %.4f", metrics["val_accuracy"], teacher.val_accuracy
    )
    return RunResult(
        metrics,
        history,
        time.perf_counter() - t0,
        tm,
        data.report(),
        None if out is None else str(out),
        data=data,
    )


@dataclass
class Distillation:
    """What every stage of one distillation run shares, built once by :func:`run`.

    Attributes:
        cfg: The run's config.
        tm: The student.
        trainer: The :class:`~tfxfer.distill.step.Distiller` that trains it.
        pool: The training images (:func:`training_pool`).
        data: The teacher's data (its validation split validates).
        strategy: The ``tf.distribute`` strategy.
        steps: Steps per epoch.
        size: The student's input size in pixels.
        out: The output directory (None on a worker that is not the chief).
        pool_size: The size the training images are decoded at (:func:`pool_size`).
    """

    cfg: Config
    tm: Any
    trainer: Any
    pool: Any
    data: Any
    strategy: Any
    steps: int
    size: int
    out: Any = None
    pool_size: int = 0


def _fit_stage(run: Distillation, stage, phase) -> dict:
    cfg, tm, trainer, data = run.cfg, run.tm, run.trainer, run.data
    strategy, steps = run.strategy, run.steps
    start = time.perf_counter()
    with strategy.scope():
        freeze.apply_scope(tm.backbone, tm.family, stage.scope, stage.freeze_blocks, cfg.train_bn)
        freeze.fit_bn_momentum(tm.backbone, stage.epochs * steps)
        trainer.compile(  # always recompile after a trainable change
            optimizer=optim.for_phase(tm, phase, steps, stage.first_epoch)
        )
    info = freeze.summary(tm.backbone, tm.family)
    log.info(
        "phases.%d %r (%d of %d): trainable=%s, backbone params trainable=%s, BN %s, "
        "%d epochs of %d steps, %s lr=%g",
        stage.index,
        stage.label,
        stage.index + 1,
        len(cfg.phases),
        phase.trainable,
        f"{info['trainable_params']:,}",
        "trained" if info["bn_trainable"] else "frozen (inference mode)",
        stage.epochs,
        steps,
        phase.optimizer,
        phase.rates()[0],
    )
    k = data.num_classes
    train = pipeline.image_dataset(
        run.pool,
        k,
        run.pool_size or run.size,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed + stage.index + stage.first_epoch,
        augmenter=tm.augmenter,  # in the data: the teacher sees the student's view
    )
    val = pipeline.image_dataset(data.val, k, run.size, cfg.batch_size)
    before = sum(p.epochs for p in cfg.phases[: stage.index]) + stage.first_epoch
    callbacks = [c for c in (board.callback(run.out, stage.label, before),) if c is not None]
    prebuild.before_fit(trainer)  # its train_step has no compiled loss: the optimizer
    with filling.surfaced(data):  # a streamed split's error, as one line
        hist = trainer.fit(
            train,
            validation_data=val,
            epochs=stage.epochs,
            callbacks=callbacks,
            verbose=cfg.verbose,
        )
    return {
        "phase": stage.label,
        "trainable": phase.trainable,
        "cached_features": False,
        "seconds": round(time.perf_counter() - start, 2),
        "history": {key: [float(v) for v in vals] for key, vals in hist.history.items()},
    }
