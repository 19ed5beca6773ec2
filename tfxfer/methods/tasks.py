"""Multi-task heads: several named label sets over one dataset, one head each.

A task is either the dataset's own classes or a coarse grouping of them (``Task.groups``). Each
task gets its own head on the shared backbone, its own loss and loss weight; the model's output
is then a dict ``{task name: logits}``, and so is the exported signature's. With no tasks
configured a run has exactly one head and a plain logits output, as before.

:data:`FASHION_MNIST_COARSE` is the documented example grouping of Fashion-MNIST's 10 classes
into what the garment is worn as:

| group | classes |
|---|---|
| tops | T-shirt_top, Pullover, Coat, Shirt, Dress (worn on the upper body, a dress included) |
| bottoms | Trouser |
| footwear | Sandal, Sneaker, Ankle_boot |
| bags | Bag |

Example:
    >>> import numpy as np
    >>> from tfxfer.methods import tasks
    >>> from tfxfer.config import Task
    >>> specs = tasks.resolve((Task("fine"), Task("coarse", groups=tasks.FASHION_MNIST_COARSE)),
    ...                       list(tasks.FASHION_MNIST_CLASSES))
    >>> [(t.name, t.num_classes) for t in specs]
    [('fine', 10), ('coarse', 4)]
    >>> specs[1].labels(np.array([0, 1, 5, 8])).tolist()
    [0, 1, 2, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tfxfer import evaluate
from tfxfer.config import Config, Task
from tfxfer.data.sources import FASHION_MNIST_CLASSES  # noqa: F401  (re-exported for the example)
from tfxfer.errors import UserError

FASHION_MNIST_COARSE = {
    "tops": ("T-shirt_top", "Pullover", "Coat", "Shirt", "Dress"),
    "bottoms": ("Trouser",),
    "footwear": ("Sandal", "Sneaker", "Ankle_boot"),
    "bags": ("Bag",),
}


@dataclass(frozen=True)
class TaskSpec:
    """A task resolved against the dataset: its classes and the dataset-label -> task-label map."""

    name: str
    class_names: tuple[str, ...]
    mapping: tuple[int, ...]
    loss: str = "crossentropy"
    loss_weight: float = 1.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def labels(self, dataset_labels: np.ndarray) -> np.ndarray:
        """This task's integer labels for the dataset's integer labels."""
        return np.asarray(self.mapping, np.int32)[np.asarray(dataset_labels)]


def resolve(tasks: Sequence[Task], class_names: Sequence[str]) -> list[TaskSpec]:
    """Resolves configured tasks against the dataset's classes (none: one default task)."""
    identity = tuple(range(len(class_names)))
    if not tasks:
        return [TaskSpec("label", tuple(class_names), identity)]
    specs = []
    for task in tasks:
        if not task.groups:
            specs.append(
                TaskSpec(task.name, tuple(class_names), identity, task.loss, task.loss_weight)
            )
            continue
        owner = {c: g for g, members in task.groups.items() for c in members}
        listed = [c for members in task.groups.values() for c in members]
        problems = {
            "unknown": sorted(set(listed) - set(class_names)),
            "in no group": [c for c in class_names if c not in owner],
            "in two groups": sorted({c for c in listed if listed.count(c) > 1}),
        }
        if any(problems.values()):
            raise UserError(
                f"task {task.name!r}: every dataset class must be in exactly one group",
                valid=list(class_names),
                got={k: v for k, v in problems.items() if v},
                fix="list each class of the dataset once in the task's groups",
            )
        groups = tuple(task.groups)
        specs.append(
            TaskSpec(
                task.name,
                groups,
                tuple(groups.index(owner[c]) for c in class_names),
                task.loss,
                task.loss_weight,
            )
        )
    return specs


def targets_fn(specs: Sequence[TaskSpec], multi: bool):
    """A ``tf`` function: dataset integer labels -> one-hot target (``multi``: a dict of them)."""
    tables = [tf.constant(s.mapping, tf.int32) for s in specs]

    def targets(labels):
        hots = {
            s.name: tf.one_hot(tf.gather(t, labels), s.num_classes) for s, t in zip(specs, tables)
        }
        return hots if multi else hots[specs[0].name]

    return targets


def _loss(spec: TaskSpec, label_smoothing: float) -> keras.losses.Loss:
    if spec.loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        )
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)


def compile_args(specs: Sequence[TaskSpec], multi: bool, cfg: Config) -> dict:
    """``loss``, ``loss_weights`` and ``metrics`` for ``model.compile``."""
    if not multi:
        return {
            "loss": _loss(specs[0], cfg.label_smoothing),
            "metrics": [keras.metrics.CategoricalAccuracy(name="accuracy")],
        }
    return {
        "loss": {s.name: _loss(s, cfg.label_smoothing) for s in specs},
        "loss_weights": {s.name: s.loss_weight for s in specs},
        "metrics": {s.name: [keras.metrics.CategoricalAccuracy(name="accuracy")] for s in specs},
    }


def as_dict(outputs, specs: Sequence[TaskSpec]) -> dict:
    """Model outputs as ``{task: array}`` whether the model has one head or several."""
    return outputs if isinstance(outputs, dict) else {specs[0].name: outputs}


def metrics(outputs, dataset_labels: np.ndarray, specs: Sequence[TaskSpec]) -> dict[str, dict]:
    """``{task: metrics.json content}`` for predicted ``outputs`` against the dataset's labels."""
    return {
        s.name: evaluate.metrics_from_logits(out, s.labels(dataset_labels), list(s.class_names))
        for s, out in zip(specs, as_dict(outputs, specs).values())
    }
