"""The GAN alone: ``tfxfer generative --data ... --output ...`` trains a run's generator.

Also ``python -m tfxfer.recipes.generative`` or ``python -m tfxfer.generative``.

The same data options as every recipe (``--data``, ``--set train_per_class=100``, ``--seed``,
...) select the training split; the GAN trains on it only and writes ``generator.keras``,
``generator.json`` (with KID against the validation split, on the backbone's features),
``samples.png`` (a grid per class), ``training_images.npy`` (digests of the images it trained
on), ``checkpoints/gan.npz`` and ``config.json`` into ``--output``. Re-running
the same command resumes from the last checkpoint (``generative.checkpoint_every`` steps). A
recipe then samples it with ``--set augment.synthetic_ratio=1 --set augment.generator=DIR``.

Example:
    >>> from tfxfer.recipes import generative
    >>> generative.CONFIG.generative.steps
    2000
    >>> generative.run(data="fashion_mnist", output="runs/gan")  # doctest: +SKIP
"""

from __future__ import annotations

from tfxfer import runner
from tfxfer.config import Config

CONFIG = Config(
    recipe="generative", data="fashion_mnist", train_per_class=100, output="runs/generative"
)
FLAGS = (runner.Flag("--steps", "generative.steps", "GAN training steps", type=int),)


run, main = runner.register(
    CONFIG,
    trainer="tfxfer.train.generator",
    flags=FLAGS,
    sections=("image", "generative"),
    help_sections=("generative",),
    phases_note="none: the GAN trains for generative.steps steps",
)

if __name__ == "__main__":
    raise SystemExit(main())
