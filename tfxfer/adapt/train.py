"""The training core of unsupervised domain adaptation: labelled source, unlabelled target.

:func:`run` is :func:`tfxfer.train.loop.run`'s counterpart for the ``domain_adapt`` recipe. It
uses the same pieces (strategy, output directory, data loading, model builder, freezing scopes,
per-block optimisers, evaluation, export) and trains with
:class:`tfxfer.adapt.dann.DomainAdversarial`:

1. chooses the network from the data when ``backbone`` is ``auto``
   (:mod:`tfxfer.adapt.network`), and refuses what it cannot run (:mod:`tfxfer.adapt.rules`);
2. reads the source (``data``) and the target (``adapt.target``; :mod:`tfxfer.adapt.domains`);
3. builds the transfer model and a domain classifier in the strategy's scope;
4. for each phase: sets its ``trainable`` scope, recompiles, and fits on pairs of equal-sized
   source and target batches (an epoch is one pass over the source; the target repeats). The
   reversal weight's progress ``p`` runs from 0 to 1 over all phases' steps; then, with
   ``adapt.self_train``, one self-training phase on target pseudo-labels chosen again before
   each of its epochs (:mod:`tfxfer.adapt.self_train`);
5. after every epoch it reports the accuracy on the source's validation split, on the labelled
   target data (when there is some), and the domain classifier's accuracy on held-out source
   and target images (0.5: the domains are indistinguishable), into the history and the log;
6. evaluates the classifier on the source's validation split, adds the target's metrics under
   ``metrics["adapt"]``, and returns a :class:`~tfxfer.train.result.RunResult` whose model is the
   plain classifier: the domain classifier is not part of what is saved or exported.

An interrupted adaptation run starts over when re-run (it writes no per-epoch checkpoints).

Example:
    >>> from tfxfer.recipes import domain_adapt  # doctest: +SKIP
    >>> result = domain_adapt.run(adapt={"target": "mnist_m"})  # doctest: +SKIP
    >>> result.metrics["adapt"]["target_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tfxfer.adapt import dann, domains, network, self_train
from tfxfer.adapt.report import EpochReport, target_metrics
from tfxfer.adapt.rules import check
from tfxfer.config import Config
from tfxfer.data import augment as augment_lib
from tfxfer.data import filling, pipeline
from tfxfer.data.splits import Split
from tfxfer.errors import UserError
from tfxfer.methods import regularize
from tfxfer.methods import tasks as tasks_lib
from tfxfer.models import backbones, freeze
from tfxfer.models import model as model_lib
from tfxfer.train import board, distribute, optim, prebuild, rundir, validate
from tfxfer.train.checkpoint import RunState
from tfxfer.train.loop import load_data, start
from tfxfer.train.result import DeployData, RunResult

log = logging.getLogger("tfxfer")


def run(cfg: Config, extra_augment=()) -> RunResult:
    """Adapts a transfer model from ``cfg.data`` (labelled) to ``cfg.adapt.target``; a
    ``backbone`` of ``auto`` is chosen from the data first (:mod:`tfxfer.adapt.network`; the
    recipe's runner has already done so, and logged the plan)."""
    cfg, _ = network.choose(cfg)
    check(cfg)
    t0 = time.perf_counter()
    size, strategy = start(cfg, batch="each step: as many source as target images,")
    log.info("adaptation method: %s", cfg.adapt.method)
    with rundir.claim(cfg, distribute.is_chief(strategy)) as out:
        return _run_locked(cfg, out, strategy, size, extra_augment, t0)


def _run_locked(cfg: Config, out, strategy, size: int, extra_augment, t0: float) -> RunResult:
    data = load_data(cfg, size)
    log.info("%s", data.describe())
    target = domains.load_target(
        cfg.adapt.target, cfg.adapt.target_val, size, data.class_names, cfg.seed, cfg.val_split
    )
    log.info("%s", target.describe())
    specs = tasks_lib.resolve((), data.class_names)
    steps = len(data.train) // cfg.batch_size
    if steps < 1:
        raise UserError(
            "the source must hold at least one batch of images",
            got=len(data.train),
            fix=f"lower --batch-size (now {cfg.batch_size})",
        )
    n = backbones.num_blocks(cfg.backbone)
    stages = [
        (st, p)
        for i, p in enumerate(cfg.phases)
        for st in freeze.stages(p, i, cfg.freeze_blocks, n)
    ]
    adapting = sum(st.epochs for st, _ in stages) * steps  # lambda's progress: 0 to 1 over these
    if cfg.adapt.self_train:
        last, phase = stages[-1][0], self_train.phase(cfg)
        stages.append(
            (
                freeze.Stage(
                    str(len(cfg.phases)),
                    len(cfg.phases),
                    last.scope,
                    last.freeze_blocks,
                    phase.epochs,
                    0,
                    phase.name,
                ),
                phase,
            )
        )
    with strategy.scope():
        tm = model_lib.build_for(cfg, data.num_classes, size, extra_augment)
        regularize.attach_settings(tm, cfg.regularization, RunState(out).dir)
        domain = dann.domain_classifier(cfg.adapt.domain_hidden, cfg.seed)
        trainer = dann.DomainAdversarial(
            tm,
            domain,
            adapting,
            cfg.adapt.method,
            cfg.adapt.gamma,
            cfg.adapt.weight,
            cfg.label_smoothing,
            cfg.adapt.cdan_dim,
            cfg.adapt.mcc_weight,
            cfg.adapt.mcc_temperature,
            cfg.seed,
            pseudo_weight=cfg.adapt.self_train_weight if cfg.adapt.self_train else 0.0,
        )
    adaptation = Adaptation(cfg, tm, trainer, data, target, strategy, steps, size, out)
    history = [_fit_stage(adaptation, stage, phase) for stage, phase in stages]
    metrics = validate.evaluate(tm, cfg, data, None, specs, size)
    metrics["adapt"] = target_metrics(cfg, history, target)
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return RunResult(
        metrics,
        history,
        time.perf_counter() - t0,
        tm,
        data.report(),
        None if out is None else str(out),
        data=data,
        deploy=deploy_data(data, target, metrics),
    )


def deploy_data(data, target: domains.Target, metrics: dict) -> DeployData:
    """LiteRT files of an adapted model serve the target: int8 is calibrated on target training
    images (their labels are never read), and every file is measured on the labelled target
    data, or on the source's validation split when there is none."""
    unlabelled = Split(target.images, np.zeros(len(target.images), np.int32))
    if target.val is None:
        return DeployData(
            unlabelled,
            data.val,
            metrics["val_accuracy"],
            f"target training images of {target.source} (labels unused)",
            "source validation split (no labelled target data)",
        )
    return DeployData(
        unlabelled,
        target.val.val,
        metrics["adapt"]["target_accuracy"],
        f"target training images of {target.source} (labels unused)",
        f"labelled target data of {target.val.source}",
    )


def reload_deploy_data(cfg: Config, size: int, metrics: dict) -> DeployData:
    """:func:`deploy_data` of a finished run, read again from its config (``tfxfer export``)."""
    data = load_data(cfg, size)
    target = domains.load_target(
        cfg.adapt.target, cfg.adapt.target_val, size, data.class_names, cfg.seed, cfg.val_split
    )
    return deploy_data(data, target, metrics)


@dataclass
class Adaptation:
    """What every stage of one adaptation run shares, built once by :func:`run`.

    Attributes:
        cfg: The run's config.
        tm: The transfer model.
        trainer: The :class:`~tfxfer.adapt.dann.DomainAdversarial` model that trains it.
        data: The labelled source.
        target: The target domain (:class:`~tfxfer.adapt.domains.Target`).
        strategy: The ``tf.distribute`` strategy.
        steps: Steps per epoch (source batches).
        size: The input size in pixels.
        out: The output directory (None on a worker that is not the chief).
    """

    cfg: Config
    tm: Any
    trainer: Any
    data: Any
    target: Any
    strategy: Any
    steps: int
    size: int
    out: Any = None


def _fit_stage(adaptation: Adaptation, stage, phase) -> dict:
    a = adaptation
    cfg, tm, trainer, data, target = a.cfg, a.tm, a.trainer, a.data, a.target
    strategy, steps, size = a.strategy, a.steps, a.size
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
        "%d epochs of %d steps, %s lr=%g schedule=%s",
        stage.index,
        stage.label,
        stage.index + 1,
        len(cfg.phases) + (1 if cfg.adapt.self_train else 0),
        phase.trainable,
        f"{info['trainable_params']:,}",
        "trained" if info["bn_trainable"] else "frozen (inference mode)",
        stage.epochs,
        steps,
        phase.optimizer,
        phase.rates()[0],
        phase.schedule,
    )
    seed = cfg.seed + stage.index + stage.first_epoch

    def source(seed):
        return pipeline.image_dataset(
            data.train,
            data.num_classes,
            size,
            cfg.batch_size,
            shuffle=True,
            seed=seed,
            augmenter=tm.augmenter,
            drop_remainder=True,
        ).repeat()

    target_seed = augment_lib.layer_seeds(seed, 1, stream="target")[0]
    report = EpochReport(tm, trainer, data, target, size, cfg.batch_size, stage.label)
    before = sum(p.epochs for p in cfg.phases[: stage.index]) + stage.first_epoch
    callbacks = [c for c in (report, board.callback(a.out, stage.label, before)) if c is not None]
    prebuild.before_fit(trainer)  # its train_step has no compiled loss: the optimizer
    entry = {
        "phase": stage.label,
        "trainable": phase.trainable,
        "cached_features": False,
    }
    if stage.index < len(cfg.phases):  # an adaptation phase
        stream = domains.target_batches(
            target.images, size, cfg.batch_size, target_seed, tm.augmenter
        )
        logs = _fit(a, source(seed), stream, callbacks, stage.epochs, 0).history
    else:  # self-training: one fit per epoch, the pseudo-labels chosen again before each
        # (and a new source order each: every fit starts its own iterator)
        logs, entry["pseudo_labels"] = {}, []
        for epoch in range(stage.epochs):
            probs = self_train.predict(tm, target.images, size)
            labels, keep = self_train.class_balanced(probs, cfg.adapt.self_train_fraction)
            entry["pseudo_labels"].append(self_train.summary(labels, keep, data.num_classes))
            log.info(
                "self-training epoch %d: %d of %d target images kept as pseudo-labels",
                epoch + 1,
                int(keep.sum()),
                len(keep),
            )
            stream = self_train.labelled_batches(
                target.images,
                labels,
                keep,
                data.num_classes,
                size,
                cfg.batch_size,
                target_seed + epoch,
                tm.augmenter,
            )
            for k, v in _fit(
                a, source(seed + epoch), stream, callbacks, epoch + 1, epoch
            ).history.items():
                logs.setdefault(k, []).extend(v)
    entry["seconds"] = round(time.perf_counter() - start, 2)
    entry["history"] = {k: [float(v) for v in vals] for k, vals in logs.items()}
    return entry


def _fit(a: Adaptation, source, target_stream, callbacks, epochs: int, initial_epoch: int):
    pairs = tf.data.Dataset.zip((source, target_stream))
    pairs = pairs.prefetch(pipeline.AUTOTUNE).with_options(pipeline.dataset_options())
    with filling.surfaced(a.data):  # a streamed split's error, as one line
        return a.trainer.fit(
            pairs,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=a.steps,
            callbacks=callbacks,  # the report first: TensorBoard writes what it adds
            verbose=a.cfg.verbose,
        )
