"""The training core of unsupervised domain adaptation: labelled source, unlabelled target.

:func:`run` is :func:`tfxfer.train.loop.run`'s counterpart for the ``domain_adapt`` recipe. It
uses the same pieces (strategy, output directory, data loading, model builder, freezing scopes,
per-block optimisers, evaluation, export) and trains with
:class:`tfxfer.adapt.dann.DomainAdversarial`:

1. reads the source (``data``) and the target (``adapt.target``; :mod:`tfxfer.adapt.domains`);
2. builds the transfer model and a domain classifier in the strategy's scope;
3. for each phase: sets its ``trainable`` scope, recompiles, and fits on pairs of equal-sized
   source and target batches (an epoch is one pass over the source; the target repeats). The
   reversal weight's progress ``p`` runs from 0 to 1 over all phases' steps;
4. after every epoch it reports the accuracy on the source's validation split, on the labelled
   target data (when there is some), and the domain classifier's accuracy on held-out source
   and target images (0.5: the domains are indistinguishable), into the history and the log;
5. evaluates the classifier on the source's validation split, adds the target's metrics under
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

from tfxfer.adapt import dann, domains
from tfxfer.adapt.report import EpochReport
from tfxfer.config import Config, adapt_terms
from tfxfer.data import augment as augment_lib
from tfxfer.data import pipeline
from tfxfer.data.splits import Split
from tfxfer.errors import UserError
from tfxfer.generative import synthetic
from tfxfer.methods import regularize
from tfxfer.methods import tasks as tasks_lib
from tfxfer.models import backbones, freeze
from tfxfer.models import model as model_lib
from tfxfer.train import distribute, optim, prebuild, rundir, validate
from tfxfer.train.checkpoint import RunState
from tfxfer.train.loop import load_data, start
from tfxfer.train.result import DeployData, RunResult

log = logging.getLogger("tfxfer")


def check(cfg: Config) -> None:
    """Refuses configs that domain adaptation cannot run, with the rule and the fix."""
    synthetic.refuse(cfg)
    if not cfg.adapt.target:
        raise UserError(
            "domain adaptation needs a target domain",
            got="adapt.target unset",
            fix="pass --target DATA (a built-in name, a labelled folder, or a "
            "folder of unlabelled images)",
        )
    if cfg.tasks or cfg.mixup or cfg.cutmix or cfg.class_weight != "none":
        raise UserError(
            "domain adaptation trains one label head, without MixUp, CutMix or class weights",
            got=dict(
                tasks=len(cfg.tasks),
                mixup=cfg.mixup,
                cutmix=cfg.cutmix,
                class_weight=cfg.class_weight,
            ),
            fix="drop tasks, and set mixup=0, cutmix=0, class_weight=none",
        )
    auto = [i for i, p in enumerate(cfg.phases) if p.lr == "auto"]
    if auto:
        raise UserError(
            "the learning-rate finder (lr=auto) runs in the scenario recipes, not in "
            "domain adaptation",
            got=[f"phases.{i}.lr=auto" for i in auto],
            fix="give a number, e.g. --set phases.0.lr=0.01 (find one with tfxfer "
            "lr-find on the source data)",
        )
    if cfg.prune.sparsity:
        raise UserError(
            "pruning is not available in domain adaptation",
            got=cfg.prune.sparsity,
            fix="set prune.sparsity=0 (prune the adapted model with another recipe)",
        )
    if any(p.early_stopping for p in cfg.phases):
        raise UserError(
            "early_stopping is not available in domain adaptation: the source's "
            "validation loss does not tell when the target is best",
            got=[p.early_stopping for p in cfg.phases],
            fix="set phases.N.early_stopping=0 and choose the epochs",
        )
    adversary = adapt_terms(cfg.adapt.method).adversary
    if adversary is not None and all(p.trainable == "head" for p in cfg.phases):
        raise UserError(
            f"{adversary.upper()} adapts the features, and every phase trains the head only",
            got=[p.trainable for p in cfg.phases],
            fix="set phases.0.trainable=all (or partial), or --method source_only",
        )


def run(cfg: Config, extra_augment=()) -> RunResult:
    """Adapts a transfer model from ``cfg.data`` (labelled) to ``cfg.adapt.target``."""
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
        st for i, p in enumerate(cfg.phases) for st in freeze.stages(p, i, cfg.freeze_blocks, n)
    ]
    with strategy.scope():
        tm = model_lib.build(
            cfg.backbone,
            data.num_classes,
            size,
            cfg.weights,
            cfg.augment.preset,
            extra_augment,
            cfg.head_pooling,
            cfg.head_dropout,
            cfg.head_hidden,
            cfg.seed,
        )
        regularize.attach_settings(tm, cfg.regularization, RunState(out).dir)
        domain = dann.domain_classifier(cfg.adapt.domain_hidden, cfg.seed)
        trainer = dann.DomainAdversarial(
            tm,
            domain,
            sum(s.epochs for s in stages) * steps,
            cfg.adapt.method,
            cfg.adapt.gamma,
            cfg.adapt.weight,
            cfg.label_smoothing,
            cfg.adapt.cdan_dim,
            cfg.adapt.mcc_weight,
            cfg.adapt.mcc_temperature,
            cfg.seed,
        )
    adaptation = Adaptation(cfg, tm, trainer, data, target, strategy, steps, size)
    history = [_fit_stage(adaptation, stage) for stage in stages]
    metrics = validate.evaluate(tm, cfg, data, None, specs, size)
    metrics["adapt"] = _target_metrics(cfg, history, target)
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
    """

    cfg: Config
    tm: Any
    trainer: Any
    data: Any
    target: Any
    strategy: Any
    steps: int
    size: int


