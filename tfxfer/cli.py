"""The ``tfxfer`` console script: a recipe by name, or ``predict``, ``export``, ``lr-find``.

``tfxfer RECIPE [options]`` runs a registered recipe (:func:`tfxfer.recipes.registered`) through
its command line (:mod:`tfxfer.runner`); ``tfxfer --help`` lists them. The names a recipe module
and older code import from here (``resolve_config``, ``Flag``, ``run``, ``main``) are the
runner's.

Example:
    >>> from tfxfer.cli import resolve_config
    >>> from tfxfer.recipes.small_similar import CONFIG
    >>> resolve_config(CONFIG, ["--epochs", "3", "--set", "head_dropout=0.5"]).phases[0].epochs
    3
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
from pathlib import Path

from tfxfer.config import Config, schema
from tfxfer.errors import UserError
from tfxfer.runner import _quiet_tensorflow, entry_points, main, run  # noqa: F401 - public here
from tfxfer.runner.flags import (  # noqa: F401 - public here
    Flag,
    Parser,
    build_parser,
    export_formats,
    resolve_config,
)


def entry(argv: list[str] | None = None) -> int:
    """``tfxfer RECIPE [options]``: the console script."""
    from tfxfer.recipes import registered

    argv = list(sys.argv[1:] if argv is None else argv)
    recipes = registered()
    if not argv or argv[0] in ("-h", "--help"):
        listing = "".join(f"\n  {name:<17} {_summary(r)}" for name, r in recipes.items())
        usage = (
            "usage: tfxfer RECIPE [options]   (tfxfer RECIPE --help for options)\n"
            "       tfxfer predict SAVED_MODEL IMAGES... [--output FILE] [--tta flip]\n"
            "       tfxfer export RUN_DIR --export litert-int8[,litert-fp16,...]\n"
            "       tfxfer lr-find RECIPE [--phase N] [recipe options]\n\nrecipes:" + listing
        )
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
    if argv[0] not in recipes:
        print(
            f"tfxfer: error: the command must be a recipe, predict, export or lr-find; valid: "
            f"{', '.join(recipes)}, predict, export, lr-find; got {argv[0]!r}. "
            "Fix: run e.g. tfxfer small_similar",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"tfxfer.recipes.{argv[0]}")
    return module.main(argv[1:], prog=f"tfxfer {argv[0]}")


def _summary(recipe) -> str:
    """The first line of a recipe module's docstring."""
    doc = sys.modules[f"tfxfer.recipes.{recipe.name}"].__doc__ or ""
    return plain_text(doc.strip().splitlines()[0]) if doc.strip() else ""


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
    p = Parser(
        prog=prog,
        description="Write and measure LiteRT files of a finished run; "
        "their accuracy and size go into its metrics.json.",
    )
    p.add_argument("run_dir", help="the run's output directory (or its saved_model folder)")
    p.add_argument(
        "--litert",
        "--export",
        dest="formats",
        required=True,
        metavar="VARIANTS",
        help="comma-separated: fp32, fp16, dynamic, int8, each with or without the "
        "litert- prefix that training's --export uses (litert-int8 = int8)",
    )
    try:
        args = p.parse_args(argv)
        formats = export_formats(args.formats)
        Config(export=formats)  # validates the variants with the config's own message
        from tfxfer import runner

        run_dir = Path(args.run_dir)
        if run_dir.name == "saved_model" and (run_dir.parent / "config.json").is_file():
            run_dir = run_dir.parent  # the folder predict takes: its run is the one above
        results = runner.export_run(run_dir, formats)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for variant, e in results.items():
        if "error" in e:
            print(f"{prog}: error: LiteRT {variant} failed: {e['error']}", file=sys.stderr)
            continue
        print(
            f"LiteRT {variant}: val_accuracy={e['val_accuracy']:.4f} "
            f"({e['delta_vs_float']:+.4f} vs float), {e['bytes'] / 1e6:.2f} MB "
            f"({e['gzip_bytes'] / 1e6:.2f} MB gzipped), {e['file']} [{e['interpreter']}]"
        )
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
        print(
            f"usage: {prog} RECIPE [--phase N] [recipe options]\n{plain_text(lr_find_main.__doc__)}"
        )
        return 0
    _quiet_tensorflow()
    try:
        if not argv or argv[0] not in RECIPES:
            raise UserError(
                "tfxfer lr-find needs a scenario recipe first",
                valid=RECIPES,
                got=argv[0] if argv else None,
                fix="run e.g. tfxfer lr-find small_different --data DIR",
            )
        module = importlib.import_module(f"tfxfer.recipes.{argv[0]}")
        p = Parser(prog=prog, add_help=False)
        p.add_argument("--phase")
        args, rest = p.parse_known_args(argv[1:])
        cfg = resolve_config(module.CONFIG, rest, f"{prog} {argv[0]}")
        index = (
            len(cfg.phases) - 1
            if args.phase is None
            else schema.list_slot(cfg.to_dict()["phases"], args.phase, "--phase")
        )
        phases = cfg.phases[:index] + (
            dataclasses.replace(cfg.phases[index], lr="auto", lr_range=()),
        )
        cfg = cfg.replace(phases=phases, output=os.path.join(cfg.output, "lr_find"))
        from tfxfer.train import preflight

        preflight.check(cfg)
        import tfxfer
        from tfxfer.train import loop, rundir

        tfxfer.register_keras_objects()
        result = loop.run(cfg, find_only=index)
        rundir.release(result.output)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    rec = result.metrics["lr_find"]
    print(
        f"phase {index} {cfg.phases[index].name!r} ({cfg.phases[index].trainable}): "
        f"{rec['steps']} steps, centred-average loss lowest at lr "
        f"{rec['lrs'][rec['min_index']]:.3g}; suggested lr {rec['lr']:.3g} (a tenth of it)\n"
        f"use it: --set phases.{index}.lr={rec['lr']:.3g}   (or phases.{index}.lr=auto)\n"
        f"plot: {os.path.join(cfg.output, 'lr_find.png')}"
    )
    return 0
