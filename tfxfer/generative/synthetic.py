"""``augment.synthetic_ratio``: a run's training split, extended with generated images.

:func:`train_generator` trains the GAN on the **training split only** (the one argument it is
given), then writes its per-class sample grid (``samples.png``) and measures its KID
(:mod:`tfxfer.generative.quality`) into ``generator.json``. :func:`extend` adds ``r * n_c``
(rounded half up) generated images of every class ``c`` (``n_c`` its training images), so the
class proportions do not change, sampled once with the run's seed: every epoch sees the same
generated images, each through a fresh draw of the run's classic augmentation, as the real
images do. A reused generator (``augment.generator``) must know the run's classes and hold the
digests of its training images, none of which may be a validation image of the run.
Validation is returned untouched: no generated image is ever validated on, and no validation
image ever reaches the GAN.

Example:
    >>> from tfxfer.generative.synthetic import per_class_counts
    >>> per_class_counts([0, 0, 0, 1], 0.5, 2).tolist()   # 1.5 -> 2 (half up), 0.5 -> 1
    [2, 1]
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from tfxfer.atomic import write_json
from tfxfer.config import Config
from tfxfer.data.sources import ImageData, Split
from tfxfer.errors import UserError
from tfxfer.generative import quality, sample, train

log = logging.getLogger("tfxfer")

GRID = "samples.png"


def per_class_counts(labels, ratio: float, num_classes: int) -> np.ndarray:
    """Generated images per class: ``ratio`` times each class's count, rounded half up."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)
    return np.floor(counts * ratio + 0.5).astype(np.int64)


def train_generator(cfg: Config, data: ImageData, folder: str | Path, image_size: int) -> dict:
    """Trains (or resumes, or reuses) the GAN of ``data.train`` in ``folder``, writes its grid
    and KID; returns ``generator.json``'s content."""
    folder = Path(folder)
    meta = train.fit(
        data.train, data.class_names, cfg.generative, folder, seed=cfg.seed, verbose=cfg.verbose
    )
    if meta.get("kid_requested") != cfg.generative.kid_images:  # new, or asked for another size
        gen = sample.load(folder)
        sample.grid(gen, seed=cfg.seed, path=folder / GRID)
        meta = {
            **meta,
            **quality.measure(
                gen,
                data,
                cfg.backbone,
                cfg.weights,
                image_size,
                cfg.generative.kid_images,
                cfg.seed,
            ),
        }
        write_json(folder / train.META, meta)
    return meta


def changed_settings(cfg: Config) -> dict:
    """The ``generative.*`` keys set to other than their defaults."""
    default = Config().generative
    return {k: v for k, v in dataclasses.asdict(cfg.generative).items() if v != getattr(default, k)}


def refuse(cfg: Config) -> None:
    """For the recipes that train on no labelled split of their classes (``domain_adapt``,
    ``zero_shot``): a one-line error rather than an ignored ``synthetic_ratio``."""
    changed = changed_settings(cfg)
    if cfg.augment.synthetic_ratio or changed:
        raise UserError(
            f"augment.synthetic_ratio and generative.* work with the four scenario "
            f"recipes and auto, not {cfg.recipe}",
            got=dict(
                synthetic_ratio=cfg.augment.synthetic_ratio,
                **{f"generative.{k}": v for k, v in changed.items()},
            ),
            fix="drop augment.synthetic_ratio and the generative.* keys",
        )


def check(cfg: Config, workers: int) -> None:
    """Refuses, on every worker and before any training, what :func:`extend` could not do, and
    ``generative.*`` settings that nothing would read."""
    if not cfg.augment.synthetic_ratio:
        changed = changed_settings(cfg)
        if changed:
            raise UserError(
                "generative.* settings train the GAN of augment.synthetic_ratio, which is 0 here",
                got={f"generative.{k}": v for k, v in changed.items()},
                fix="add --set augment.synthetic_ratio=1, or drop the generative.* keys",
            )
        return
    if workers > 1 and not cfg.augment.generator:
        raise UserError(
            "a multi-worker run cannot train its generator (only the chief writes files)",
            got="augment.synthetic_ratio without augment.generator",
            fix="train it first: python -m tfxfer.generative --data ... --output "
            "DIR, then --set augment.generator=DIR",
        )
    if (
        cfg.augment.generator
        and cfg.overwrite
        and Path(cfg.output).resolve()
        in (Path(cfg.augment.generator).resolve(), *Path(cfg.augment.generator).resolve().parents)
    ):
        raise UserError(
            "augment.generator must lie outside an --output that --overwrite clears",
            got=dict(generator=cfg.augment.generator, output=cfg.output),
            fix="choose another --output, or drop --overwrite",
        )


