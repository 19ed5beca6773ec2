"""The one runner: every recipe is registered here and runs through :func:`run`.

A recipe module is a default config plus one call::

    run, main = runner.register(CONFIG, trainer="tfxfer.adapt.train", flags=FLAGS,
                                sections=("head", "image", "augment", "adapt"))

:func:`register` records a :class:`Recipe` (name, defaults, trainer, flags, the config sections
it reads, whether a re-run resumes) in :data:`REGISTRY` and returns the module's ``run`` (Python)
and ``main`` (command line). :func:`run` refuses the config parts the recipe does not read
(:data:`tfxfer.config.PARTS`; :func:`refuse_foreign_sections`, one rule for every recipe),
checks what shows without data (:mod:`tfxfer.train.preflight`), trains with the recipe's
trainer and writes the artefacts (:func:`tfxfer.deploy.export.save_run`). ``tfxfer --help``
lists :data:`REGISTRY` (:func:`tfxfer.recipes.registered`).

Example:
    >>> from tfxfer.recipes import registered
    >>> registered()["domain_adapt"].sections
    ('head', 'image', 'augment', 'adapt')
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfxfer.config import PARTS, SECTIONS, Config
from tfxfer.errors import UserError
from tfxfer.runner.flags import Flag, Parser, resolve_config

# what the four scenario recipes read (the run aside, which every recipe reads)
IMAGE_SECTIONS = ("head", "image", "augment", "prune", "generative")


@dataclass(frozen=True)
class Recipe:
    """A registered recipe.

    Attributes:
        name: ``tfxfer NAME`` and ``python -m tfxfer.recipes.NAME``.
        config: Its defaults (``CONFIG`` in its module).
        trainer: The module whose ``run(cfg, extra_augment)`` trains, or that function.
        flags: Its own command-line flags (:class:`~tfxfer.runner.flags.Flag`).
        sections: The config parts (:data:`tfxfer.config.PARTS`: ``head``, ``image`` and the
            sections) it reads besides the run; any other part set away from the recipe's
            defaults is refused.
        resumable: Whether the same command, re-run after an interruption, resumes from the last
            completed epoch (the others start over).
        help: What its ``--help`` adds (``help_sections``: sections whose keys it lists;
            ``phases_note``: said instead of the phases, when they are chosen at run time).
        deploy_data: ``"module:function"`` that rebuilds a finished run's calibration and
            measurement data for ``tfxfer export`` (``function(cfg, size, metrics)``); None:
            the training core's.
        prepare: ``"module:function"`` that settles, before the checks and the training, what
            the recipe chooses from the data (``function(cfg) -> (cfg, plan line or None)``:
            ``domain_adapt``'s network); the chosen config is the one trained and saved.
    """

    name: str
    config: Config
    trainer: str | Callable
    flags: tuple[Flag, ...] = ()
    sections: tuple[str, ...] = IMAGE_SECTIONS
    resumable: bool = True
    help: dict[str, Any] = field(default_factory=dict)
    deploy_data: str | None = None
    prepare: str | None = None


REGISTRY: dict[str, Recipe] = {}
_catalogue: list[Callable[[], dict[str, Recipe]]] = []  # lists every recipe (tfxfer.recipes)


def set_catalogue(every_recipe: Callable[[], dict[str, Recipe]]) -> None:
    """Gives the runner the function that imports and lists every recipe: the recipes package
    calls it when it is first imported, so that an error can name the recipes that read a
    section even when one recipe alone was imported (``python -m tfxfer.recipes.NAME``)."""
    _catalogue[:] = [every_recipe]


def register(
    defaults: Config,
    trainer: str | Callable = "tfxfer.train.loop",
    flags: tuple[Flag, ...] = (),
    sections: tuple[str, ...] = IMAGE_SECTIONS,
    resumable: bool = True,
    variant: tuple[str, Callable] | None = None,
    deploy_data: str | None = None,
    prepare: str | None = None,
    **help_parts,
):
    """Registers the recipe ``defaults.recipe`` and returns its ``(run, main)``.

    ``run(config=defaults, **overrides)`` trains, evaluates and exports; ``overrides`` are
    config keys. ``main(argv=None)`` parses a command line over ``defaults`` and returns the
    exit status. ``variant``: ``(flag, make)`` when a flag chooses the defaults themselves (the
    text recipe's ``--scope``). ``help_parts``: see :attr:`Recipe.help`.
    """
    unknown = sorted(set(sections) - set(PARTS))
    if unknown:  # a recipe author's mistakes, found at import
        raise ValueError(f"recipe {defaults.recipe}: unknown parts {unknown}; valid: {list(PARTS)}")
    unread = [k for p in PARTS if p not in sections for k in PARTS[p] if _changed(defaults, k)]
    if unread:
        name = defaults.recipe
        raise ValueError(f"recipe {name}: its defaults set {unread}, parts it does not read")
    recipe = Recipe(
        defaults.recipe,
        defaults,
        trainer,
        flags,
        tuple(sections),
        resumable,
        dict(help_parts),
        deploy_data,
        prepare,
    )
    REGISTRY[recipe.name] = recipe
    return _run_and_main(recipe, variant)


def entry_points(
    defaults: Config,
    trainer: str | Callable = "tfxfer.train.loop",
    flags: tuple[Flag, ...] = (),
    **help_parts,
):
    """``(run, main)`` of an unregistered recipe (a user's own defaults): :func:`register`
    without the registry, reading every section."""
    recipe = Recipe(defaults.recipe, defaults, trainer, flags, tuple(PARTS), True, help_parts)
    return _run_and_main(recipe)


def _run_and_main(recipe: Recipe, variant: tuple[str, Callable] | None = None):
    def run_recipe(config: Config = recipe.config, **overrides):
        config = config.replace(**overrides) if overrides else config
        return run(config, trainer=recipe.trainer, recipe=recipe)

    def main_recipe(argv: list[str] | None = None, prog: str | None = None) -> int:
        return main(
            recipe.config,
            argv,
            prog,
            recipe.trainer,
            recipe.flags,
            variant,
            recipe=recipe,
            **recipe.help,
        )

    run_recipe.__doc__ = f"Runs the {recipe.name} recipe (defaults: CONFIG) and exports it."
    main_recipe.__doc__ = f"Command line of the {recipe.name} recipe; returns the exit status."
    return run_recipe, main_recipe


def _changed(cfg: Config, key: str, base: Config | None = None) -> bool:
    return getattr(cfg, key) != getattr(base or Config(), key)


def refuse_foreign_sections(cfg: Config, recipe: Recipe) -> None:
    """Refuses a config part the recipe does not read, set away from the recipe's defaults: one
    rule for every recipe and part (:data:`tfxfer.config.PARTS`), naming the recipes that do
    read it."""
    for part, keys in PARTS.items():
        changed = (
            [] if part in recipe.sections else [k for k in keys if _changed(cfg, k, recipe.config)]
        )
        if not changed:
            continue
        every = _catalogue[0]() if _catalogue else REGISTRY
        owners = [r.name for r in every.values() if part in r.sections] or ["no"]
        plural = "s" if len(owners) > 1 else ""
        what = f"{part}.*" if part in SECTIONS else f"{', '.join(changed)}: {part}"
        raise UserError(
            f"{what} settings belong to the {', '.join(owners)} recipe{plural}; the "
            f"{recipe.name} recipe would ignore them",
            got=getattr(cfg, changed[0])
            if part in SECTIONS
            else {k: getattr(cfg, k) for k in changed},
            fix=f"run tfxfer {owners[0]} ..., or drop the {what.split(':')[0]} settings",
        )


def run(
    cfg: Config,
    extra_augment=(),
    trainer: str | Callable = "tfxfer.train.loop",
    recipe: Recipe | None = None,
):
    """Trains, evaluates and writes every artefact: what each recipe's ``run`` calls.

    ``trainer`` is the module whose ``run(cfg, extra_augment)`` trains (the training core
    :mod:`tfxfer.train.loop`, the adaptation core :mod:`tfxfer.adapt.train`, ...) or such a
    function. ``recipe`` (default: the registered recipe named ``cfg.recipe``, if any) says
    which sections may be set. A result without a model (the ``auto`` recipe's dry-run plan)
    is returned as it is; a result that trained with another config (``auto``) is saved with
    that one.
    """
    from tfxfer.train import preflight

    recipe = recipe or REGISTRY.get(cfg.recipe)
    if recipe is not None:
        refuse_foreign_sections(cfg, recipe)
        if recipe.prepare is not None:
            cfg, plan = _hook(recipe.prepare)(cfg)
            if plan:
                logging.getLogger("tfxfer").info("%s", plan)
    # what shows without data fails before any is read, and before TensorFlow is imported
    preflight.check(cfg, image=recipe is None or "image" in recipe.sections)
    import tfxfer
    from tfxfer.deploy import export  # heavy imports only when a run starts

    tfxfer.register_keras_objects()
    fn = trainer if callable(trainer) else importlib.import_module(trainer).run
    result = fn(cfg, extra_augment)
    if getattr(result, "model", None) is None:
        return result
    export.save_run(result, result.config or cfg)
    return result


def export_run(run_dir, formats: tuple[str, ...]) -> dict:
    """LiteRT files for a finished run (``tfxfer export``), measured on the data its recipe
    says (:attr:`Recipe.deploy_data`); see :func:`tfxfer.deploy.export.export_run`."""
    from pathlib import Path

    import tfxfer
    from tfxfer.deploy import export

    tfxfer.register_keras_objects()

    saved = Path(run_dir) / "config.json"
    name = Config.load(saved).recipe if saved.is_file() else None
    every = _catalogue[0]() if _catalogue else REGISTRY
    hook = every[name].deploy_data if name in every else None
    return export.export_run(run_dir, formats, deploy_data=hook and _hook(hook))


def _hook(path: str) -> Callable:
    """The function a ``"module:function"`` string names."""
    module, function = path.split(":")
    return getattr(importlib.import_module(module), function)


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # "Assets written to" chatter


def main(
    defaults: Config,
    argv: list[str] | None = None,
    prog: str | None = None,
    trainer: str = "tfxfer.train.loop",
    flags: tuple[Flag, ...] = (),
    variant: tuple[str, object] | None = None,
    recipe: Recipe | None = None,
    **help_parts,
) -> int:
    """Runs a recipe from the command line; returns the process exit status.

    ``variant``: ``(flag, make)`` when a flag chooses the defaults themselves (the text
    recipe's ``--scope``): ``make(value)`` gives them, and the other options apply on top.
    """
    prog = prog or f"python -m tfxfer.recipes.{defaults.recipe}"
    _quiet_tensorflow()
    try:
        if variant is not None:
            peek = Parser(prog=prog, add_help=False)
            peek.add_argument(variant[0])
            value = getattr(
                peek.parse_known_args(sys.argv[1:] if argv is None else argv)[0],
                variant[0].lstrip("-"),
            )
            defaults = variant[1](value) if value is not None else defaults
        image = recipe is None or "image" in recipe.sections
        cfg = resolve_config(defaults, argv, prog, flags, image=image, **help_parts)
        result = run(cfg, trainer=trainer, recipe=recipe)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = (
            "the same command resumes from the last completed epoch (checkpoints/)"
            if recipe is None or recipe.resumable
            else "the same command starts over"
        )
        print(f"{prog}: interrupted; {again}", file=sys.stderr)
        return 130
    print(result.summary())
    return 0
