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
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfxfer.errors import UserError

TRAINABLE_SCOPES = ("head", "partial", "all")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")
AUGMENT_PRESETS = ("none", "light", "standard", "strong")
POOLINGS = ("avg", "max")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
CLASS_WEIGHTS = ("none", "balanced")
AUGMENT_PLACES = ("data", "model")


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{key} must be one of the supported values", valid=choices, got=value,
                        fix=f"set {key} to one of them")


def _check_min(key: str, value: float | None, minimum: float, strict: bool = False) -> None:
    if value is None:
        return
    bad = value <= minimum if strict else value < minimum
    if bad:
        op = ">" if strict else ">="
        raise UserError(f"{key} must be {op} {minimum}", got=value,
                        fix=f"pass a value {op} {minimum} for {key}")


@dataclass(frozen=True)
class Phase:
    """One stage of training: what is trainable, for how long, and how it is optimised.

    Attributes:
        name: Label used in logs, history and checkpoints.
        trainable: ``"head"`` (backbone frozen), ``"partial"`` (the first ``freeze_blocks`` blocks
            frozen, the rest trained) or ``"all"`` (whole backbone trained).
        epochs: Number of epochs (>= 1).
        optimizer: ``adam``, ``adamw``, ``sgd`` (with ``momentum``) or ``rmsprop``.
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay (adamw, sgd) .
        momentum: Momentum for sgd and rmsprop.
        schedule: ``constant`` or ``cosine`` (decays to 0 over the phase).
        early_stopping: Patience in epochs on validation loss; 0 turns it off. The best weights
            are restored when it triggers.
    """

    name: str = "head"
    trainable: str = "head"
    epochs: int = 5
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    early_stopping: int = 0

    def __post_init__(self):
        _check_choice("phase.trainable", self.trainable, TRAINABLE_SCOPES)
        _check_choice("phase.optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("phase.schedule", self.schedule, SCHEDULES)
        _check_min(f"epochs (phase {self.name!r})", self.epochs, 1)
        _check_min(f"lr (phase {self.name!r})", self.lr, 0.0)
        _check_min("weight_decay", self.weight_decay, 0.0)
        _check_min("early_stopping", self.early_stopping, 0)


@dataclass(frozen=True)
class Config:
    """Everything a run needs. Every field can be set from a file or with ``--set``.

    Attributes:
        recipe: Name of the recipe that produced the defaults (informational).
        data: A directory (``split/label/img`` or ``label/img``), ``tfds:NAME``, or a built-in
            name: ``hymenoptera``, ``cats_and_dogs_filtered``, ``fashion_mnist``.
        val_split: Fraction held out for validation when the data has no validation split.
        train_per_class: Keep at most this many training images per class (None: all).
        val_per_class: Keep at most this many validation images per class (None: all).
        manual_dir: TFDS ``manual_dir`` (files TFDS would otherwise download).
        backbone: A registered backbone name (see ``tfxfer.backbones.names()``).
        weights: ``"imagenet"``, a path to a weights file, or None (random init).
        image_size: Square input size in pixels; None uses the backbone's default.
        head_pooling: ``avg`` or ``max`` global pooling over the backbone's feature map.
        head_dropout: Dropout rate before each Dense layer of the head.
        head_hidden: Widths of optional hidden Dense layers (ReLU) in the head.
        augment: Augmentation preset: ``none``, ``light``, ``standard``, ``strong``.
        augment_in: Where augmentation runs while training on images: ``data`` (in ``tf.data``,
            overlapping the training step; measured faster, see bench/README.md) or ``model``
            (inside the training graph). The saved and exported models are the same either way.
        mixup: MixUp alpha; 0 turns it off.
        cutmix: CutMix factor; 0 turns it off.
        label_smoothing: Label smoothing of the cross-entropy loss.
        class_weight: ``none``, or ``balanced`` (each class weighted by N / (K * n_class)).
        train_bn: Train BatchNorm layers when the backbone is (partly) trainable. The default,
            False, keeps BN in inference mode, which is right for small batches and small data.
        freeze_blocks: Blocks frozen in ``partial`` phases; None uses the backbone's default.
        phases: The training phases, run in order.
        batch_size: Global batch size (split across replicas under a distribution strategy).
        cache_features: Train head-only phases on backbone features computed once per image.
        feature_views: Augmented views per training image cached for head-only phases.
        seed: Seed for splits, shuffling, augmentation and initialisation.
        strategy: ``auto``, ``default``, ``mirrored``, ``multiworker`` or ``tpu``.
        mixed_precision: Use mixed float16 (GPU) / bfloat16 (TPU); logits and loss stay float32.
        output: Output directory for the run.
        overwrite: Allow writing into an output directory that holds a different run.
        verbose: Keras fit verbosity (0, 1 or 2).
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
    augment: str = "light"
    augment_in: str = "data"
    mixup: float = 0.0
    cutmix: float = 0.0
    label_smoothing: float = 0.0
    class_weight: str = "none"
    train_bn: bool = False
    freeze_blocks: int | None = None
    phases: tuple[Phase, ...] = field(default_factory=lambda: (Phase(),))
    batch_size: int = 32
    cache_features: bool = True
    feature_views: int = 4
    seed: int = 0
    strategy: str = "auto"
    mixed_precision: bool = False
    output: str = "runs/tfxfer"
    overwrite: bool = False
    verbose: int = 2

    def __post_init__(self):
        if self.weights is not None and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        _check_choice("head_pooling", self.head_pooling, POOLINGS)
        _check_choice("augment", self.augment, AUGMENT_PRESETS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        _check_choice("augment_in", self.augment_in, AUGMENT_PLACES)
        if not 0.0 < self.val_split < 1.0:
            raise UserError("val_split must be strictly between 0 and 1", got=self.val_split,
                            fix="pass e.g. --set val_split=0.2")
        if not 0.0 <= self.head_dropout < 1.0:
            raise UserError("head_dropout must be in [0, 1)", got=self.head_dropout,
                            fix="pass e.g. --set head_dropout=0.2")
        _check_min("batch_size", self.batch_size, 1)
        _check_min("feature_views", self.feature_views, 1)
        _check_min("train_per_class", self.train_per_class, 1)
        _check_min("val_per_class", self.val_per_class, 1)
        _check_min("image_size", self.image_size, 1)
        _check_min("freeze_blocks", self.freeze_blocks, 0)
        _check_min("mixup", self.mixup, 0.0)
        _check_min("cutmix", self.cutmix, 0.0)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError("label_smoothing must be in [0, 1)", got=self.label_smoothing,
                            fix="pass e.g. --set label_smoothing=0.1")
        if not self.phases:
            raise UserError("phases must hold at least one phase", got=self.phases,
                            fix="use a recipe's defaults or give a [[phases]] table")

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Config | None = None) -> Config:
        """Builds a config from a (possibly partial) dict, on top of ``base`` or the defaults."""
        merged = (base or cls()).to_dict()
        for key, value in data.items():
            if key not in merged:
                raise UserError("unknown config key", valid=sorted(merged), got=key,
                                fix="check the spelling against `--help` or the Config docs")
            merged[key] = value
        return _build(cls, merged, "")

    @classmethod
    def load(cls, path: str | Path, base: Config | None = None) -> Config:
        """Loads a JSON or TOML config file (partial files fill in from ``base``)."""
        path = Path(path)
        if not path.is_file():
            raise UserError("config file must exist", got=str(path),
                            fix="pass the path of a .json or .toml file to --config")
        text = path.read_text()
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"config file {path} must be valid {path.suffix[1:].upper()}",
                            got=str(exc), fix="correct the syntax at the position shown") from None
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
                raise UserError("--set takes key=value", got=item,
                                fix="write e.g. --set phases.0.lr=1e-4")
            _assign(data, key.strip().split("."), _parse_value(raw.strip()), key)
        return _build(type(self), data, "")

    def with_epochs(self, epochs: int) -> Config:
        """Sets the epoch count of every phase (what ``--epochs`` does)."""
        return self.replace(phases=[{**dataclasses.asdict(p), "epochs": epochs} for p in self.phases])


def _parse_value(raw: str) -> Any:
    if raw.lower() in ("none", "null"):
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _assign(data: Any, path: list[str], value: Any, full_key: str) -> None:
    head, rest = path[0], path[1:]
    if isinstance(data, list):
        if not head.isdigit() or int(head) >= len(data):
            raise UserError(f"index in {full_key!r} must name an existing entry",
                            valid=range(len(data)), got=head, fix="use a valid phase index")
        slot = int(head)
    else:
        if head not in data:
            raise UserError("unknown config key", valid=sorted(data), got=full_key,
                            fix="check the spelling against `--help` or the Config docs")
        slot = head
    if rest:
        _assign(data[slot], rest, value, full_key)
    else:
        data[slot] = value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Type-checks ``data`` against the dataclass ``cls`` and instantiates it."""
    if not isinstance(data, dict):
        raise UserError(f"{prefix or cls.__name__} must be a table of keys", got=data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UserError("unknown config key", valid=sorted(names),
                        got=f"{prefix}{sorted(unknown)[0]}",
                        fix="check the spelling against `--help` or the Config docs")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key} must be a list", got=value, fix=f"write e.g. {key}=[...]")
        return tuple(_coerce(v, args[0], f"{key}.{i}") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return _build(hint, {**dataclasses.asdict(hint()), **_as_table(value, key)}, f"{key}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key} must be true or false", got=value, fix=f"write {key}=true")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{key} must be an integer", got=value, fix=f"write e.g. {key}=10")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{key} must be a number", got=value, fix=f"write e.g. {key}=0.001")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{key} must be a string", got=value, fix=f'write {key}="..."')
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug, not a user error


def _as_table(value: Any, key: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if not isinstance(value, dict):
        raise UserError(f"{key} must be a table of keys", got=value,
                        fix="give each phase as a table, e.g. {\"epochs\": 5}")
    return value
