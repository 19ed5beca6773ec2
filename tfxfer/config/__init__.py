"""The one configuration object shared by the CLI, Python and Colab, built from parts.

A :class:`Config` is a frozen dataclass made of parts, each in its own module:

- the run (:class:`RunPart`): data, phases, batch, seed, strategy, precision, output, resume;
- the head (:class:`HeadPart`): its dropout, label smoothing, class weights, regularisation;
- the image model (:class:`ImagePart`): backbone, augmentation, MixUp, tasks, TTA, export;
- the text model (:class:`Text`, :class:`Lora`);
- one section per method (:class:`Prune`, :class:`Adapt`, :class:`ZeroShot`, :class:`Auto`,
  :class:`Generative`, :class:`Distill`).

Every recipe reads the run; it declares the other parts it reads (:data:`PARTS`), and the runner
refuses any other set away from the recipe's defaults (:func:`tfxfer.runner.register`).

A config is built from a recipe's defaults, then a config file (JSON or TOML, partial is fine),
then CLI flags, then ``--set key=value`` overrides, in that order. Unknown keys and wrong types
are rejected with a :class:`~tfxfer.errors.UserError`; a key that moved (:data:`MOVED`) still
works, with a one-line warning. The resolved config is written as ``config.json`` next to every
artefact and loads back with :meth:`Config.load`.

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
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from tfxfer.config.adapt import ADAPT_METHODS, Adapt, adapt_terms
from tfxfer.config.distill import Distill
from tfxfer.config.head import CLASS_WEIGHTS, REGULARIZATIONS, HeadPart, Regularization
from tfxfer.config.image import (
    AUGMENT_PLACES,
    AUGMENT_PRESETS,
    EXPORT_FORMATS,
    POOLINGS,
    TASK_LOSSES,
    TTA_MODES,
    Augment,
    ImagePart,
    Task,
)
from tfxfer.config.methods import ZERO_SHOT_METHODS, Auto, Generative, Prune, ZeroShot
from tfxfer.config.run import (
    OPTIMIZERS,
    SCHEDULES,
    STRATEGIES,
    TRAINABLE_SCOPES,
    Phase,
    RunPart,
    wise_ft_probe,
)
from tfxfer.config.schema import assign, build, coerce, merge, parse_value, shorthand
from tfxfer.config.text import SCOPE_PHASES, TEXT_POOLINGS, TEXT_SCOPES, Lora, Text
from tfxfer.errors import UserError

__all__ = [
    "ADAPT_METHODS",
    "adapt_terms",
    "wise_ft_probe",
    "AUGMENT_PLACES",
    "AUGMENT_PRESETS",
    "CLASS_WEIGHTS",
    "EXPORT_FORMATS",
    "MOVED",
    "OPTIMIZERS",
    "PARTS",
    "POOLINGS",
    "REGULARIZATIONS",
    "SCHEDULES",
    "SCOPE_PHASES",
    "SECTIONS",
    "STRATEGIES",
    "TASK_LOSSES",
    "TEXT_POOLINGS",
    "TEXT_SCOPES",
    "TRAINABLE_SCOPES",
    "TTA_MODES",
    "ZERO_SHOT_METHODS",
    "Adapt",
    "Augment",
    "Auto",
    "Config",
    "Distill",
    "Generative",
    "HeadPart",
    "ImagePart",
    "Lora",
    "Phase",
    "Prune",
    "Regularization",
    "RunPart",
    "Task",
    "Text",
    "ZeroShot",
]

log = logging.getLogger("tfxfer")


@dataclass(frozen=True)
class MethodSections:
    """One section per method; each recipe reads the ones it declares.

    Attributes:
        prune: Magnitude pruning during backbone fine-tuning (:class:`Prune`).
        adapt: Unsupervised domain adaptation to an unlabelled target (:class:`Adapt`); the
            ``domain_adapt`` recipe.
        zero_shot: Zero-shot classification by attributes (:class:`ZeroShot`); the
            ``zero_shot`` recipe.
        auto: Automatic recipe choice from measured signals (:class:`Auto`); the ``auto``
            recipe.
        generative: The GAN trained when ``augment.synthetic_ratio`` > 0 and no
            ``augment.generator`` is given, and by ``tfxfer generative`` (:class:`Generative`).
        text: The pretrained text encoder and its training scope (:class:`Text`); the
            ``text_classify`` recipe.
        lora: Low-rank adapters for ``text.scope=lora`` (:class:`Lora`).
        distill: Distillation of a finished run into a smaller student (:class:`Distill`); the
            ``distill`` recipe.
    """

    prune: Prune = field(default_factory=Prune)
    adapt: Adapt = field(default_factory=Adapt)
    zero_shot: ZeroShot = field(default_factory=ZeroShot)
    auto: Auto = field(default_factory=Auto)
    generative: Generative = field(default_factory=Generative)
    text: Text = field(default_factory=Text)
    lora: Lora = field(default_factory=Lora)
    distill: Distill = field(default_factory=Distill)


@dataclass(frozen=True)
class Config(MethodSections, ImagePart, HeadPart, RunPart):
    """Everything a run needs. Every field can be set from a file or with ``--set``.

    Its fields are those of its parts, documented there: :class:`RunPart` (read by every
    recipe), :class:`HeadPart`, :class:`ImagePart` and :class:`MethodSections`.
    """

    def __post_init__(self):
        for name, section in SECTIONS.items():  # Config(augment="none"), Config(prune={...})
            value = getattr(self, name)
            if not isinstance(value, section):
                object.__setattr__(self, name, coerce(value, section, name))
        self._check_run()
        self._check_head()
        self._check_image()
        if self.prune.sparsity and all(p.trainable == "head" for p in self.phases):
            raise UserError(
                "prune.sparsity prunes while the backbone trains, and every phase of "
                "this config trains the head only",
                got=self.prune.sparsity,
                fix="add a phase with trainable partial/all/gradual (e.g. the "
                "large_similar or small_different recipe), or drop prune",
            )
        if self.wise_ft is not None and wise_ft_probe(self.phases) is None:
            raise UserError(
                "wise_ft interpolates between the model after a head-only phase (the probe) "
                "and after a later phase that trains the backbone, and this config has no "
                "such pair",
                got=[f"{p.name}:{p.trainable}" for p in self.phases],
                fix="use a recipe with a head phase before fine-tuning (small_different, "
                "large_similar), or drop wise_ft",
            )
        averaged = [p.name for p in self.phases if p.ema and p.trainable != "head"]
        if self.prune.sparsity and averaged:
            raise UserError(
                "ema cannot average a phase that prunes: the average keeps the pruned weights "
                "alive, so the model served would not have the sparsity asked for",
                got=dict(sparsity=self.prune.sparsity, ema_phases=averaged),
                fix=f"drop one: --set phases.{averaged[0]}.ema=0, or --set prune.sparsity=0",
            )
        if self.tasks and (self.mixup or self.cutmix or self.class_weight != "none"):
            raise UserError(
                "MixUp, CutMix and class_weight work with a single task only",
                got=dict(
                    tasks=[t.name for t in self.tasks],
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
        for key, value in _moved(data).items():
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
                merged[key] = merge(merged[key], value, SHORTHANDS.get(key))
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
            key = _moved_key(key.strip())
            assign(data, key.split("."), parse_value(raw.strip()), key, SHORTHANDS)
        return build(type(self), data, "")

    def with_epochs(self, epochs: int) -> Config:
        """Sets the epoch count of every phase (what ``--epochs`` does)."""
        return self.replace(
            phases=[{**dataclasses.asdict(p), "epochs": epochs} for p in self.phases]
        )


SECTIONS = {
    "augment": Augment,
    "regularization": Regularization,
    "prune": Prune,
    "adapt": Adapt,
    "zero_shot": ZeroShot,
    "auto": Auto,
    "generative": Generative,
    "text": Text,
    "lora": Lora,
    "distill": Distill,
}  # the tables a Python caller may give as dicts
SHORTHANDS = {name: cls.SHORTHAND for name, cls in SECTIONS.items() if hasattr(cls, "SHORTHAND")}


def _names(part: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(part))


# What a recipe may declare that it reads, beyond the run that every recipe reads: the head and
# the image model (groups of top-level keys; augment, a table of the image model, apart) and
# one section per method.
PARTS: dict[str, tuple[str, ...]] = {
    "head": _names(HeadPart),
    "image": tuple(n for n in _names(ImagePart) if n != "augment"),
    "augment": ("augment",),
    **{name: (name,) for name in _names(MethodSections)},
}


# Keys that moved: old dotted path -> new one. The old path still works, with a warning.
MOVED = {"alpha": "regularization.alpha", "beta": "regularization.beta"}


def _moved_key(key: str) -> str:
    if key in MOVED:
        log.warning("config key %r is now %r; the old name still works for now", key, MOVED[key])
        return MOVED[key]
    return key


def _moved(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with moved top-level keys written at their new paths (tables merged)."""
    out = {key: value for key, value in data.items() if key not in MOVED}
    for key in (k for k in data if k in MOVED):  # after the tables, which they refine
        table, leaf = _moved_key(key).split(".")
        current = out.get(table, {})
        if current is None or isinstance(current, str):  # regularization="l2sp"
            current = shorthand(current, SHORTHANDS[table])
        elif dataclasses.is_dataclass(current):
            current = dataclasses.asdict(current)
        out[table] = {**current, leaf: data[key]}
    return out
