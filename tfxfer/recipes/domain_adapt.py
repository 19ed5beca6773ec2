"""Unsupervised domain adaptation: labelled source, unlabelled target (DANN).

The source (``--source``, the config's ``data``) is labelled; the target (``--target``) is only
seen as images: a built-in name, any folder ``--data`` accepts (its labels are dropped), or a
folder of unlabelled images. ``--target-val`` names labelled target data used for evaluation only
(default: the target's own validation split, when it has labels). The backbone is trained
against a domain classifier through a gradient-reversal layer (:mod:`tfxfer.adapt.dann`);
``--method source_only`` trains the same graph with the reversal weight held at 0, the
baseline. ``--self-train N`` adds N epochs of self-training on confident target
pseudo-labels (:mod:`tfxfer.adapt.self_train`). The exported model is the plain classifier.

The defaults are the DANN paper's MNIST -> MNIST-M pair; the network is chosen from the data
(``backbone="auto"``, :mod:`tfxfer.adapt.network`): digit-sized images train the papers' small
networks from scratch, photos fine-tune ImageNet MobileNetV2. ``--backbone NAME`` overrides it.

Example:
    >>> from tfxfer.recipes import domain_adapt
    >>> domain_adapt.CONFIG.data, domain_adapt.CONFIG.adapt.target
    ('mnist', 'mnist_m')
"""

from tfxfer import runner
from tfxfer.config import Adapt, Config, Phase

CONFIG = Config(
    recipe="domain_adapt",
    data="mnist",
    backbone="auto",  # chosen from the data: tfxfer.adapt.network
    augment="none",
    train_bn=True,
    head_dropout=0.0,
    batch_size=64,
    phases=(
        Phase(
            name="adapt",
            trainable="all",
            epochs=2,
            optimizer="sgd",
            lr=0.01,
            momentum=0.9,
            schedule="anneal",
        ),
    ),
    adapt=Adapt(target="mnist_m"),
    output="runs/domain_adapt",
)
FLAGS = (
    runner.Flag("--source", "data", "labelled source data: directory, tfds:NAME or built-in"),
    runner.Flag(
        "--target",
        "adapt.target",
        "target data; its labels are never used for training (a folder of unlabelled images works)",
    ),
    runner.Flag("--target-val", "adapt.target_val", "labelled target data, for evaluation only"),
    runner.Flag(
        "--method",
        "adapt.method",
        "dann, cdan, cdan+e, mcc, an adversary +mcc (e.g. cdan+e+mcc), or source_only "
        "(the baseline)",
    ),
    runner.Flag(
        "--self-train",
        "adapt.self_train",
        "epochs of self-training after the phases, on class-balanced confident target "
        "pseudo-labels (0: none)",
        type=int,
    ),
)

run, main = runner.register(
    CONFIG,
    trainer="tfxfer.adapt.train",
    deploy_data="tfxfer.adapt.train:reload_deploy_data",
    prepare="tfxfer.adapt.network:choose",
    flags=FLAGS,
    sections=("head", "image", "augment", "adapt"),
    resumable=False,
    help_sections=("adapt",),
)

if __name__ == "__main__":
    raise SystemExit(main())
