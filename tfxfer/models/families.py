"""The registered backbone families: what tfxfer knows about each (:class:`BackboneSpec`), as
data. :mod:`tfxfer.models.backbones` builds them and holds the rules (blocks, sizes, weights).

Example:
    >>> from tfxfer.models.families import SPECS
    >>> [s.name for s in SPECS if s.from_scratch]
    ['DannMnist', 'LeNet', 'DTN']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BackboneSpec:
    """What tfxfer knows about one backbone.

    Attributes:
        name: Registry name (the Keras Applications class name, or a variant of it).
        constructor: Name of the ``keras.applications`` function.
        preprocess: Input scaling the family was trained with: ``tf`` ([-1, 1]), ``torch``
            (ImageNet mean/std), ``caffe`` (BGR, mean-subtracted) or ``none`` (the Keras model
            already rescales 0-255 input itself).
        default_size: The size the ImageNet weights were trained at.
        min_size: The smallest input Keras Applications accepts for this family.
        feature_width: Channels of the last feature map (the head's input width).
        boundaries: Indices into ``backbone.layers`` where blocks 2..5 start.
        num_layers: ``len(backbone.layers)`` when ``boundaries`` were derived.
        default_freeze: Blocks frozen by default in ``partial`` phases (``small_different``).
        kwargs: Extra constructor arguments (e.g. ``alpha`` for width variants).
        imagenet_stem_rescaling: Keras adds ``Rescaling(1/sqrt(std))`` after the stem's
            ``Normalization`` only when it loads ImageNet weights; tfxfer adds it for every
            ``weights`` value (see the module docstring).
        from_scratch: A network of :mod:`tfxfer.models.digits` (``constructor`` names its
            builder), with no ImageNet weights; its ``boundaries`` are fixed by its design (one
            block per weighted stage, so fewer than five blocks) and its output is already a
            flat feature vector.
    """

    name: str
    constructor: str
    preprocess: str
    default_size: int
    feature_width: int
    boundaries: tuple[int, ...]
    num_layers: int
    min_size: int = 32
    default_freeze: int = 3
    kwargs: dict[str, Any] = field(default_factory=dict)
    imagenet_stem_rescaling: bool = False
    from_scratch: bool = False

    @property
    def num_blocks(self) -> int:
        """Blocks of this network: five for every Keras Applications family."""
        return len(self.boundaries) + 1


def _spec(name, ctor, prep, size, width, bounds, n_layers, **extra) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        constructor=ctor,
        preprocess=prep,
        default_size=size,
        feature_width=width,
        boundaries=bounds,
        num_layers=n_layers,
        **extra,
    )


# Boundaries and layer counts derived with Keras 3.15.1 by `derive_boundaries` on `build(name,
# default_size, weights=None)` (the test suite re-checks them).
SPECS = [
    _spec("MobileNet", "MobileNet", "tf", 224, 1024, (11, 24, 37, 74), 86),
    _spec(
        "MobileNet025", "MobileNet", "tf", 224, 256, (11, 24, 37, 74), 86, kwargs={"alpha": 0.25}
    ),
    _spec("MobileNetV2", "MobileNetV2", "tf", 224, 1280, (13, 31, 58, 120), 154),
    _spec("MobileNetV3Small", "MobileNetV3Small", "none", 224, 576, (6, 21, 39, 113), 157),
    _spec("MobileNetV3Large", "MobileNetV3Large", "none", 224, 960, (15, 33, 78, 143), 187),
    _spec(
        "EfficientNetB0",
        "EfficientNetB0",
        "none",
        224,
        1280,
        (22, 51, 80, 167),
        238,
        imagenet_stem_rescaling=True,
    ),
    _spec(
        "EfficientNetB1",
        "EfficientNetB1",
        "none",
        240,
        1280,
        (34, 78, 122, 239),
        340,
        imagenet_stem_rescaling=True,
    ),
    _spec(
        "EfficientNetB2",
        "EfficientNetB2",
        "none",
        260,
        1408,
        (34, 78, 122, 239),
        340,
        imagenet_stem_rescaling=True,
    ),
    _spec(
        "EfficientNetB3",
        "EfficientNetB3",
        "none",
        300,
        1536,
        (34, 78, 122, 269),
        385,
        imagenet_stem_rescaling=True,
    ),
    _spec("EfficientNetV2B0", "EfficientNetV2B0", "none", 224, 1280, (9, 21, 36, 152), 270),
    _spec("EfficientNetV2B1", "EfficientNetV2B1", "none", 240, 1280, (14, 33, 55, 201), 334),
    _spec("EfficientNetV2B2", "EfficientNetV2B2", "none", 260, 1408, (14, 33, 55, 201), 349),
    _spec("EfficientNetV2B3", "EfficientNetV2B3", "none", 300, 1536, (14, 33, 55, 231), 409),
    _spec("EfficientNetV2S", "EfficientNetV2S", "none", 384, 1280, (14, 40, 69, 290), 513),
    _spec("ResNet50", "ResNet50", "caffe", 224, 2048, (6, 39, 81, 143), 175),
    _spec("ResNet50V2", "ResNet50V2", "tf", 224, 2048, (4, 34, 80, 148), 190),
    _spec("DenseNet121", "DenseNet121", "torch", 224, 1024, (6, 52, 140, 312), 427),
    _spec("ConvNeXtTiny", "ConvNeXtTiny", "none", 224, 768, (3, 24, 46, 110), 133),
    _spec("Xception", "Xception", "tf", 299, 2048, (12, 22, 32, 122), 132, min_size=71),
    _spec("InceptionV3", "InceptionV3", "tf", 299, 2048, (10, 17, 93, 241), 311, min_size=75),
    _spec("NASNetMobile", "NASNetMobile", "tf", 224, 1056, (10, 67, 304, 541), 769),
    _spec("VGG16", "VGG16", "caffe", 224, 512, (3, 6, 10, 14), 19, default_freeze=4),
    # digit networks from scratch (tfxfer.models.digits): blocks are their weighted stages
    _spec(
        "DannMnist",
        "DannMnist",
        "tf",
        28,
        768,
        (3,),
        6,
        min_size=28,
        default_freeze=1,
        from_scratch=True,
    ),
    _spec(
        "LeNet",
        "LeNet",
        "tf",
        28,
        500,
        (4, 8),
        11,
        min_size=28,
        default_freeze=2,
        from_scratch=True,
    ),
    _spec(
        "DTN",
        "DTN",
        "tf",
        32,
        512,
        (5, 9, 13),
        18,
        min_size=28,
        default_freeze=3,
        from_scratch=True,
    ),
]
