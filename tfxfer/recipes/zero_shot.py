"""Zero-shot classification by attributes: recognise classes never seen in training.

Classes are described by an attribute table (``--attributes FILE.csv``: ``class,attr1,...``,
binary or continuous values); the images of the ``--unseen`` classes are never used in training.
DAP and ESZSL are fitted on frozen backbone features of the seen classes
(:mod:`tfxfer.zero_shot.train`) and evaluated in ZSL (unseen classes only) and generalised ZSL
(all classes). The exported model classifies over all classes with ESZSL. The default is
Fashion-MNIST with its built-in hand-made table (``tfxfer/zero_shot/tables/``), Coat, Sneaker and
Trouser unseen, on ImageNet MobileNetV2 at 112 px (the 224 px weights:
Keras has separate files only for 96, 128, 160 and 192).

Example:
    >>> from tfxfer.recipes import zero_shot
    >>> zero_shot.CONFIG.zero_shot.unseen
    ('Coat', 'Sneaker', 'Trouser')
"""

from tfxfer import runner
from tfxfer.config import Config, ZeroShot

CONFIG = Config(
    recipe="zero_shot",
    data="fashion_mnist",
    backbone="MobileNetV2",
    weights="imagenet",
    image_size=112,
    augment="none",
    batch_size=128,
    train_per_class=1000,
    val_per_class=500,
    zero_shot=ZeroShot(unseen=("Coat", "Sneaker", "Trouser")),
    output="runs/zero_shot",
)
# Unseen splits of the demo (bench/zero_shot.py): in each, every attribute of the table takes both
# of its values among the seen classes, so each can be learned from seen images.
DEMO_SPLITS = (
    ("Coat", "Sneaker", "Trouser"),
    ("Pullover", "Sandal", "Dress"),
    ("Shirt", "Ankle_boot", "Bag"),
)
FLAGS = (
    runner.Flag(
        "--attributes",
        "zero_shot.attributes",
        "attribute table CSV: class,attr1,attr2,... (default: the data's built-in table)",
    ),
    runner.Flag(
        "--unseen",
        "zero_shot.unseen",
        "comma-separated classes never used in training",
        is_list=True,
    ),
)

run, main = runner.register(
    CONFIG,
    trainer="tfxfer.zero_shot.train",
    deploy_data="tfxfer.zero_shot.train:reload_deploy_data",
    flags=FLAGS,
    sections=("image", "augment", "zero_shot"),
    resumable=False,
    help_sections=("zero_shot",),
)

if __name__ == "__main__":
    raise SystemExit(main())
