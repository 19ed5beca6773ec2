"""A recipe's command line: the shared options, the recipe's own flags, ``--set``, and the help
that lists its phases and sections.

Precedence, lowest first: the recipe's defaults, ``--config FILE``, the named flags, then each
``--set key=value`` in order. Every user mistake ends in a one-line ``error:`` message and exit
status 2, never a traceback. Nothing here imports TensorFlow: ``--help`` prints without it.

Example:
    >>> from tfxfer.runner.flags import resolve_config
    >>> from tfxfer.recipes.small_similar import CONFIG
    >>> resolve_config(CONFIG, ["--epochs", "3", "--set", "head_dropout=0.5"]).phases[0].epochs
    3
"""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import dataclass

from tfxfer.config import Config
from tfxfer.errors import UserError
from tfxfer.models import backbones

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


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other user error
        raise UserError(f"invalid command line: {message}", fix=f"see {self.prog} --help")


def build_parser(
    defaults: Config,
    prog: str,
    flags: tuple[Flag, ...] = (),
    help_sections: tuple[str, ...] = (),
    phases_note: str | None = None,
    image: bool = True,
) -> argparse.ArgumentParser:
    """The recipe's parser; its help names the recipe's ``help_sections`` (with their keys and
    defaults) and its phases, or ``phases_note`` when they are chosen at run time (``auto``).
    ``image``: whether the recipe reads the image part (its flags: backbone, size, ...)."""
    p = Parser(
        prog=prog,
        description=f"tfxfer recipe '{defaults.recipe}': {_describe(defaults, phases_note, image)}",
        epilog=EPILOG
        + _epilog(defaults, help_sections, phases_note)
        + ("backbones: " + ", ".join(backbones.names()) if image else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of config keys")
    p.add_argument("--data", help=f"directory, tfds:NAME, or built-in (default {defaults.data})")
    if image:
        p.add_argument("--backbone", help=f"registered backbone (default {defaults.backbone})")
        p.add_argument(
            "--weights",
            help=f"imagenet, none, or a weights file path (default {defaults.weights})",
        )
        p.add_argument("--image-size", type=int, help="square input size (default: backbone's)")
    p.add_argument("--epochs", type=int, help="epochs of every phase")
    p.add_argument(
        "--batch-size", type=int, help=f"global batch size (default {defaults.batch_size})"
    )
    if image:
        p.add_argument("--freeze-blocks", type=int, help="blocks (0-5) frozen in partial phases")
    p.add_argument("--strategy", help="auto|default|mirrored|multiworker|tpu (default auto)")
    p.add_argument("--seed", type=int, help=f"random seed (default {defaults.seed})")
    p.add_argument("--output", help=f"output directory (default {defaults.output})")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in --output even if it holds another run (without it, "
        "a different run is refused and the same config resumes)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output with changed phase rates (e.g. after a "
        "NaN stop): completed phases are kept, --set phases.N.lr=... applies to "
        "the phases still to run",
    )
    p.add_argument(
        "--mixed-precision",
        action="store_true",
        help="mixed precision: float16 on GPUs, bfloat16 on TPUs and CPUs; the logits "
        "layer and the loss stay float32",
    )
    p.add_argument(
        "--no-cache-features",
        action="store_true",
        help="train head-only phases on images instead of cached backbone features",
    )
    if image:
        p.add_argument(
            "--export",
            metavar="FORMATS",
            help="comma-separated extra exports, each measured on the validation set: "
            "litert-fp32,litert-fp16,litert-dynamic,litert-int8 (the litert- "
            "prefix is optional, as in tfxfer export)",
        )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key (repeatable)",
    )
    for flag in flags:
        if flag.is_switch:
            p.add_argument(
                flag.name,
                dest=_dest(flag),
                action="store_const",
                const=True,
                help=f"{flag.help} (sets {flag.key}=true)",
            )
            continue
        p.add_argument(
            flag.name,
            dest=_dest(flag),
            help=f"{flag.help} (sets {flag.key})",
            type=flag.type,
            metavar=flag.name.lstrip("-").upper().replace("-", "_"),
        )
    return p


def _dest(flag: Flag) -> str:
    return "recipe_" + flag.name.lstrip("-").replace("-", "_")


def _describe(cfg: Config, phases_note: str | None = None, image: bool = True) -> str:
    phases = phases_note or " -> ".join(
        f"phases.{i} {p.name}[{p.trainable}, {p.epochs} ep, {p.optimizer} {p.lr}]"
        for i, p in enumerate(cfg.phases)
    )
    model = cfg.backbone if image else cfg.text.preset or "a text encoder (--preset)"
    return f"{model} on {cfg.data}; phases: {phases}"


def _epilog(cfg: Config, help_sections: tuple[str, ...], phases_note: str | None) -> str:
    lines = []
    if phases_note is None:
        named = ", ".join(f"phases.{i} or phases.{p.name}" for i, p in enumerate(cfg.phases))
        lines.append(f"phases, by index from 0 or by name: {named}")
        lines.append(f"  e.g. --set phases.{cfg.phases[-1].name}.lr=1e-5")
    for section in help_sections:
        keys = ", ".join(
            f"{section}.{k}={json.dumps(v)}" for k, v in cfg.to_dict()[section].items()
        )
        lines.append(f"{section}.* keys (defaults): {keys}")
    return "".join(
        textwrap.fill(line, 99, subsequent_indent="  ", break_on_hyphens=False) + "\n"
        for line in lines
    )


# Flags that set the config key of the same name.
_FLAG_KEYS = (
    "data",
    "backbone",
    "weights",
    "image_size",
    "batch_size",
    "freeze_blocks",
    "strategy",
    "seed",
    "output",
)


def resolve_config(
    defaults: Config,
    argv: list[str] | None,
    prog: str = "tfxfer",
    flags: tuple[Flag, ...] = (),
    **help_parts,
) -> Config:
    """Applies a command line to a recipe's default config (``flags``: the recipe's own;
    ``help_parts``: :func:`build_parser`'s ``help_sections``, ``phases_note`` and ``image``)."""
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
    changes = {k: getattr(args, k) for k in _FLAG_KEYS if getattr(args, k, None) is not None}
    if args.overwrite:
        changes["overwrite"] = True
    if args.resume:
        changes["resume"] = True
    if args.no_cache_features:
        changes["cache_features"] = False
    if args.mixed_precision:
        changes["mixed_precision"] = True
    if getattr(args, "export", None):
        changes["export"] = list(export_formats(args.export))
    if changes:
        cfg = cfg.replace(**changes)
    if args.epochs is not None:
        cfg = cfg.with_epochs(args.epochs)
    return cfg.override(args.set) if args.set else cfg


def export_formats(text: str) -> tuple[str, ...]:
    """``--export``/``--litert`` values as config ``export`` formats: one vocabulary for
    training and ``tfxfer export``, the ``litert-`` prefix optional in both.

    Example:
        >>> export_formats("int8, litert-fp16")
        ('litert-int8', 'litert-fp16')
    """
    values = (v.strip() for v in text.split(","))
    return tuple(v if v.startswith("litert-") else f"litert-{v}" for v in values if v)
