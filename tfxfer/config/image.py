"""The image part of the config: the backbone and its head's shape, augmentation, MixUp and
CutMix, output tasks, what of the backbone trains, and the image-only outputs (TTA, LiteRT).

Import it from :mod:`tfxfer.config`, the public home of every part.

Example:
    >>> from tfxfer.config import Augment, Config
    >>> Config(augment="none").augment.preset      # a bare string names the preset
    'none'
    >>> Config().override(["augment.synthetic_ratio=1"]).augment
    Augment(preset='light', synthetic_ratio=1.0, generator=None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tfxfer.config.schema import check_choice, check_min
from tfxfer.errors import UserError

AUGMENT_PRESETS = ("none", "light", "standard", "strong")
AUGMENT_PLACES = ("data", "model")
POOLINGS = ("avg", "max")
TASK_LOSSES = ("crossentropy", "focal")
TTA_MODES = ("none", "flip", "crops")
EXPORT_FORMATS = ("litert-fp32", "litert-fp16", "litert-dynamic", "litert-int8")


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: a classic preset, and optionally GAN-generated images.

    ``augment=light`` (command line, TOML or Python) is short for ``augment.preset=light``.

    Attributes:
        preset: ``none``, ``light`` (flip), ``standard`` (flip, rotation, zoom, translation,
            contrast) or ``strong`` (flip + RandAugment); :mod:`tfxfer.data.augment`.
        synthetic_ratio: ``r``: add ``r x N`` generated images (``N`` the training images), in
            the training split's class proportions and labelled with their class, to every
            epoch, on top of the preset (which they go through too). They are sampled once per
            run: every epoch sees the same generated images, freshly augmented. 0 disables it. A
            class-conditional GAN is trained on the training split only, into
            ``<output>/generator`` (resumable), unless ``generator`` names one
            (:mod:`tfxfer.generative`). Validation never sees a generated image.
        generator: Directory of a trained generator (``python -m tfxfer.generative`` output, or
            an earlier run's ``<output>/generator``) to sample from instead of training one.
            It must have been trained on these classes, and on none of the run's validation
            images (checked against the digests it stores).
    """

    SHORTHAND = "preset"  # the key a bare string sets (a class attribute, not a field)

    preset: str = "light"
    synthetic_ratio: float = 0.0
    generator: str | None = None

    def __post_init__(self):
        check_choice("augment.preset", self.preset, AUGMENT_PRESETS)
        check_min("augment.synthetic_ratio", self.synthetic_ratio, 0.0)
        if self.generator is not None and not self.synthetic_ratio:
            raise UserError(
                "augment.generator is sampled only when augment.synthetic_ratio > 0",
                got=dict(generator=self.generator, synthetic_ratio=0.0),
                fix="add --set augment.synthetic_ratio=1 (or drop augment.generator)",
            )


@dataclass(frozen=True)
class Task:
    """One output head of a multi-task model.

    Attributes:
        name: The head's name: its output key in the model and the exported signature.
        groups: Empty: the dataset's own classes. Otherwise a coarse label set defined on them,
            ``{group: [dataset class, ...]}``; every dataset class must be in exactly one group.
        loss: ``crossentropy`` (with the config's ``label_smoothing``) or ``focal``.
        loss_weight: Weight of this head's loss in the total loss.
    """

    name: str = "label"
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    loss: str = "crossentropy"
    loss_weight: float = 1.0

    def __post_init__(self):
        check_choice(f"tasks loss (task {self.name!r})", self.loss, TASK_LOSSES)
        check_min(f"loss_weight (task {self.name!r})", self.loss_weight, 0.0)
        if not self.name.isidentifier():
            raise UserError(
                "a task name must be an identifier (letters, digits, _)",
                got=self.name,
                fix='rename the task, e.g. name = "coarse"',
            )


