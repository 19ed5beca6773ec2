"""The one training core every recipe calls: data, model, phases, evaluation, export.

:func:`run` takes a :class:`~tfxfer.config.Config` and

1. resolves the distribution strategy and refuses an output directory holding another run;
2. loads the data and prints its report (classes, counts, skipped images);
3. builds the model in the strategy's scope;
4. attaches the ``regularization`` (L2-SP's anchor is captured here, from the pretrained
   weights, or read back from the checkpoint on resume; :mod:`tfxfer.methods.regularize`);
5. runs each phase, split into stages (a ``gradual`` phase has one per unfreezing step,
   :func:`tfxfer.models.freeze.stages`; each run by :func:`tfxfer.train.stage.fit_stage`): sets the
   ``trainable`` scope, **recompiles** (a ``trainable`` change only takes effect after ``compile``)
   with per-block learning rates when the phase asks for them (:mod:`tfxfer.train.optim`), and
   fits, on cached backbone features when only the head trains (``cache_features``) or on images
   otherwise. Every completed epoch is checkpointed (:mod:`tfxfer.train.checkpoint`): re-running
   the same command after a crash skips completed phases and resumes the running one from its last
   completed epoch; a multi-worker run, whose checkpoints only the chief holds, starts over
   instead. A NaN/Inf loss stops the run with a message naming the phase and epoch;
6. evaluates every head on the validation split. Writing the artefacts is
   :func:`tfxfer.deploy.export.save_run`'s job (the recipes' ``run`` does both).

Example:
    >>> from tfxfer.config import Config, Phase
    >>> from tfxfer.train import loop as train  # doctest: +SKIP
    >>> result = train.run(Config(data="hymenoptera", phases=(Phase(epochs=2),)))  # doctest: +SKIP
    >>> result.metrics["val_accuracy"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Sequence

import keras

from tfxfer.config import Config, wise_ft_probe
from tfxfer.data import features, pipeline
from tfxfer.data import sources as data_lib
from tfxfer.data.shard import Shard
from tfxfer.errors import UserError
from tfxfer.generative import synthetic
from tfxfer.methods import prune as prune_lib
from tfxfer.methods import regularize, wise_ft
from tfxfer.methods import tasks as tasks_lib
from tfxfer.models import backbones, freeze
from tfxfer.models import model as model_lib
from tfxfer.train import distribute, inputs, lr_find, preflight, rundir, validate
from tfxfer.train.checkpoint import RunState
from tfxfer.train.result import RunResult
from tfxfer.train.stage import Training, fit_stage

log = logging.getLogger("tfxfer")


def _interpolate(tm, cfg: Config, data, specs, size: int, probe, held) -> dict:
    """Sets the model to WiSE-FT's interpolation (:mod:`tfxfer.methods.wise_ft`), alpha set or
    chosen on the ``held`` training images, and returns what it reports: alpha, the probe
    phase, the validation accuracy of both ends, and the held-out scores of every alpha tried."""
    fine_tuned = wise_ft.snapshot(tm.model)
    report = {}
    alpha = cfg.wise_ft
    if alpha == "auto":
        ds = pipeline.image_dataset(held, data.num_classes, size, cfg.batch_size)
        images = ds.map(lambda x, y: x)
        alpha, report["holdout"] = wise_ft.choose_on(
            tm.model, probe, fine_tuned, held.labels, lambda m: m.predict(images, verbose=0)
        )
        report["chosen_on"] = f"{len(held)} training images held out (they trained nothing)"
    accuracy = {}
    for end, weights in (("probe", probe), ("fine_tuned", fine_tuned)):
        wise_ft.apply(tm.model, weights, 0.0)  # all of `weights`
        accuracy[end] = validate.evaluate(tm, cfg, data, None, specs, size)["val_accuracy"]
    wise_ft.apply(tm.model, probe, alpha)  # from the fine-tuned end, set back just above
    probe_phase = cfg.phases[wise_ft_probe(cfg.phases)].name
    log.info(
        "WiSE-FT alpha %g%s between phase %r (validation accuracy %.4f) and the fine-tuned "
        "model (%.4f)",
        alpha,
        " (chosen on held-out training images)" if cfg.wise_ft == "auto" else "",
        probe_phase,
        accuracy["probe"],
        accuracy["fine_tuned"],
    )
    return {
        "alpha": alpha,
        "probe_phase": probe_phase,
        "val_accuracy_probe": accuracy["probe"],
        "val_accuracy_fine_tuned": accuracy["fine_tuned"],
        **report,
    }


def load_data(cfg: Config, size: int, shard: Shard = Shard()):
    """The run's :class:`~tfxfer.data.sources.ImageData`, decoded at ``size`` (this worker's
    share of it under multi-worker training, :mod:`tfxfer.data.shard`)."""
    return data_lib.load(
        cfg.data,
        size,
        val_split=cfg.val_split,
        seed=cfg.seed,
        train_per_class=cfg.train_per_class,
        val_per_class=cfg.val_per_class,
        manual_dir=cfg.manual_dir,
        shard=shard,
    )


def start(cfg: Config, batch: str = "global batch"):
    """Seeds, the input size, the strategy and the dtype policy of a run, logged; returns
    ``(size, strategy)``. ``batch`` names what ``batch_size`` counts in the log line."""
    keras.utils.set_random_seed(cfg.seed)
    size = backbones.resolve_size(cfg.backbone, cfg.image_size)
    strategy, why = distribute.resolve(cfg.strategy)
    # Set both ways: a policy left by an earlier run in the same process (Colab) must not leak.
    policy, policy_why = distribute.precision_policy(cfg.mixed_precision, strategy)
    keras.mixed_precision.set_global_policy(policy)
    log.info(
        "strategy: %s (%s), %d replica(s), %s %d, dtype policy %s (%s)",
        type(strategy).__name__,
        why,
        strategy.num_replicas_in_sync,
        batch,
        cfg.batch_size,
        policy,
        policy_why,
    )
    return size, strategy


def run(
    cfg: Config,
    extra_augment: Sequence[keras.layers.Layer] = (),
    data=None,
    find_only: int | None = None,
) -> RunResult:
    """Trains and evaluates a whole recipe from a config; see the module docstring.

    Args:
        cfg: The resolved configuration.
        extra_augment: Extra Keras augmentation layers (e.g. keras-cv) appended to the preset.
        data: The :class:`~tfxfer.data.sources.ImageData` of ``cfg``, when the caller has
            already read it (the ``auto`` recipe); None reads it.
        find_only: Index of a phase with ``lr="auto"``: stop after the learning-rate finder's
            sweep of it (``tfxfer lr-find``); the phases before it train as usual. The
            result's ``metrics["lr_find"]`` then holds the sweep.

    Returns:
        A :class:`RunResult`; pass it to :func:`tfxfer.deploy.export.save_run` to write the
        artefacts.
    """
    t0 = time.perf_counter()
    size, strategy = start(cfg)
    synthetic.check(cfg, distribute.num_workers(strategy))  # also generative.* without a ratio
    with rundir.claim(cfg, distribute.is_chief(strategy)) as out:  # export.save_run releases
        return _run_locked(cfg, out, strategy, size, extra_augment, t0, data, find_only)


def _run_locked(
    cfg: Config,
    out,
    strategy,
    size: int,
    extra_augment,
    t0: float,
    data=None,
    find_only: int | None = None,
) -> RunResult:
    if out is not None and distribute.num_workers(strategy) > 1 and (out / "checkpoints").exists():
        # Only the chief holds checkpoints: resuming there alone would send the workers down
        # different paths and their collectives would fail. A multi-worker run starts over.
        log.warning("multi-worker run: not resuming; discarding %s", out / "checkpoints")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    state = RunState(out)
    shard = distribute.shard_of(strategy)
    if data is None:
        data = load_data(cfg, size, shard)
    elif not shard.whole and data.workers[1] == 1:  # read whole by the caller (auto): keep a share
        data = data_lib.take_shard(data, shard)
    held = None  # wise_ft=auto: training images that choose alpha and train nothing
    if cfg.wise_ft == "auto":
        if distribute.num_workers(strategy) > 1:
            raise UserError(
                "wise_ft=auto chooses alpha on one worker's held-out images, and this run "
                "has several workers",
                got=distribute.num_workers(strategy),
                fix="set alpha yourself (e.g. --set wise_ft=0.5)",
            )
        data, held = wise_ft.split_data(data, cfg.wise_ft_holdout, cfg.seed)
        log.info("wise_ft=auto: %d training images held out to choose alpha", len(held))
    if cfg.augment.synthetic_ratio:  # the GAN sees data.train only; data.val stays as read
        data = synthetic.extend(cfg, data, out, size)
        keras.utils.set_random_seed(cfg.seed)  # the classifier starts as it would without it
    log.info("%s", data.describe())
    preflight.warn_batch(cfg.batch_size, len(data.train))
    specs = tasks_lib.resolve(cfg.tasks, data.class_names)
    with strategy.scope():
        heads = {s.name: s.num_classes for s in specs} if cfg.tasks else None
        tm = model_lib.build_for(cfg, data.num_classes, size, extra_augment, heads)
        regularize.attach_settings(tm, cfg.regularization, state.dir)
    history, cache = [], None
    n = backbones.num_blocks(cfg.backbone)
    stages = [
        st for i, p in enumerate(cfg.phases) for st in freeze.stages(p, i, cfg.freeze_blocks, n)
    ]
    mixing = cfg.mixup > 0 or cfg.cutmix > 0  # image batches then drop the remainder
    batch = inputs.per_worker_batch(cfg.batch_size, shard)
    steps = len(data.train) // batch if mixing else math.ceil(len(data.train) / batch)
    pruning = prune_lib.plan(stages, max(1, steps))
    found = lr_find.load(state.dir)  # sweeps of lr="auto" phases, kept across a resume
    training = Training(cfg, tm, data, strategy, state, specs, shard, pruning, found, find_only)
    probe_at = None if cfg.wise_ft is None else wise_ft_probe(cfg.phases)
    probe = None  # WiSE-FT's probe end: every variable after that phase
    for stage in stages:
        phase = cfg.phases[stage.index]
        start = time.perf_counter()
        done = state.completed(stage.key)
        if done is not None:
            state.restore_completed(tm.model, stage.key)
            log.info("phase %r was completed by an earlier run: weights restored", stage.label)
            history.append(done)
            cache = None
            if stage.index == probe_at:
                probe = wise_ft.snapshot(tm.model)
            continue
        use_cache = stage.scope == "head" and cfg.cache_features
        if use_cache and cache is None:
            cache = features.extract(tm, data, cfg.feature_views, size, shard)
        hist = fit_stage(training, stage, cache if use_cache else None)
        if hist is None:  # find_only: the sweep is done, nothing more trains
            return RunResult(
                {"lr_find": found[stage.index], "lr_find_phase": stage.index},
                history,
                time.perf_counter() - t0,
                tm,
                data.report(),
                None if out is None else str(out),
                data=data,
            )
        if not use_cache:
            cache = None  # the backbone may have changed: cached features are stale
        record = {
            "phase": stage.label,
            "trainable": phase.trainable,
            "cached_features": use_cache,
            "seconds": round(time.perf_counter() - start, 2),
            "history": hist,
        }
        if phase.lr == "auto":
            record["lr_found"] = found[stage.index]["lr"]
        state.mark_completed(tm.model, stage.key, record)
        history.append(record)
        if stage.index == probe_at:
            probe = wise_ft.snapshot(tm.model)
    ends = None
    if probe is not None:
        ends, cache = _interpolate(tm, cfg, data, specs, size, probe, held), None
    metrics = validate.evaluate(tm, cfg, data, cache, specs, size)
    if ends is not None:
        metrics["wise_ft"] = ends
    if cfg.prune.sparsity:
        metrics["prune"] = {"target": cfg.prune.sparsity, **prune_lib.report(tm.model)}
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    return RunResult(
        metrics,
        history,
        time.perf_counter() - t0,
        tm,
        data.report(),
        None if out is None else str(out),
        data=data,
    )
