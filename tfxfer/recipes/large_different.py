"""Large data, different from ImageNet: retrain everything (``--weights none``: from scratch).

With plenty of data from another domain, every layer is trained, starting from ImageNet weights
(which still converge faster than random ones) or from scratch with ``--weights none``.
BatchNorm is trained too (``train_bn=True``): its ImageNet statistics do not fit the new domain
and large data gives reliable batch statistics. The default data is all of Fashion-MNIST.

Example:
    >>> from tfxfer.recipes import large_different
    >>> large_different.CONFIG.train_bn
    True
"""

from tfxfer import runner
from tfxfer.config import Config, Phase

CONFIG = Config(
    recipe="large_different",
    data="fashion_mnist",
    backbone="MobileNetV2",
    weights="imagenet",
    augment="light",
    train_bn=True,
    batch_size=64,
    phases=(
        Phase(name="all", trainable="all", epochs=10, optimizer="adam", lr=5e-4, schedule="cosine"),
    ),
    output="runs/large_different",
)


run, main = runner.register(CONFIG, sections=runner.IMAGE_SECTIONS)

if __name__ == "__main__":
    raise SystemExit(main())
