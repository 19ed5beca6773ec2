"""Command line shared by every recipe: ``python -m tfxfer.recipes.<name> [options]``.

Precedence, lowest first: the recipe's defaults, ``--config FILE``, the named flags, then each
``--set key=value`` in order. Every user mistake ends in a one-line ``error:`` message and exit
status 2, never a traceback.

Example:
    >>> from tfxfer.cli import resolve_config
    >>> from tfxfer.recipes.small_similar import CONFIG
    >>> resolve_config(CONFIG, ["--epochs", "3", "--set", "head_dropout=0.5"]).phases[0].epochs
    3
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tfxfer.models import backbones
from tfxfer.config import Config
from tfxfer import schema
from tfxfer.errors import UserError

EPILOG = """\
batch size and scaling: --batch-size is the GLOBAL batch. Under a distribution strategy with N
replicas each replica gets batch_size/N examples per step. The learning rate is used as given;
when you scale the global batch by k, the usual rule is to scale lr by k (linear rule, SGD) or
by sqrt(k) (Adam), e.g. --set phases.0.lr=2e-3.

any config key can be set with --set KEY=VALUE, dotted for sections and phases; values parse
as JSON (numbers, true/false, null, [lists]). Unknown keys are rejected.
"""


@dataclass(frozen=True)
class Flag:
    """A recipe's own named flag, setting a (dotted) config key: ``--target`` -> adapt.target.

    ``is_list``: the value is comma-separated (``--unseen a,b``) and the key takes a list.
    ``is_switch``: the flag takes no value and sets the key to true (``--dry-run``).
    ``type``: what the value is parsed as (``int`` for ``--steps 2000``).
    """

    name: str
    key: str
    help: str
    is_list: bool = False
    is_switch: bool = False
    type: type = str


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other user error
        raise UserError(f"invalid command line: {message}", fix=f"see {self.prog} --help")


def build_parser(defaults: Config, prog: str, flags: tuple[Flag, ...] = (),
                 sections: tuple[str, ...] = (), phases_note: str | None = None
                 ) -> argparse.ArgumentParser:
    """The recipe's parser; its help names the recipe's ``sections`` (with their keys and
    defaults) and its phases, or ``phases_note`` when they are chosen at run time (``auto``)."""
    p = _Parser(prog=prog, description=f"tfxfer recipe '{defaults.recipe}': "
                                       f"{_describe(defaults, phases_note)}",
                epilog=EPILOG + _epilog(defaults, sections, phases_note)
                + "backbones: " + ", ".join(backbones.names()),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of config keys")
    p.add_argument("--data", help=f"directory, tfds:NAME, or built-in (default {defaults.data})")
    p.add_argument("--backbone", help=f"registered backbone (default {defaults.backbone})")
    p.add_argument("--weights", help="imagenet, none, or a weights file path "
                                     f"(default {defaults.weights})")
    p.add_argument("--image-size", type=int, help="square input size (default: backbone's)")
    p.add_argument("--epochs", type=int, help="epochs of every phase")
    p.add_argument("--batch-size", type=int, help=f"global batch size (default {defaults.batch_size})")
    p.add_argument("--freeze-blocks", type=int, help="blocks (0-5) frozen in partial phases")
    p.add_argument("--strategy", help="auto|default|mirrored|multiworker|tpu (default auto)")
    p.add_argument("--seed", type=int, help=f"random seed (default {defaults.seed})")
    p.add_argument("--output", help=f"output directory (default {defaults.output})")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in --output even if it holds another run (without it, "
                        "a different run is refused and the same config resumes)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output with changed phase rates (e.g. after a "
                        "NaN stop): completed phases are kept, --set phases.N.lr=... applies to "
                        "the phases still to run")
    p.add_argument("--mixed-precision", action="store_true",
                   help="mixed precision: float16 on GPUs, bfloat16 on TPUs and CPUs; the logits "
                        "layer and the loss stay float32")
    p.add_argument("--no-cache-features", action="store_true",
                   help="train head-only phases on images instead of cached backbone features")
    p.add_argument("--export", metavar="FORMATS",
                   help="comma-separated extra exports, each measured on the validation set: "
                        "litert-fp32,litert-fp16,litert-dynamic,litert-int8 (the litert- "
                        "prefix is optional, as in tfxfer export)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable)")
    for flag in flags:
        if flag.is_switch:
            p.add_argument(flag.name, dest=_dest(flag), action="store_const", const=True,
                           help=f"{flag.help} (sets {flag.key}=true)")
            continue
        p.add_argument(flag.name, dest=_dest(flag), help=f"{flag.help} (sets {flag.key})",
                       type=flag.type,
                       metavar=flag.name.lstrip("-").upper().replace("-", "_"))
    return p


def _dest(flag: Flag) -> str:
    return "recipe_" + flag.name.lstrip("-").replace("-", "_")


def _describe(cfg: Config, phases_note: str | None = None) -> str:
    phases = phases_note or " -> ".join(
        f"phases.{i} {p.name}[{p.trainable}, {p.epochs} ep, {p.optimizer} {p.lr}]"
        for i, p in enumerate(cfg.phases))
    return f"{cfg.backbone} on {cfg.data}; phases: {phases}"


def _epilog(cfg: Config, sections: tuple[str, ...], phases_note: str | None) -> str:
    lines = []
    if phases_note is None:
        named = ", ".join(f"phases.{i} or phases.{p.name}" for i, p in enumerate(cfg.phases))
        lines.append(f"phases, by index from 0 or by name: {named}")
        lines.append(f"  e.g. --set phases.{cfg.phases[-1].name}.lr=1e-5")
    for section in sections:
        keys = ", ".join(f"{section}.{k}={json.dumps(v)}"
                         for k, v in cfg.to_dict()[section].items())
        lines.append(f"{section}.* keys (defaults): {keys}")
    return "".join(textwrap.fill(line, 99, subsequent_indent="  ", break_on_hyphens=False)
                   + "\n" for line in lines)


# Flags that set the config key of the same name.
_FLAG_KEYS = ("data", "backbone", "weights", "image_size", "batch_size", "freeze_blocks",
              "strategy", "seed", "output")


def resolve_config(defaults: Config, argv: list[str] | None, prog: str = "tfxfer",
                   flags: tuple[Flag, ...] = (), **help_parts) -> Config:
    """Applies a command line to a recipe's default config (``flags``: the recipe's own;
    ``help_parts``: :func:`build_parser`'s ``sections`` and ``phases_note``)."""
    args = build_parser(defaults, prog, flags, **help_parts).parse_args(argv)
    cfg = Config.load(args.config, base=defaults) if args.config else defaults
    own = []
    for flag in flags:
        value = getattr(args, _dest(flag))
        if value is not None:
            if flag.is_list:
                value = [v.strip() for v in value.split(",") if v.strip()]
            own.append(f"{flag.key}={json.dumps(value)}")
    cfg = cfg.override(own) if own else cfg
    changes = {key: getattr(args, key) for key in _FLAG_KEYS if getattr(args, key) is not None}
    if args.overwrite:
        changes["overwrite"] = True
    if args.resume:
        changes["resume"] = True
    if args.no_cache_features:
        changes["cache_features"] = False
    if args.mixed_precision:
        changes["mixed_precision"] = True
    if args.export:
        changes["export"] = list(export_formats(args.export))
    if changes:
        cfg = cfg.replace(**changes)
    if args.epochs is not None:
        cfg = cfg.with_epochs(args.epochs)
    return cfg.override(args.set) if args.set else cfg


