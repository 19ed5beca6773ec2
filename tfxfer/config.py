"""The one configuration object shared by the CLI, Python and Colab.

A :class:`Config` is a frozen dataclass. It is built from a recipe's defaults, then a config file
(JSON or TOML, partial is fine), then CLI flags, then ``--set key=value`` overrides, in that order.
Unknown keys and wrong types are rejected with a :class:`~tfxfer.errors.UserError`. The resolved
config is written as ``config.json`` next to every artefact and loads back with
:meth:`Config.load`.

Example:
    >>> from tfxfer.config import Config, Phase
    >>> cfg = Config(data="hymenoptera", phases=(Phase(epochs=3),))
    >>> cfg = cfg.override(["phases.0.lr=3e-4", "head_dropout=0.3"])
    >>> cfg.phases[0].lr, cfg.head_dropout
    (0.0003, 0.3)
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from tfxfer.errors import UserError
from tfxfer.schema import assign, build, check_choice, check_min, coerce, merge, parse_value
from tfxfer.sections import (  # noqa: F401  (the sections are imported from here)
    OPTIMIZERS,
    SCHEDULES,
    TASK_LOSSES,
    TRAINABLE_SCOPES,
    Adapt,
    Auto,
    Phase,
    Prune,
    Task,
    ZeroShot,
)
from tfxfer.sections_augment import AUGMENT_PRESETS, Augment, Generative  # noqa: F401
from tfxfer.sections_text import SCOPE_PHASES, TEXT_SCOPES, Lora, Text  # noqa: F401

POOLINGS = ("avg", "max")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
CLASS_WEIGHTS = ("none", "balanced")
AUGMENT_PLACES = ("data", "model")
REGULARIZATIONS = ("none", "l2", "l2sp")
TTA_MODES = ("none", "flip", "crops")
EXPORT_FORMATS = ("litert-fp32", "litert-fp16", "litert-dynamic", "litert-int8")


@dataclass(frozen=True)
class Config:
    """Everything a run needs. Every field can be set from a file or with ``--set``.

    Attributes:
        recipe: Name of the recipe that produced the defaults (informational).
        data: A directory (``split/label/img`` or ``label/img``), ``tfds:NAME``, or a built-in
            name: ``hymenoptera``, ``cats_and_dogs_filtered``, ``fashion_mnist``, ``mnist``,
            ``mnist_m``, ``usps``.
        val_split: Fraction held out for validation when the data has no validation split.
        train_per_class: Keep at most this many training images per class (None: all).
        val_per_class: Keep at most this many validation images per class (None: all).
        manual_dir: TFDS ``manual_dir`` (files TFDS would otherwise download).
        backbone: A registered backbone name (see ``tfxfer.models.backbones.names()``).
        weights: ``"imagenet"``, a path to a weights file, or None (random init).
        image_size: Square input size in pixels; None uses the backbone's default.
        head_pooling: ``avg`` or ``max`` global pooling over the backbone's feature map.
        head_dropout: Dropout rate before each Dense layer of the head.
        head_hidden: Widths of optional hidden Dense layers (ReLU) in the head.
        augment: Augmentation (:class:`Augment`): the preset ``none``, ``light``, ``standard``
            or ``strong`` (``augment=none`` is short for ``augment.preset=none``), and
            ``synthetic_ratio``, GAN-generated training images (:mod:`tfxfer.generative`).
        augment_in: Where augmentation runs while training on images: ``data`` (in ``tf.data``,
            overlapping the training step; measured faster, see bench/README.md) or ``model``
            (inside the training graph). The saved and exported models are the same either way.
        mixup: MixUp alpha; 0 turns it off.
        cutmix: CutMix factor; 0 turns it off.
        label_smoothing: Label smoothing of the cross-entropy loss.
        class_weight: ``none``, or ``balanced`` (each class weighted by N / (K * n_class)).
        regularization: ``none`` (weight decay only, per phase), ``l2sp`` (Li et al. 2018:
            ``alpha/2 * ||w - w0||^2`` on the backbone, ``w0`` its weights when training started,
            plus ``beta/2 * ||w||^2`` on the head's kernels) or ``l2`` (the same with ``w0 = 0``).
        alpha: Strength of the backbone term of ``l2sp`` / ``l2``.
        beta: Strength of the head term of ``l2sp`` / ``l2``.
        tasks: Named output heads sharing the backbone (empty: one head, the dataset's classes).
            See :class:`Task`; MixUp, CutMix and ``class_weight`` are single-task only.
        train_bn: Train BatchNorm layers when the backbone is (partly) trainable. The default,
            False, keeps BN in inference mode, which is right for small batches and small data.
        freeze_blocks: Blocks frozen in ``partial`` phases; None uses the backbone's default.
        phases: The training phases, run in order.
        batch_size: Global batch size (split across replicas under a distribution strategy).
        lr_find_steps: Batches of the learning-rate finder's sweep, for phases with
            ``lr="auto"`` (:mod:`tfxfer.train.lr_find`).
        cache_features: Train head-only phases on backbone features computed once per image.
        feature_views: Augmented views per training image cached for head-only phases.
        seed: Seed for splits, shuffling, augmentation and initialisation.
        strategy: ``auto``, ``default``, ``mirrored``, ``multiworker`` or ``tpu``.
        data_service: ``grpc://host:port`` of a ``tf.data`` service dispatcher: training
            batches are then produced by its workers (:func:`tfxfer.data.pipeline.via_service`);
            empty (the default) produces them in this process.
        mixed_precision: Mixed precision, by device: float16 on GPUs, bfloat16 on TPUs and
            CPUs (:func:`tfxfer.train.distribute.precision_policy`); logits and loss stay float32.
        output: Output directory for the run.
        overwrite: Start afresh in an output directory that holds a different run (its
            checkpoints and artefacts are deleted first).
        resume: Continue the run in the output directory with changed rates: completed phases
            are kept, phases still to run may change their learning-rate keys
            (:data:`tfxfer.train.rundir.RESUMABLE_PHASE_KEYS`); the way on after a NaN stop.
        verbose: Keras fit verbosity (0, 1 or 2).
        top_k: Classes each prediction of the exported SavedModel lists (capped at the number
            of classes).
        tta: Test-time augmentation reported next to the plain validation accuracy: ``none``,
            ``flip`` or ``crops`` (:mod:`tfxfer.methods.tta`).
        export: Extra files written and measured after training: any of ``litert-fp32``,
            ``litert-fp16``, ``litert-dynamic``, ``litert-int8`` (:mod:`tfxfer.deploy.litert`).
        prune: Magnitude pruning during backbone fine-tuning (:class:`Prune`).
        adapt: Unsupervised domain adaptation to an unlabelled target (:class:`Adapt`); used by
            the ``domain_adapt`` recipe.
        zero_shot: Zero-shot classification by attributes (:class:`ZeroShot`); used by the
            ``zero_shot`` recipe.
        auto: Automatic recipe choice from measured signals (:class:`Auto`); used by the
            ``auto`` recipe.
        generative: The GAN trained when ``augment.synthetic_ratio`` > 0 and no
            ``augment.generator`` is given, and by ``python -m tfxfer.generative``
            (:class:`Generative`).
        text: The pretrained text encoder and its training scope (:class:`Text`); used by the
            ``text_classify`` recipe.
        lora: Low-rank adapters for ``text.scope=lora`` (:class:`Lora`).
    """

    recipe: str = "custom"
    data: str = "hymenoptera"
    val_split: float = 0.2
    train_per_class: int | None = None
    val_per_class: int | None = None
    manual_dir: str | None = None
    backbone: str = "MobileNetV2"
    weights: str | None = "imagenet"
    image_size: int | None = None
    head_pooling: str = "avg"
    head_dropout: float = 0.2
    head_hidden: tuple[int, ...] = ()
    augment: Augment = field(default_factory=Augment)
    augment_in: str = "data"
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    class_weight: str = "none"
    regularization: str = "none"
    alpha: float = 0.1
    beta: float = 0.01
    tasks: tuple[Task, ...] = ()
    train_bn: bool = False
    freeze_blocks: int | None = None
    phases: tuple[Phase, ...] = field(default_factory=lambda: (Phase(),))
    batch_size: int = 32
    lr_find_steps: int = 200
    cache_features: bool = True
    feature_views: int = 4
    seed: int = 0
    strategy: str = "auto"
    data_service: str = ""
    mixed_precision: bool = False
    output: str = "runs/tfxfer"
    overwrite: bool = False
    resume: bool = False
    verbose: int = 2
    top_k: int = 5
    tta: str = "none"
    export: tuple[str, ...] = ()
    prune: Prune = field(default_factory=Prune)
    adapt: Adapt = field(default_factory=Adapt)
    zero_shot: ZeroShot = field(default_factory=ZeroShot)
    auto: Auto = field(default_factory=Auto)
    generative: Generative = field(default_factory=Generative)
    text: Text = field(default_factory=Text)
    lora: Lora = field(default_factory=Lora)

    def __post_init__(self):
        for name, section in SECTIONS.items():  # Config(augment="none"), Config(prune={...})
            value = getattr(self, name)
            if not isinstance(value, section):
                object.__setattr__(self, name, coerce(value, section, name))
        if self.weights is not None and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        check_choice("head_pooling", self.head_pooling, POOLINGS)
        check_choice("strategy", self.strategy, STRATEGIES)
        if self.data_service and not re.fullmatch(r"grpc://[^/:\s]+:\d+", self.data_service):
            raise UserError(
                "data_service must be the address of a tf.data service dispatcher, "
                "grpc://host:port",
                got=self.data_service,
                fix="pass e.g. --set data_service=grpc://10.0.0.2:5050, or leave it "
                "empty to read data in this process",
            )
        check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        check_choice("augment_in", self.augment_in, AUGMENT_PLACES)
        check_choice("regularization", self.regularization, REGULARIZATIONS)
        check_min("alpha", self.alpha, 0.0)
        check_min("top_k", self.top_k, 1)
        check_choice("tta", self.tta, TTA_MODES)
        for fmt in self.export:
            check_choice("export", fmt, EXPORT_FORMATS)
        if self.prune.sparsity and all(p.trainable == "head" for p in self.phases):
            raise UserError(
                "prune.sparsity prunes while the backbone trains, and every phase of "
                "this config trains the head only",
                got=self.prune.sparsity,
                fix="add a phase with trainable partial/all/gradual (e.g. the "
                "large_similar or small_different recipe), or drop prune",
            )
        check_min("beta", self.beta, 0.0)
        self._check_tasks()
        if not 0.0 < self.val_split < 1.0:
            raise UserError(
                "val_split must be strictly between 0 and 1",
                got=self.val_split,
                fix="pass e.g. --set val_split=0.2",
            )
        if not 0.0 <= self.head_dropout < 1.0:
            raise UserError(
                "head_dropout must be in [0, 1)",
                got=self.head_dropout,
                fix="pass e.g. --set head_dropout=0.2",
            )
        check_min("batch_size", self.batch_size, 1)
        check_min("lr_find_steps", self.lr_find_steps, 10)
        check_min("feature_views", self.feature_views, 1)
        check_min("train_per_class", self.train_per_class, 1)
        check_min("val_per_class", self.val_per_class, 1)
        check_min("freeze_blocks", self.freeze_blocks, 0)
        check_min("seed", self.seed, 0)  # numpy's and Keras's generators take seeds >= 0
        if self.overwrite and self.resume:
            raise UserError(
                "overwrite (start afresh) and resume (keep completed phases) exclude each other",
                got="both",
                fix="pass only one of --overwrite/--resume",
            )
        check_min("mixup", self.mixup, 0.0)
        check_min("cutmix", self.cutmix, 0.0)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(
                "label_smoothing must be in [0, 1)",
                got=self.label_smoothing,
                fix="pass e.g. --set label_smoothing=0.1",
            )
        if not self.phases:
            raise UserError(
                "phases must hold at least one phase",
                got=self.phases,
                fix="use a recipe's defaults or give a [[phases]] table",
            )

    def _check_tasks(self) -> None:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise UserError("task names must be unique", got=names, fix="rename the duplicates")
        if self.tasks and (self.mixup or self.cutmix or self.class_weight != "none"):
            raise UserError(
                "MixUp, CutMix and class_weight work with a single task only",
                got=dict(
                    tasks=names,
                    mixup=self.mixup,
                    cutmix=self.cutmix,
                    class_weight=self.class_weight,
                ),
                fix="drop the tasks, or set mixup=0, cutmix=0, class_weight=none",
            )

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Config | None = None) -> Config:
        """Builds a config from a (possibly partial) dict, on top of ``base`` or the defaults."""
        merged = (base or cls()).to_dict()
        for key, value in data.items():
            if key not in merged:
                raise UserError(
                    "unknown config key",
                    valid=sorted(merged),
                    got=key,
                    fix="check the spelling against `--help` or the Config docs",
                )
            if key in SECTIONS and isinstance(value, dict) and isinstance(merged[key], dict):
                merged[key] = {**merged[key], **value}  # a partial table keeps the base's rest
            else:
                merged[key] = merge(merged[key], value)
        return build(cls, merged, "")

    @classmethod
    def load(cls, path: str | Path, base: Config | None = None) -> Config:
        """Loads a JSON or TOML config file (partial files fill in from ``base``)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(
                "config file must exist",
                got=str(path),
                fix="pass the path of a .json or .toml file to --config",
            )
        text = path.read_text()
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise UserError(
                f"config file {path} must be valid {path.suffix[1:].upper()}",
                got=str(exc),
                fix="correct the syntax at the position shown",
            ) from None
        return cls.from_dict(data, base)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def save(self, path: str | Path) -> None:
        """Writes the resolved config as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def replace(self, **changes: Any) -> Config:
        """Returns a copy with ``changes`` applied, validated like any other input."""
        return self.from_dict(changes, base=self)

    def override(self, assignments: list[str]) -> Config:
        """Applies ``key=value`` strings; keys may be dotted (``phases.1.lr=1e-5``).

        Values are parsed as JSON when they can be (numbers, true/false, null, lists), else kept
        as strings.
        """
        data = self.to_dict()
        for item in assignments:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise UserError(
                    "--set takes key=value", got=item, fix="write e.g. --set phases.0.lr=1e-4"
                )
            assign(data, key.strip().split("."), parse_value(raw.strip()), key)
        return build(type(self), data, "")

    def with_epochs(self, epochs: int) -> Config:
        """Sets the epoch count of every phase (what ``--epochs`` does)."""
        return self.replace(
            phases=[{**dataclasses.asdict(p), "epochs": epochs} for p in self.phases]
        )


SECTIONS = {
    "augment": Augment,
    "prune": Prune,
    "adapt": Adapt,
    "zero_shot": ZeroShot,
    "auto": Auto,
    "generative": Generative,
    "text": Text,
    "lora": Lora,
}  # the tables a Python caller may give as dicts
