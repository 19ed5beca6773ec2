"""``domain_adapt``'s network, chosen from the data when ``backbone`` is ``auto`` (its default).

Every published digit result trains a small network from scratch, and photos need a backbone
pretrained on ImageNet, so the recipe looks at both domains' images before it builds anything
(:func:`choose`):

- **small images** (the longest side of every domain's images at most :data:`SMALL` = 32 px,
  as MNIST, USPS and MNIST-M are): one of the papers' digit networks
  (:mod:`tfxfer.models.digits`), from scratch at its own size:

  - every domain grey: ``LeNet``, the Transfer-Learning-Library's MNIST <-> USPS network
    (28 px), with a domain classifier of two 500-wide layers, as wide as its features;
  - a colour domain among them (MNIST-M): ``DannMnist``, the DANN paper's MNIST -> MNIST-M
    network (28 px), with the paper's label classifier FC 100-100 and domain classifier
    FC 100;
- **anything larger** (photos): ImageNet ``MobileNetV2`` at its 224 px, as the scenario
  recipes use.

Only what the user left at the recipe's default is chosen: ``--weights FILE``,
``--image-size``, ``--set head_hidden=...`` and ``--set adapt.domain_hidden=...`` are kept, and
a named ``--backbone`` skips the choice. The plan line states what was chosen and why, and the
chosen values are what ``config.json`` records.

Example:
    >>> pick((28, 1), (16, 1)).backbone, pick((28, 1), (28, 3)).backbone
    ('LeNet', 'DannMnist')
    >>> pick((28, 1), (500, 3)).backbone
    'MobileNetV2'
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image

from tfxfer.config import Config

AUTO = "auto"
SMALL = 32  # px: the longest image side up to which a domain counts as digit-sized
PROBE_FILES = 32  # images opened per folder to measure it
# The built-in datasets' images, (longest side, channels), known without reading (or
# downloading) them; the photo sets' sizes vary, all far above SMALL.
BUILTIN_SHAPES = {
    "mnist": (28, 1),
    "fashion_mnist": (28, 1),
    "usps": (16, 1),
    "mnist_m": (32, 3),
    "hymenoptera": (500, 3),
    "cats_and_dogs_filtered": (500, 3),
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass(frozen=True)
class Choice:
    """The network :func:`pick` chose, and the settings that go with it.

    Attributes:
        backbone: Registered backbone name.
        weights: ``imagenet`` or None (from scratch).
        image_size: Input size in pixels.
        head_hidden: Hidden widths of the label head.
        domain_hidden: Hidden widths of the domain classifier.
        why: One line: what was measured and the rule that applied.
    """

    backbone: str
    weights: str | None
    image_size: int
    head_hidden: tuple[int, ...]
    domain_hidden: tuple[int, ...]
    why: str


def pick(*shapes: tuple[int, int]) -> Choice:
    """The network for domains whose images are ``(longest side, channels)``: the source's
    first, then the target's."""
    side = max(s for s, _ in shapes)
    grey = all(c == 1 for _, c in shapes)
    measured = " and ".join(
        f"{role} {s} px {'grey' if c == 1 else 'colour'}"
        for role, (s, c) in zip(("source", "target"), shapes)
    )
    if side > SMALL:
        rule = f"larger than {SMALL} px, photos: ImageNet MobileNetV2 at 224 px"
        return Choice("MobileNetV2", "imagenet", 224, (), (1024, 1024), f"{measured}: {rule}")
    if grey:
        rule = f"grey digits up to {SMALL} px: TLlib's LeNet from scratch at 28 px"
        return Choice("LeNet", None, 28, (), (500, 500), f"{measured}: {rule}")
    rule = (
        f"digits up to {SMALL} px, in colour: the DANN paper's MNIST -> MNIST-M network from "
        "scratch at 28 px, label classifier FC 100-100, domain classifier FC 100"
    )
    return Choice("DannMnist", None, 28, (100, 100), (100,), f"{measured}: {rule}")


def shape_of(data: str) -> tuple[int, int]:
    """``(longest side, channels)`` of a domain's images: known for the built-in datasets
    (also as ``tfds:NAME``), else measured on up to :data:`PROBE_FILES` files of its folder
    (the largest side and the most channels found). What cannot be looked into (other
    ``tfds:`` and ``tfrecord:`` sources) counts as photos."""
    name = data[5:] if data.startswith("tfds:") else data
    if name in BUILTIN_SHAPES:
        return BUILTIN_SHAPES[name]
    if not os.path.isdir(data):
        return (SMALL + 1, 3)
    side, channels, seen = 0, 1, 0
    for folder, dirs, files in os.walk(data):
        dirs.sort()
        for name in sorted(files):
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            try:
                with Image.open(os.path.join(folder, name)) as image:
                    side = max(side, *image.size)
                    channels = max(channels, 1 if image.mode in ("L", "1", "I;16") else 3)
            except OSError:
                continue
            seen += 1
            if seen >= PROBE_FILES:
                return side, channels
    return (side, channels) if seen else (SMALL + 1, 3)


def choose(cfg: Config) -> tuple[Config, str | None]:
    """``cfg`` with its network chosen from the data when ``cfg.backbone`` is ``auto``, and the
    plan line (None when the user named a backbone). ``weights``, ``image_size``,
    ``head_hidden`` and ``adapt.domain_hidden`` set away from their defaults are the user's
    and are kept."""
    if cfg.backbone != AUTO:
        return cfg, None
    defaults = type(cfg)()
    shapes = [shape_of(cfg.data)] + ([shape_of(cfg.adapt.target)] if cfg.adapt.target else [])
    c = pick(*shapes)
    keep = {
        "weights": cfg.weights != defaults.weights,
        "image_size": cfg.image_size != defaults.image_size,
        "head_hidden": tuple(cfg.head_hidden) != tuple(defaults.head_hidden),
        "domain_hidden": tuple(cfg.adapt.domain_hidden) != tuple(defaults.adapt.domain_hidden),
    }
    chosen = cfg.replace(
        backbone=c.backbone,
        weights=cfg.weights if keep["weights"] else c.weights,
        image_size=cfg.image_size if keep["image_size"] else c.image_size,
        head_hidden=cfg.head_hidden if keep["head_hidden"] else c.head_hidden,
        adapt={
            "domain_hidden": cfg.adapt.domain_hidden if keep["domain_hidden"] else c.domain_hidden
        },
    )
    kept = [k for k, v in keep.items() if v]
    line = f"plan: network {c.backbone}, because {c.why}" + (
        f"; kept your {', '.join(kept)}" if kept else ""
    )
    return chosen, line
