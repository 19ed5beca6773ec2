"""Small data, different from ImageNet: freeze the first k blocks, retrain the rest gently.

Early blocks hold generic edges and textures that transfer; later blocks are ImageNet-specific,
so they are retrained at a low learning rate after a short head warm-up. ``freeze_blocks``
(``--freeze-blocks``) defaults to the backbone's registry value (3 of 5 for most families).
BatchNorm stays in inference mode. The default data is 100 Fashion-MNIST images per class.

Example:
    >>> from tfxfer.recipes import small_different
    >>> small_different.CONFIG.phases[-1].trainable
    'partial'
"""

from tfxfer import runner
from tfxfer.config import Config, Phase

CONFIG = Config(
    recipe="small_different",
    data="fashion_mnist",
    train_per_class=100,
    backbone="MobileNetV2",
    weights="imagenet",
    augment="light",
    batch_size=32,
    phases=(
        Phase(name="head", trainable="head", epochs=5, optimizer="adam", lr=1e-3),
        Phase(
            name="partial",
            trainable="partial",
            epochs=10,
            optimizer="adam",
            lr=1e-4,
            schedule="cosine",
        ),
    ),
    output="runs/small_different",
)


run, main = runner.register(CONFIG, sections=runner.IMAGE_SECTIONS)

if __name__ == "__main__":
    raise SystemExit(main())
