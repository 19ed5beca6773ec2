"""Checks of a resolved config that need no data: run by :func:`tfxfer.runner.run` before any
trainer reads an image, so that a mistake costs seconds, not a trained phase.

What the config alone cannot know, the backbone's spec can: its minimum input size, its block
count. An output directory that cannot be written is found here too (before a dry run of
``auto`` measures anything, or a text encoder loads).

Example:
    >>> import tempfile
    >>> from tfxfer.config import Config
    >>> check(Config(output=tempfile.mkdtemp(), image_size=16))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfxfer.errors.UserError: image_size must be >= 32 for MobileNetV2; got 16. Fix: ...
"""

from __future__ import annotations

import logging

from tfxfer.atomic import writable_dir
from tfxfer.config import Config
from tfxfer.errors import UserError
from tfxfer.models import backbones

log = logging.getLogger("tfxfer")

PARTIAL_SCOPES = ("partial", "gradual")  # the phase scopes that read freeze_blocks


def check(cfg: Config, image: bool = True) -> None:
    """Raises a :class:`UserError` for anything wrong in ``cfg`` that shows without data;
    ``image``: whether the recipe reads the image part (backbone, size, frozen blocks)."""
    if image:
        _check_image(cfg)
    writable_dir(cfg.output, keep=False)  # created by the chief alone, when the run starts


def _check_image(cfg: Config) -> None:
    backbones.resolve_size(cfg.backbone, cfg.image_size)  # the name, and the family's minimum
    if backbones.get(cfg.backbone).from_scratch and cfg.weights == "imagenet":
        raise UserError(
            f"{cfg.backbone} has no ImageNet weights: it is a digit network trained from scratch",
            got="weights='imagenet'",
            fix="pass --weights none, or --weights PATH to a weights file saved from it",
        )
    if cfg.freeze_blocks is None:
        return
    n = backbones.num_blocks(cfg.backbone)
    if cfg.freeze_blocks > n:
        raise UserError(
            f"freeze_blocks must be between 0 and {n} ({cfg.backbone} is split into {n} blocks)",
            got=cfg.freeze_blocks,
            fix=f"pass --freeze-blocks in 0..{n}",
        )
    partial = [p.name for p in cfg.phases if p.trainable in PARTIAL_SCOPES]
    if not partial:
        log.warning(
            "freeze_blocks=%d has no effect: no phase of %s is partial or gradual "
            "(its phases train %s)",
            cfg.freeze_blocks,
            cfg.recipe,
            ", ".join(sorted({p.trainable for p in cfg.phases})),
        )


def warn_batch(batch_size: int, train_images: int) -> None:
    """Says, once the data is read, when a batch is larger than the whole training split: the
    run goes on (every epoch is then one step over all of it), which is rarely what was meant.
    """
    if batch_size > train_images:
        log.warning(
            "batch_size %d is larger than the %d training images: every epoch is one "
            "step of %d images (pass e.g. --batch-size %d)",
            batch_size,
            train_images,
            train_images,
            min(32, train_images),
        )