def _fit_stage(adaptation: Adaptation, stage) -> dict:
    a = adaptation
    cfg, tm, trainer, data, target = a.cfg, a.tm, a.trainer, a.data, a.target
    strategy, steps, size = a.strategy, a.steps, a.size
    phase = cfg.phases[stage.index]
    start = time.perf_counter()
    with strategy.scope():
        freeze.apply_scope(tm.backbone, tm.family, stage.scope, stage.freeze_blocks, cfg.train_bn)
        freeze.fit_bn_momentum(tm.backbone, stage.epochs * steps)
        _, decay = phase.rates()
        trainer.compile(
            optimizer=optim.make_optimizer(
                phase,
                steps,
                optim.block_multipliers(tm.backbone, tm.family, decay),
                stage.first_epoch * steps,
            )
        )  # always recompile after a trainable change
    info = freeze.summary(tm.backbone, tm.family)
    log.info(
        "phases.%d %r (%d of %d): trainable=%s, backbone params trainable=%s, BN %s, "
        "%d epochs of %d steps, %s lr=%g schedule=%s",
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
        phase.schedule,
    )
    seed = cfg.seed + stage.index + stage.first_epoch
    source = pipeline.image_dataset(
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
    pairs = tf.data.Dataset.zip(
        (
            source,
            domains.target_batches(target.images, size, cfg.batch_size, target_seed, tm.augmenter),
        )
    )
    pairs = pairs.prefetch(pipeline.AUTOTUNE).with_options(pipeline.dataset_options())
    report = EpochReport(tm, trainer, data, target, size, cfg.batch_size, stage.label)
    prebuild.before_fit(trainer)  # its train_step has no compiled loss: the optimizer
    hist = trainer.fit(
        pairs, epochs=stage.epochs, steps_per_epoch=steps, callbacks=[report], verbose=cfg.verbose
    )
    return {
        "phase": stage.label,
        "trainable": phase.trainable,
        "cached_features": False,
        "seconds": round(time.perf_counter() - start, 2),
        "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()},
    }


def _target_metrics(cfg: Config, history: list[dict], target) -> dict:
    last = history[-1]["history"]
    m = {
        "method": cfg.adapt.method,
        "target": cfg.adapt.target,
        "target_val": None if target.val is None else target.val.source,
        "num_target_train": int(len(target.images)),
        "train_domain_accuracy": last["domain_accuracy"][-1],
        "lambda": last["lambda"][-1],
    }
    if "target_accuracy" in last:
        m.update(
            target_accuracy=last["target_accuracy"][-1],
            num_target_val=int(len(target.val.val)),
            val_domain_accuracy=last["val_domain_accuracy"][-1],
            target_accuracy_per_epoch=[a for h in history for a in h["history"]["target_accuracy"]],
        )
    return m
