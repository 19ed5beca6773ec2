"""The ``auto`` recipe's plan: measure the data, choose a scenario and say why.

**Signals** (:func:`measure`), from one inference pass of the frozen, pretrained backbone over a
stratified probe of ``auto.probe_images`` training images at the run's input size:

- *images per class*: the median of the training split's class counts (the whole split);
- *LogME* (:mod:`tfxfer.auto.logme`) of the average-pooled features against the labels:
  how well a linear model on frozen features fits them (higher: better);
- *BatchNorm-statistics distance* (:mod:`tfxfer.auto.bn_distance`): how far the images
  drive the backbone's activations from the ImageNet statistics its BatchNorm layers hold,
  without labels (0: exactly as ImageNet did).

**Decision** (:func:`decide`), with the thresholds of :class:`tfxfer.config.Auto`:

| images per class | distance | recipe | frozen blocks |
|---|---|---|---|
| < ``large_per_class`` | <= ``similar_distance`` | ``small_similar`` | all 5 (head only) |
| < ``large_per_class`` | > ``similar_distance`` | ``small_different`` | the first k (registry) |
| >= ``large_per_class`` | <= ``similar_distance`` | ``large_similar`` | none (after a warm-up) |
| >= ``large_per_class`` | > ``similar_distance`` | ``large_different`` | none, BN trained |

A backbone without BatchNorm statistics (ConvNeXt) is judged similar when LogME >=
``similar_logme``. The frozen blocks and learning rates are the chosen recipe's hand-set,
benchmarked ones, or the learning-rate finder's (``auto.lr_find``). The plan is printed with
every measured value and the reason for each choice, written to ``plan.json`` in the output
directory, and the chosen recipe's config runs (:mod:`tfxfer.auto.train`).

Example:
    >>> from tfxfer.config import Auto
    >>> signals = Signals(per_class=120, min_per_class=114, max_per_class=126, num_classes=2,
    ...                   logme=0.9, distance=0.4, probe_images=244, image_size=224,
    ...                   seconds=3.0)
    >>> decide(signals, Auto(large_per_class=500, similar_distance=1.0), "MobileNetV2")[0]
    'small_similar'
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from tfxfer.auto import bn_distance, logme
from tfxfer.config import SECTIONS, Config
from tfxfer.data import pipeline
from tfxfer.errors import UserError
from tfxfer.models import backbones
from tfxfer.models.model import Preprocess

log = logging.getLogger("tfxfer")

SCENARIOS = {
    (True, True): "small_similar",
    (True, False): "small_different",
    (False, True): "large_similar",
    (False, False): "large_different",
}
# Keys that describe the data and the run rather than the recipe: always the user's.
CARRIED = (
    "data",
    "val_split",
    "train_per_class",
    "val_per_class",
    "manual_dir",
    "backbone",
    "weights",
    "image_size",
    "seed",
    "output",
)
PROBE_BATCH = 32


@dataclass(frozen=True)
class Signals:
    """What :func:`measure` found (``distance`` is None for a backbone without BatchNorm)."""

    per_class: float
    min_per_class: int
    max_per_class: int
    num_classes: int
    logme: float
    distance: float | None
    probe_images: int
    image_size: int
    seconds: float


@dataclass
class Plan:
    """The chosen recipe, its config, the signals and the reason for each choice."""

    recipe: str
    signals: Signals
    reasons: list[str]
    config: Config
    thresholds: dict
    compare: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "recipe": self.recipe,
            "signals": dataclasses.asdict(self.signals),
            "thresholds": self.thresholds,
            "reasons": self.reasons,
            "compare": self.compare,
            "config": self.config.to_dict(),
        }

    def summary(self) -> str:
        s = self.signals
        lines = [
            f"plan: {self.recipe}  (measured in {s.seconds:.1f}s on {s.probe_images} "
            f"training images at {s.image_size}px)"
        ]
        lines += [f"  {reason}" for reason in self.reasons]
        return "\n".join(lines)


def probe_indices(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Up to ``limit`` training indices (at least one per class), ``limit // classes`` from
    every class that has them."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, limit // len(classes))
    picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(picked))


def measure(cfg: Config, data, size: int, net=None) -> Signals:
    """Images per class, LogME and the BatchNorm distance of ``data`` (see the module doc);
    ``net``: a backbone to measure instead of ``cfg``'s (the benchmark's random baseline)."""
    t0 = time.perf_counter()
    labels = np.asarray(data.train.labels)
    counts = np.bincount(labels, minlength=data.num_classes)
    net = net or backbones.build(cfg.backbone, size, cfg.weights)
    scale = Preprocess(backbones.get(cfg.backbone).preprocess)
    probe = bn_distance.StatsProbe(net)
    idx = probe_indices(labels, cfg.auto.probe_images, cfg.seed)
    features = []
    images = data.train.rows(idx)  # one read (a streamed split reads its shards once)
    for start in range(0, len(idx), PROBE_BATCH):
        rows = idx[start : start + PROBE_BATCH]
        batch = images[start : start + PROBE_BATCH]
        if len(rows) < PROBE_BATCH:  # one batch shape, one trace of the backbone
            pad = np.zeros((PROBE_BATCH - len(rows),) + batch.shape[1:], batch.dtype)
            batch = np.concatenate([batch, pad])
        x = scale(pipeline.to_model_input(tf.constant(batch), size))
        features.append(probe.update(x, len(rows)))
    score = logme.logme(np.concatenate(features), labels[idx])
    distance = probe.distance()
    return Signals(
        per_class=float(np.median(counts)),
        min_per_class=int(counts.min()),
        max_per_class=int(counts.max()),
        num_classes=data.num_classes,
        logme=round(score, 4),
        distance=None if distance is None else round(distance, 4),
        probe_images=len(idx),
        image_size=size,
        seconds=round(time.perf_counter() - t0, 2),
    )


def decide(signals: Signals, auto, family: str) -> tuple[str, list[str]]:
    """``(recipe, reasons)`` from the signals and the thresholds of ``auto`` (a
    :class:`tfxfer.config.Auto`); see the table in the module docstring."""
    small = signals.per_class < auto.large_per_class
    reasons = [
        f"size: {signals.per_class:g} training images per class (median; "
        f"{signals.min_per_class}-{signals.max_per_class}, {signals.num_classes} classes) "
        f"{'<' if small else '>='} {auto.large_per_class:g} -> "
        f"{'small' if small else 'large'}"
    ]
    if signals.distance is not None:
        similar = signals.distance <= auto.similar_distance
        reasons.append(
            f"similarity: BatchNorm-statistics distance to ImageNet "
            f"{signals.distance:.3f} {'<=' if similar else '>'} "
            f"{auto.similar_distance:g} -> {'similar' if similar else 'different'}; "
            f"LogME {signals.logme:.3f}"
        )
    else:
        similar = signals.logme >= auto.similar_logme
        reasons.append(
            f"similarity: {family} has no BatchNorm statistics; LogME "
            f"{signals.logme:.3f} {'>=' if similar else '<'} {auto.similar_logme:g} "
            f"-> {'similar' if similar else 'different'}"
        )
    return SCENARIOS[(small, similar)], reasons


def what_trains(cfg: Config) -> list[str]:
    """The lines of a plan that say what the chosen config trains, phase by phase."""
    k = (
        backbones.get(cfg.backbone).default_freeze
        if cfg.freeze_blocks is None
        else cfg.freeze_blocks
    )
    scope = {
        "head": "backbone frozen (5 of 5 blocks), head trained",
        "partial": f"blocks 1-{k} frozen, {k + 1}-5 trained",
        "all": "no block frozen",
        "gradual": "unfrozen top down",
    }
    lines = []
    for i, p in enumerate(cfg.phases):
        rate = "lr found by the finder" if p.lr == "auto" else f"lr {p.lr:g}"
        lines.append(
            f"phase {i} {p.name!r}: {scope[p.trainable]}"
            f"{', BN trained' if cfg.train_bn and p.trainable != 'head' else ''}; "
            f"{p.epochs} epochs, {p.optimizer} {rate}, {p.schedule}"
        )
    return lines


def chosen_config(cfg: Config, base: Config) -> Config:
    """``base`` (a recipe's defaults) with the user's data and run keys from ``cfg``: those of
    :data:`CARRIED` always, any other key where ``cfg`` differs from :class:`Config`'s default."""
    defaults, mine = Config().to_dict(), cfg.to_dict()
    keep = {
        k: mine[k]
        for k in mine
        if k not in ("recipe", "phases", "auto") and (k in CARRIED or mine[k] != defaults[k])
    }
    for k in set(keep) & set(SECTIONS):  # of a table, only the keys the user changed
        keep[k] = {sub: v for sub, v in keep[k].items() if v != defaults[k][sub]}
    chosen = Config.from_dict(keep, base=base)
    phases = [dataclasses.replace(p, epochs=cfg.auto.epochs or p.epochs) for p in chosen.phases]
    if cfg.auto.lr_find:
        phases = [dataclasses.replace(p, lr="auto", lr_range=()) for p in phases]
    return chosen.replace(phases=tuple(phases))


def check(cfg: Config) -> None:
    """Refuses what the ``auto`` recipe cannot plan, each with a one-line fix."""
    if cfg.weights is None:
        raise UserError(
            "auto measures how well pretrained features fit the data, so weights "
            "must be pretrained",
            valid=("imagenet", "a weights file"),
            got="weights=none",
            fix="drop --weights none, or pick a recipe yourself (e.g. "
            "large_different --weights none)",
        )
    if cfg.phases != Config().phases:
        default = dataclasses.asdict(Config().phases[0])
        changed = sorted(
            {
                f"phases.{i}.{k}"
                for i, p in enumerate(cfg.phases)
                for k, v in dataclasses.asdict(p).items()
                if default.get(k) != v
            }
        )
        raise UserError(
            "auto chooses the phases itself; --epochs and phases.* do not apply",
            got=", ".join(changed) or f"{len(cfg.phases)} phases",
            fix="use --set auto.epochs=N, --set auto.lr_find=true, or run the "
            "chosen recipe yourself with its plan.json config",
        )
    if cfg.adapt != Config().adapt or cfg.zero_shot != Config().zero_shot:
        raise UserError(
            "auto chooses among the four scenario recipes; adapt.* and "
            "zero_shot.* belong to domain_adapt and zero_shot",
            got=cfg.adapt if cfg.adapt != Config().adapt else cfg.zero_shot,
            fix="run tfxfer domain_adapt or tfxfer zero_shot instead",
        )
    if cfg.strategy in ("multiworker", "tpu"):
        raise UserError(
            "auto measures (and with compare, trains several models) in one process "
            "before it trains",
            valid=("auto", "default", "mirrored"),
            got=cfg.strategy,
            fix=f"plan with --dry-run, then run the chosen recipe with --strategy {cfg.strategy}",
        )


def plan(cfg: Config, data, size: int, candidates: dict[str, Config]) -> Plan:
    """Measures the signals of ``data`` and decides; see the module docstring."""
    signals = measure(cfg, data, size)
    recipe, reasons = decide(signals, cfg.auto, cfg.backbone)
    chosen = chosen_config(cfg, candidates[recipe])
    thresholds = {
        k: getattr(cfg.auto, k) for k in ("large_per_class", "similar_distance", "similar_logme")
    }
    return Plan(
        recipe, signals, reasons + [f"recipe: {recipe}"] + what_trains(chosen), chosen, thresholds
    )
