"""Small data, similar to ImageNet: a frozen backbone as feature extractor, train the head.

The backbone runs once per image (and per augmented view) and the head trains on the cached
features, so this recipe costs about one forward pass of the data.

Example:
    >>> from tfxfer.recipes import small_similar
    >>> cfg = small_similar.CONFIG.replace(output="runs/ants_bees")
    >>> result = small_similar.run(cfg)  # doctest: +SKIP
"""

from tfxfer import runner
from tfxfer.config import Config, Phase

CONFIG = Config(
    recipe="small_similar",
    data="hymenoptera",
    backbone="MobileNetV2",
    weights="imagenet",
    augment="light",
    head_dropout=0.2,
    feature_views=4,
    batch_size=32,
    phases=(Phase(name="head", trainable="head", epochs=15, optimizer="adam", lr=1e-3),),
    output="runs/small_similar",
)


run, main = runner.register(CONFIG, sections=runner.IMAGE_SECTIONS)

if __name__ == "__main__":
    raise SystemExit(main())
