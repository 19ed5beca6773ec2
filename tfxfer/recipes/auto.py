"""Let the data choose the recipe: measure it, print the plan and why, then run the plan.

``python -m tfxfer.recipes.auto --data DIR`` reads the data, runs the frozen pretrained backbone
once over a stratified probe of the training images, measures the images per class, LogME and a
label-free BatchNorm-statistics distance to ImageNet, and picks one of the four scenario recipes
with the documented thresholds of :class:`tfxfer.config.Auto` (:mod:`tfxfer.auto.train`). It
prints the plan with every measured value and the reason for each choice, writes it to
``plan.json``, and trains the chosen recipe through the same core as the recipe itself.
``--dry-run`` stops after the plan; ``--set auto.compare=true`` also runs a short version of
every candidate and keeps the best by validation accuracy; ``--set auto.lr_find=true`` lets the
learning-rate finder set every phase's rate.

Example:
    >>> from tfxfer.recipes import auto
    >>> the_plan = auto.plan("hymenoptera")  # doctest: +SKIP
    >>> the_plan.recipe  # doctest: +SKIP
    'small_similar'
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from tfxfer import runner
from tfxfer.config import Config
from tfxfer.recipes import large_different, large_similar, small_different, small_similar

if TYPE_CHECKING:
    from tfxfer.auto.plan import Plan

CONFIG = Config(recipe="auto", data="hymenoptera", output="runs/auto")
CANDIDATES = {
    m.CONFIG.recipe: m.CONFIG
    for m in (small_similar, small_different, large_similar, large_different)
}
FLAGS = (
    runner.Flag(
        "--dry-run", "auto.dry_run", "measure and print the plan, train nothing", is_switch=True
    ),
)


def train(cfg: Config, extra_augment=()):
    """Plans, then trains the chosen recipe (:func:`tfxfer.auto.train.run`)."""
    from tfxfer.auto import train as core  # here: --help needs no TensorFlow

    return core.run(cfg, extra_augment, candidates=CANDIDATES)


run, main = runner.register(
    CONFIG,
    trainer=train,
    flags=FLAGS,
    sections=(*runner.IMAGE_SECTIONS, "auto"),
    help_sections=("auto",),
    phases_note="those of the recipe the plan chooses (" + ", ".join(CANDIDATES) + ")",
)


def plan(data: str | Config = CONFIG.data, **overrides) -> Plan:
    """The plan for ``data`` (a ``--data`` value, or a whole config), without training."""
    cfg = data if isinstance(data, Config) else CONFIG.replace(data=data)
    cfg = cfg.replace(**overrides) if overrides else cfg
    return run(cfg.replace(auto=dataclasses.replace(cfg.auto, dry_run=True)))


if __name__ == "__main__":
    raise SystemExit(main())
