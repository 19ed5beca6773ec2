"""The teacher of a distillation run: a finished run's directory, read and checked, and the
student's data settled from it before anything is built.

The student trains on the teacher's data **split as the teacher split it**: the split keys
(:data:`SPLIT_KEYS`) are copied from the teacher's ``config.json``. Were the student's split to
differ, some of its validation images could be images the teacher trained on, and the teacher's
soft targets would carry their labels into the student's training: the student's validation
accuracy would then be measured on images it had, in effect, been told the answer for.

Example:
    >>> from tfxfer.distill import teacher
    >>> teacher.SPLIT_KEYS[:2]
    ('data', 'val_split')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tfxfer.config import Config
from tfxfer.distill.rules import check
from tfxfer.errors import UserError

FILES = ("config.json", "metrics.json", "model.keras")  # what a finished image run holds
SPLIT_KEYS = ("data", "val_split", "seed", "train_per_class", "val_per_class", "manual_dir")
TEACHER_DATA = "teacher"  # the distill recipe's data: the teacher's own
NOT_IMAGE = ("text_classify", "zero_shot", "generative")  # recipes whose model is no teacher


@dataclass(frozen=True)
class Teacher:
    """A finished run, as the student sees it.

    Attributes:
        path: The run directory.
        config: Its resolved config (``config.json``).
        class_names: Its classes, in output order.
        val_accuracy: Its validation accuracy (``metrics.json``).
    """

    path: Path
    config: dict
    class_names: list[str]
    val_accuracy: float

    def describe(self) -> str:
        c = self.config
        return (
            f"teacher {self.path} ({c.get('recipe')}, {c.get('backbone')}, "
            f"val_accuracy {self.val_accuracy:.4f})"
        )

    def load_model(self):
        """The teacher's Keras model (images 0-255 -> logits), frozen."""
        import keras

        model = keras.saving.load_model(self.path / "model.keras", safe_mode=True)
        model.trainable = False
        return model


def read(path: str | None) -> Teacher:
    """Reads a teacher run directory.

    Raises:
        UserError: No path, a path that is not a finished run, or a run whose model is not an
            image classifier of one task.
    """
    if not path:
        raise UserError(
            "distill needs a teacher: the directory of a finished image run",
            got=path,
            fix="train one first (e.g. tfxfer small_similar --output runs/teacher), then pass "
            "--teacher runs/teacher",
        )
    root = Path(path)
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
        raise UserError(
            "--teacher must be the directory of a finished run, holding " + ", ".join(FILES),
            got=f"{path} (missing: {', '.join(missing)})",
            fix="point --teacher at the --output directory of a run that has completed",
        )
    config = json.loads((root / "config.json").read_text())
    metrics = json.loads((root / "metrics.json").read_text())
    if config.get("recipe") in NOT_IMAGE or config.get("tasks"):
        tasks = [t["name"] for t in config.get("tasks") or ()]
        raise UserError(
            "the teacher must be an image classifier with one output (the image recipes, "
            "auto, domain_adapt, distill)",
            got=f"{path}: recipe {config.get('recipe')}"
            + (f" with tasks {tasks}" if tasks else ""),
            fix="pass the run directory of an image recipe",
        )
    return Teacher(root, config, list(metrics["class_names"]), float(metrics["val_accuracy"]))


def prepare(cfg: Config) -> tuple[Config, str]:
    """``cfg`` with the teacher's data and split (:data:`SPLIT_KEYS`), and the plan line.

    Raises:
        UserError: See :func:`read` and :func:`tfxfer.distill.rules.check`; or a split key the
            user set that differs from the teacher's.
    """
    check(cfg)
    teacher = read(cfg.distill.teacher)
    defaults = Config()
    changes, clash = {}, {}
    for key in SPLIT_KEYS:
        mine, theirs = getattr(cfg, key), teacher.config.get(key, getattr(defaults, key))
        unset = mine == (TEACHER_DATA if key == "data" else getattr(defaults, key))
        if not unset and mine != theirs:
            clash[key] = (mine, theirs)
        changes[key] = theirs
    if clash:
        raise UserError(
            "the student trains on the teacher's data, split as the teacher split it (else "
            "images the teacher trained on could be the student's validation images)",
            got=", ".join(f"{k}: yours {a!r}, the teacher's {b!r}" for k, (a, b) in clash.items()),
            fix="leave "
            + ", ".join(f"--{k.replace('_', '-')}" for k in clash)
            + " out (the teacher's are used); more images without labels go in --unlabelled",
        )
    line = (
        f"plan: student {cfg.backbone} learns from {teacher.describe()} on its data "
        f"{changes['data']}, split as the teacher split it"
    )
    return cfg.replace(**changes), line
