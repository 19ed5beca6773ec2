"""The ``generative`` recipe's trainer: the GAN of :mod:`tfxfer.generative`, alone, into an
output directory claimed like every run's (:func:`tfxfer.train.rundir.claim`).

Example:
    >>> from tfxfer.train import generator
    >>> generator.GeneratorRun({"steps": 0}, "runs/gan").model is None
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tfxfer.config import Config
from tfxfer.generative import synthetic
from tfxfer.train import loop, rundir

log = logging.getLogger("tfxfer")


@dataclass
class GeneratorRun:
    """What :func:`run` returns: ``generator.json``'s content and the folder."""

    meta: dict
    output: str
    model = None  # nothing for the runner to export

    def summary(self) -> str:
        m = self.meta
        kid = (
            f"KID vs validation {m['kid']:.4f} +- {m['kid_std']:.4f} (real training images: "
            f"{m['kid_real']:.4f}) on {m['kid_features']}"
            if m.get("kid") is not None
            else f"KID not measured ({m['kid_images']} validation images)"
        )
        return (
            f"generator: {m['image_size']} px x {m['channels']}, {m['steps']} steps, "
            f"{m['seconds']} s; {kid}; samples: {Path(self.output) / synthetic.GRID}"
        )


def run(cfg: Config, extra_augment=()) -> GeneratorRun:
    """Trains the generator of ``cfg``'s training split into ``cfg.output``."""
    del extra_augment  # a GAN has no use for classic augmentation layers
    size, _ = loop.start(cfg)
    with rundir.claim(cfg) as out:
        data = loop.load_data(cfg, size)
        log.info("%s", data.describe())
        meta = synthetic.train_generator(cfg, data, out, size)
    rundir.release(out)
    return GeneratorRun(meta, str(out))
