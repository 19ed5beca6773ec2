"""``python -m tfxfer.generative --data ... --output ...``: trains a run's generator alone.

The same data options as every recipe (``--data``, ``--set train_per_class=100``, ``--seed``,
...) select the training split; the GAN trains on it only and writes ``generator.keras``,
``generator.json`` (with KID against the validation split, on the backbone's features),
``samples.png`` (a grid per class), ``training_images.npy`` (digests of the images it trained
on), ``checkpoints/gan.npz`` and ``config.json`` into ``--output``. Re-running
the same command resumes from the last checkpoint (``generative.checkpoint_every`` steps). A
recipe then samples it with ``--set augment.synthetic_ratio=1 --set augment.generator=DIR``.

Example:
    >>> from tfxfer.generative import command
    >>> command.CONFIG.generative.steps
    2000
    >>> command.run(data="fashion_mnist", output="runs/gan")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tfxfer import cli
from tfxfer.config import Config
from tfxfer.generative import synthetic
from tfxfer.train import loop, rundir

log = logging.getLogger("tfxfer")

CONFIG = Config(recipe="generative", data="fashion_mnist", train_per_class=100,
                output="runs/generative")
FLAGS = (cli.Flag("--steps", "generative.steps", "GAN training steps", type=int),)


@dataclass
class GeneratorRun:
    """What :func:`train` returns: ``generator.json``'s content and the folder."""

    meta: dict
    output: str
    model = None  # nothing for cli.run to export

    def summary(self) -> str:
        m = self.meta
        kid = (f"KID vs validation {m['kid']:.4f} +- {m['kid_std']:.4f} (real training images: "
               f"{m['kid_real']:.4f}) on {m['kid_features']}" if m.get("kid") is not None
               else f"KID not measured ({m['kid_images']} validation images)")
        return (f"generator: {m['image_size']} px x {m['channels']}, {m['steps']} steps, "
                f"{m['seconds']} s; {kid}; samples: {Path(self.output) / synthetic.GRID}")


def train(cfg: Config, extra_augment=()) -> GeneratorRun:
    """Trains the generator of ``cfg``'s training split into ``cfg.output``."""
    del extra_augment  # a GAN has no use for classic augmentation layers
    size, _ = loop.start(cfg)
    with rundir.claim(cfg) as out:
        data = loop.load_data(cfg, size)
        log.info("%s", data.describe())
        meta = synthetic.train_generator(cfg, data, out, size)
    rundir.release(out)
    return GeneratorRun(meta, str(out))


run, main = cli.entry_points(CONFIG, trainer=train, flags=FLAGS, sections=("generative",),
                             phases_note="none: the GAN trains for generative.steps steps")