def _check_unseen(gen: sample.Generator, folder: Path, data: ImageData) -> None:
    """A reused generator must not have trained on any of this run's validation images."""
    path = folder / train.DIGESTS
    if not path.is_file():
        raise UserError(
            "augment.generator must hold training_images.npy, the digests of the "
            "images it trained on",
            got=str(folder),
            fix="re-train it with this version: python -m tfxfer.generative ...",
        )
    shape = list(data.val.images.shape[1:])
    if shape != list(gen.meta["data_shape"]):
        raise UserError(
            "augment.generator must have been trained on images decoded like the "
            "run's (the same size), so that its digests can show that it never saw "
            "a validation image",
            got=f"{folder}: trained on {gen.meta['data_shape']}, the run decodes {shape}",
            fix="train it with the run's --image-size, or leave augment.generator "
            "unset so the run trains one on its training split",
        )
    seen = np.load(path)
    leaked = int(np.isin(train.digests(data.val.images), seen).sum())
    if leaked:
        raise UserError(
            "augment.generator must not have trained on this run's validation images",
            got=f"{folder}: {leaked} of the {len(data.val)} validation "
            "images were in its training data",
            fix="train the generator with the run's own data settings (--data, "
            "--seed, val_split, train_per_class), or leave augment.generator "
            "unset so the run trains one on its training split",
        )


def _check_classes(gen: sample.Generator, data: ImageData, folder: str) -> None:
    if gen.class_names != list(data.class_names):
        raise UserError(
            "augment.generator must have been trained on the run's classes, in the same order",
            got=f"{folder}: {gen.class_names[:6]} (the data has {list(data.class_names)[:6]})",
            fix="train a generator on this data (leave augment.generator unset)",
        )


def extend(cfg: Config, data: ImageData, out: Path | None, image_size: int) -> ImageData:
    """``data`` with ``r x N`` generated images appended to its training split.

    Args:
        cfg: The run's config (``augment.synthetic_ratio`` > 0).
        data: The run's real data.
        out: The run's output directory; the GAN trains into ``<out>/generator`` unless
            ``augment.generator`` names one.
        image_size: The run's input size (for the KID features).
    """
    check(cfg, 1 if out is not None else 2)
    if cfg.augment.generator:
        folder = Path(cfg.augment.generator)
        gen = sample.load(folder)
        _check_classes(gen, data, str(folder))
        _check_unseen(gen, folder, data)
    else:
        folder = Path(out) / "generator"
        train_generator(cfg, data, folder, image_size)
        gen = sample.load(folder)
    counts = per_class_counts(data.train_labels, cfg.augment.synthetic_ratio, data.num_classes)
    if not counts.any():
        log.warning(
            "synthetic_ratio=%g rounds to no generated image for any class",
            cfg.augment.synthetic_ratio,
        )
    worker, workers = data.workers
    if workers > 1:  # each worker samples its share, the same count on each, its own images
        counts = -(-counts // workers)
    labels = np.repeat(np.arange(data.num_classes), counts)
    images = sample.synthesize(
        gen, labels, seed=cfg.seed + worker, shape=data.train.images.shape[1:]
    )
    log.info(
        "synthetic_ratio=%g: %d generated training images (%s) from %s",
        cfg.augment.synthetic_ratio,
        len(labels),
        json.dumps(dict(zip(data.class_names, counts.tolist()))),
        folder,
    )
    train_split = Split(
        np.concatenate([data.train.images, images]),
        np.concatenate([np.asarray(data.train.labels), labels]),
    )
    everyone = (
        None
        if data.all_train_labels is None
        else np.concatenate([data.all_train_labels, np.tile(labels, workers)])
    )
    return dataclasses.replace(
        data, train=train_split, generated=len(labels) * workers, all_train_labels=everyone
    )
