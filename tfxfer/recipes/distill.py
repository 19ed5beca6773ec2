"""Distillation: a finished run (the teacher) teaches a smaller student for the phone.

``--teacher RUN_DIR`` names the teacher: any finished image run of one task (its directory holds
``config.json``, ``metrics.json`` and ``model.keras``). The student, ImageNet MobileNet 0.25 at
224 px by default (``--backbone`` for another), trains on the teacher's data, split as the
teacher split it, against the labels and the teacher's softened outputs on the same augmented
images (:mod:`tfxfer.distill`): ``--temperature`` softens both, ``--alpha`` is the labels' share
(``--alpha 1``: labels alone, the baseline), ``--unlabelled`` adds images without labels. The
student ships as any run does: ``model.keras``, the SavedModel, LiteRT (``--export int8``).

Example:
    >>> from tfxfer.recipes import distill
    >>> distill.CONFIG.backbone, [p.trainable for p in distill.CONFIG.phases]
    ('MobileNet025', ['head', 'all'])
"""

from tfxfer import runner
from tfxfer.config import Config, Phase

CONFIG = Config(
    recipe="distill",
    data="teacher",  # the teacher's data, split as it was: tfxfer.distill.teacher
    backbone="MobileNet025",
    weights="imagenet",
    augment="light",
    head_dropout=0.2,
    batch_size=32,
    phases=(
        Phase(name="head", trainable="head", epochs=2, optimizer="adam", lr=1e-3),
        Phase(name="all", trainable="all", epochs=15, optimizer="adam", lr=3e-4, schedule="cosine"),
    ),
    output="runs/distill",
)
FLAGS = (
    runner.Flag("--teacher", "distill.teacher", "the teacher: a finished image run's directory"),
    runner.Flag(
        "--temperature",
        "distill.temperature",
        "softens the teacher's and the student's outputs (T)",
        type=float,
    ),
    runner.Flag(
        "--alpha",
        "distill.alpha",
        "the labels' share of the loss; the teacher's soft targets take the rest (1: labels "
        "alone, no teacher)",
        type=float,
    ),
    runner.Flag(
        "--unlabelled",
        "distill.unlabelled",
        "more images for the soft targets, without labels: a folder of images or any data",
    ),
)

run, main = runner.register(
    CONFIG,
    trainer="tfxfer.distill.train",
    prepare="tfxfer.distill.teacher:prepare",
    flags=FLAGS,
    sections=("head", "image", "augment", "distill"),
    resumable=False,
    help_sections=("distill",),
)

if __name__ == "__main__":
    raise SystemExit(main())