def run(cfg: Config, extra_augment=(), trainer: str = "tfxfer.train.loop"):
    """Trains, evaluates and writes every artefact: what each recipe's ``run`` calls.

    ``trainer`` is the module whose ``run(cfg, extra_augment)`` trains: the one training core
    (:mod:`tfxfer.train.loop`), or the adaptation core (:mod:`tfxfer.train.adapt`); or such a
    function itself. A result without a model (the ``auto`` recipe's dry-run plan) is returned
    as it is; a result that trained with another config (``auto``) is saved with that one.
    """
    from tfxfer.deploy import export  # heavy imports only when a run starts
    from tfxfer.train import preflight

    preflight.check(cfg)  # what shows without data fails before any is read
    fn = trainer if callable(trainer) else importlib.import_module(trainer).run
    result = fn(cfg, extra_augment)
    if getattr(result, "model", None) is None:
        return result
    export.save_run(result, result.config or cfg)
    return result


def entry_points(defaults: Config, trainer: str = "tfxfer.train.loop",
                 flags: tuple[Flag, ...] = (), **help_parts):
    """``(run, main)`` for a recipe module: its Python entry point and its command line.

    ``run(config=defaults, **overrides)`` trains, evaluates and exports; ``overrides`` are
    config keys. ``main(argv=None)`` parses a command line over ``defaults`` and returns the
    exit status. ``help_parts``: what its ``--help`` adds (:func:`build_parser`).
    """

    def run_recipe(config: Config = defaults, **overrides):
        return run(config.replace(**overrides) if overrides else config, trainer=trainer)

    def main_recipe(argv: list[str] | None = None, prog: str | None = None) -> int:
        return main(defaults, argv, prog, trainer, flags, **help_parts)

    run_recipe.__doc__ = f"Runs the {defaults.recipe} recipe (defaults: CONFIG) and exports it."
    main_recipe.__doc__ = f"Command line of the {defaults.recipe} recipe; returns the exit status."
    return run_recipe, main_recipe


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # "Assets written to" chatter