@dataclass(frozen=True)
class ImagePart:
    """What the image recipes read beyond the run and the head.

    Attributes:
        backbone: A registered backbone name (see ``tfxfer.models.backbones.names()``).
        weights: ``"imagenet"``, a path to a weights file, or None (random init).
        image_size: Square input size in pixels; None uses the backbone's default.
        head_pooling: ``avg`` or ``max`` global pooling over the backbone's feature map.
        head_hidden: Widths of optional hidden Dense layers (ReLU) in the head.
        augment: Augmentation (:class:`Augment`): the preset ``none``, ``light``, ``standard``
            or ``strong`` (``augment=none`` is short for ``augment.preset=none``), and
            ``synthetic_ratio``, GAN-generated training images (:mod:`tfxfer.generative`).
        augment_in: Where augmentation runs while training on images: ``data`` (in ``tf.data``,
            overlapping the training step; measured faster, see bench/README.md) or ``model``
            (inside the training graph). The saved and exported models are the same either way.
        mixup: MixUp alpha; 0 turns it off.
        cutmix: CutMix factor; 0 turns it off.
        tasks: Named output heads sharing the backbone (empty: one head, the dataset's classes).
            See :class:`Task`; MixUp, CutMix and ``class_weight`` are single-task only.
        train_bn: Train BatchNorm layers when the backbone is (partly) trainable. The default,
            False, keeps BN in inference mode, which is right for small batches and small data.
        freeze_blocks: Blocks frozen in ``partial`` phases; None uses the backbone's default.
        feature_views: Augmented views per training image cached for head-only phases.
        data_service: ``grpc://host:port`` of a ``tf.data`` service dispatcher: training
            batches are then produced by its workers (:func:`tfxfer.data.pipeline.via_service`);
            empty (the default) produces them in this process.
        tta: Test-time augmentation reported next to the plain validation accuracy: ``none``,
            ``flip`` or ``crops`` (:mod:`tfxfer.methods.tta`).
        wise_ft: WiSE-FT's alpha (Wortsman et al. 2022): the model shipped is
            ``(1 - alpha) * probe + alpha * fine-tuned``, every weight and BatchNorm statistic,
            ``probe`` being the model after the head-only phase that precedes the first phase
            training the backbone (:mod:`tfxfer.methods.wise_ft`). None: off (the fine-tuned
            model, as alpha = 1). ``"auto"``: alpha chosen from 0, 0.1, ..., 1 by accuracy on
            a held-out slice of the training split (``wise_ft_holdout``), which trains nothing;
            the validation split is never used to choose it.
        wise_ft_holdout: With ``wise_ft="auto"``, the share of each class's training images
            held out to choose alpha (at least one image per class).
        export: Extra files written and measured after training: any of ``litert-fp32``,
            ``litert-fp16``, ``litert-dynamic``, ``litert-int8`` (:mod:`tfxfer.deploy.litert`).
    """

    backbone: str = "MobileNetV2"
    weights: str | None = "imagenet"
    image_size: int | None = None
    head_pooling: str = "avg"
    head_hidden: tuple[int, ...] = ()
    augment: Augment = field(default_factory=Augment)
    augment_in: str = "data"
    mixup: float = 0.0
    cutmix: float = 0.0
    tasks: tuple[Task, ...] = ()
    train_bn: bool = False
    freeze_blocks: int | None = None
    feature_views: int = 4
    data_service: str = ""
    tta: str = "none"
    export: tuple[str, ...] = ()
    wise_ft: float | str | None = None
    wise_ft_holdout: float = 0.1

    def _check_image(self) -> None:
        if self.weights is not None and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        check_choice("head_pooling", self.head_pooling, POOLINGS)
        if self.data_service and not re.fullmatch(r"grpc://[^/:\s]+:\d+", self.data_service):
            raise UserError(
                "data_service must be the address of a tf.data service dispatcher, "
                "grpc://host:port",
                got=self.data_service,
                fix="pass e.g. --set data_service=grpc://10.0.0.2:5050, or leave it "
                "empty to read data in this process",
            )
        check_choice("augment_in", self.augment_in, AUGMENT_PLACES)
        check_choice("tta", self.tta, TTA_MODES)
        for fmt in self.export:
            check_choice("export", fmt, EXPORT_FORMATS)
        if isinstance(self.wise_ft, str) and self.wise_ft != "auto":
            raise UserError(
                'wise_ft must be a number in [0, 1] or "auto" (chosen on a held-out slice of '
                "the training split)",
                got=self.wise_ft,
                fix="pass e.g. --set wise_ft=0.5 or --set wise_ft=auto",
            )
        if isinstance(self.wise_ft, float) and not 0.0 <= self.wise_ft <= 1.0:
            raise UserError(
                "wise_ft must be in [0, 1]: the weight of the fine-tuned model against the "
                "head-only probe (1: the fine-tuned model)",
                got=self.wise_ft,
                fix="pass e.g. --set wise_ft=0.5, or leave it unset",
            )
        if self.wise_ft == "auto" and self.tasks:
            raise UserError(
                "wise_ft=auto chooses alpha by one head's accuracy, and this config has "
                "several tasks",
                got=[t.name for t in self.tasks],
                fix="set alpha yourself (e.g. --set wise_ft=0.5), or drop the tasks",
            )
        if not 0.0 < self.wise_ft_holdout <= 0.5:
            raise UserError(
                "wise_ft_holdout must be in (0, 0.5]: the share of each class's training "
                "images held out to choose wise_ft's alpha",
                got=self.wise_ft_holdout,
                fix="pass e.g. --set wise_ft_holdout=0.1",
            )
        check_min("feature_views", self.feature_views, 1)
        check_min("freeze_blocks", self.freeze_blocks, 0)
        check_min("mixup", self.mixup, 0.0)
        check_min("cutmix", self.cutmix, 0.0)
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise UserError("task names must be unique", got=names, fix="rename the duplicates")
