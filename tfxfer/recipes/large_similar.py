"""Large data, similar to ImageNet: warm the new head up, then fine-tune everything gently.

The warm-up trains the head on cached features so that the randomly initialised head does not
send large gradients into the pretrained backbone; then the whole backbone trains at a small
learning rate with BatchNorm kept in inference mode.

Example:
    >>> from tfxfer.recipes import large_similar
    >>> [p.trainable for p in large_similar.CONFIG.phases]
    ['head', 'all']
"""

from tfxfer import runner
from tfxfer.config import Config, Phase

CONFIG = Config(
    recipe="large_similar",
    data="cats_and_dogs_filtered",
    backbone="MobileNetV2",
    weights="imagenet",
    augment="light",
    batch_size=32,
    phases=(
        Phase(name="warmup", trainable="head", epochs=5, optimizer="adam", lr=1e-3),
        Phase(
            name="finetune", trainable="all", epochs=5, optimizer="adam", lr=1e-5, schedule="cosine"
        ),
    ),
    output="runs/large_similar",
)


run, main = runner.register(CONFIG, sections=runner.IMAGE_SECTIONS)

if __name__ == "__main__":
    raise SystemExit(main())