def main(defaults: Config, argv: list[str] | None = None, prog: str | None = None,
         trainer: str = "tfxfer.train.loop", flags: tuple[Flag, ...] = (),
         variant: tuple[str, object] | None = None, **help_parts) -> int:
    """Runs a recipe from the command line; returns the process exit status.

    ``variant``: ``(flag, make)`` when a flag chooses the defaults themselves (the text
    recipe's ``--scope``): ``make(value)`` gives them, and the other options apply on top.
    """
    prog = prog or f"python -m tfxfer.recipes.{defaults.recipe}"
    _quiet_tensorflow()
    try:
        if variant is not None:
            peek = _Parser(prog=prog, add_help=False)
            peek.add_argument(variant[0])
            value = getattr(peek.parse_known_args(
                sys.argv[1:] if argv is None else argv)[0], variant[0].lstrip("-"))
            defaults = variant[1](value) if value is not None else defaults
        cfg = resolve_config(defaults, argv, prog, flags, **help_parts)
        result = run(cfg, trainer=trainer)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the four scenario recipes resume from their last completed "
              "epoch when re-run (checkpoints/), domain_adapt and zero_shot start over",
              file=sys.stderr)
        return 130
    print(result.summary())
    return 0


def entry(argv: list[str] | None = None) -> int:
    """``tfxfer RECIPE [options]``: the console script."""
    from tfxfer.recipes import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        usage = (f"usage: tfxfer RECIPE [options]   (RECIPE: {', '.join(COMMANDS)}; "
                 "tfxfer RECIPE --help for options)\n"
                 "       tfxfer predict SAVED_MODEL IMAGES... [--output FILE] [--tta flip]\n"
                 "       tfxfer export RUN_DIR --export litert-int8[,litert-fp16,...]\n"
                 "       tfxfer lr-find RECIPE [--phase N] [recipe options]")
        if not argv:  # a command is missing: usage on stderr, status 2, as argparse does
            print(usage + "\ntfxfer: error: a command is required", file=sys.stderr)
            return 2
        print(usage)
        return 0
    if argv[0] == "predict":
        from tfxfer import predict

        return predict.main(argv[1:])
    if argv[0] == "export":
        return export_main(argv[1:])
    if argv[0] == "lr-find":
        return lr_find_main(argv[1:])
    if argv[0] not in COMMANDS:
        print(f"tfxfer: error: the command must be a recipe, predict, export or lr-find; valid: "
              f"{', '.join(COMMANDS)}, predict, export, lr-find; got {argv[0]!r}. "
              "Fix: run e.g. tfxfer small_similar",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"tfxfer.recipes.{argv[0]}")
    return module.main(argv[1:], prog=f"tfxfer {argv[0]}")


def export_formats(text: str) -> tuple[str, ...]:
    """``--export``/``--litert`` values as config ``export`` formats: one vocabulary for
    training and ``tfxfer export``, the ``litert-`` prefix optional in both.

    Example:
        >>> export_formats("int8, litert-fp16")
        ('litert-int8', 'litert-fp16')
    """
    values = (v.strip() for v in text.split(","))
    return tuple(v if v.startswith("litert-") else f"litert-{v}" for v in values if v)


def plain_text(doc: str) -> str:
    """A docstring as a terminal shows it: no reST roles or double backquotes.

    Example:
        >>> plain_text("into ``<output>/lr_find``, see :mod:`tfxfer.train.lr_find`")
        'into <output>/lr_find, see tfxfer.train.lr_find'
    """
    return re.sub(r"``([^`]+)``", r"\1", re.sub(r":\w+:`~?([^`]+)`", r"\1", doc))


def export_main(argv: list[str], prog: str = "tfxfer export") -> int:
    """``tfxfer export RUN_DIR --litert int8,fp16``: LiteRT files for a finished run."""
    _quiet_tensorflow()
    p = _Parser(prog=prog, description="Write and measure LiteRT files of a finished run; "
                                       "their accuracy and size go into its metrics.json.")
    p.add_argument("run_dir", help="the run's output directory (or its saved_model folder)")
    p.add_argument("--litert", "--export", dest="formats", required=True, metavar="VARIANTS",
                   help="comma-separated: fp32, fp16, dynamic, int8, each with or without the "
                        "litert- prefix that training's --export uses (litert-int8 = int8)")
    try:
        args = p.parse_args(argv)
        formats = export_formats(args.formats)
        Config(export=formats)  # validates the variants with the config's own message
        from tfxfer.deploy import export

        run_dir = Path(args.run_dir)
        if run_dir.name == "saved_model" and (run_dir.parent / "config.json").is_file():
            run_dir = run_dir.parent  # the folder predict takes: its run is the one above
        results = export.export_run(run_dir, formats)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for variant, e in results.items():
        if "error" in e:
            print(f"{prog}: error: LiteRT {variant} failed: {e['error']}", file=sys.stderr)
            continue
        print(f"LiteRT {variant}: val_accuracy={e['val_accuracy']:.4f} "
              f"({e['delta_vs_float']:+.4f} vs float), {e['bytes'] / 1e6:.2f} MB "
              f"({e['gzip_bytes'] / 1e6:.2f} MB gzipped), {e['file']} [{e['interpreter']}]")
    return 1 if any("error" in e for e in results.values()) else 0


def lr_find_main(argv: list[str], prog: str = "tfxfer lr-find") -> int:
    """``tfxfer lr-find RECIPE [--phase N] [options]``: the learning-rate finder on one phase.

    ``N`` is the phase's index from 0 or its name (``--phase partial``). The phases before it
    (default: the last) train as the recipe says, into
    ``<output>/lr_find``; phase ``N`` is swept (:mod:`tfxfer.train.lr_find`) and not trained.
    Prints the rate picked and writes ``lr_find.png`` next to the sweep's ``checkpoints/``.
    """
    from tfxfer.recipes import RECIPES

    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: {prog} RECIPE [--phase N] [recipe options]\n"
              f"{plain_text(lr_find_main.__doc__)}")
        return 0
    _quiet_tensorflow()
    try:
        if not argv or argv[0] not in RECIPES:
            raise UserError("tfxfer lr-find needs a scenario recipe first", valid=RECIPES,
                            got=argv[0] if argv else None,
                            fix="run e.g. tfxfer lr-find small_different --data DIR")
        module = importlib.import_module(f"tfxfer.recipes.{argv[0]}")
        p = _Parser(prog=prog, add_help=False)
        p.add_argument("--phase")
        args, rest = p.parse_known_args(argv[1:])
        cfg = resolve_config(module.CONFIG, rest, f"{prog} {argv[0]}")
        index = len(cfg.phases) - 1 if args.phase is None else schema.list_slot(
            cfg.to_dict()["phases"], args.phase, "--phase")
        phases = cfg.phases[:index] + (dataclasses.replace(cfg.phases[index], lr="auto",
                                                           lr_range=()),)
        cfg = cfg.replace(phases=phases, output=os.path.join(cfg.output, "lr_find"))
        from tfxfer.train import loop, preflight, rundir

        preflight.check(cfg)
        result = loop.run(cfg, find_only=index)
        rundir.release(result.output)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    rec = result.metrics["lr_find"]
    print(f"phase {index} {cfg.phases[index].name!r} ({cfg.phases[index].trainable}): "
          f"{rec['steps']} steps, centred-average loss lowest at lr "
          f"{rec['lrs'][rec['min_index']]:.3g}; suggested lr {rec['lr']:.3g} (a tenth of it)\n"
          f"use it: --set phases.{index}.lr={rec['lr']:.3g}   (or phases.{index}.lr=auto)\n"
          f"plot: {os.path.join(cfg.output, 'lr_find.png')}")
    return 0
