"""What a ``--data`` value resolves to: :class:`Split` (images and labels) and :class:`ImageData`
(both splits, class names, the report of what was read).

Example:
    >>> import numpy as np
    >>> from tfxfer.data.splits import ImageData, Split
    >>> split = Split(np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 1, 1, 1]))
    >>> ImageData(["a", "b"], split, split, "synthetic").counts()["train"]
    {'a': 1, 'b': 3}
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfxfer.errors import UserError

IMBALANCE_WARN_RATIO = 3.0


@dataclass
class Split:
    """Images (``(N, H, W, C)`` uint8, possibly smaller than the model input) and int labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, idx) -> np.ndarray:
        """The images at ``idx`` (a streamed split, :class:`tfxfer.data.tfrecord.Stream`, reads
        them from its shards)."""
        return self.images[idx]


@dataclass
class ImageData:
    """A resolved dataset: both splits, class names, and the report of what was read."""

    class_names: list[str]
    train: Split
    val: Split
    source: str
    skipped: list[dict] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    generated: int = 0  # the last ``generated`` rows of ``train`` are GAN samples (synthetic_ratio)
    # Multi-worker: ``train`` holds this worker's rows; these are the labels of all workers' rows
    all_train_labels: np.ndarray | None = None
    workers: tuple[int, int] = (0, 1)  # (this worker, number of workers)

    @property
    def train_labels(self) -> np.ndarray:
        """Labels of the whole training split (every worker's rows, once each)."""
        return self.train.labels if self.all_train_labels is None else self.all_train_labels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            name: {c: int((labels == i).sum()) for i, c in enumerate(self.class_names)}
            for name, labels in (("train", self.train_labels), ("val", self.val.labels))
        }

    def imbalance(self) -> float:
        train = list(self.counts()["train"].values())
        return max(train) / max(1, min(train))

    def report(self) -> dict:
        """The data report saved as ``data_report.json``."""
        return {
            "source": self.source,
            "class_names": self.class_names,
            "counts": self.counts(),
            "imbalance_ratio": round(self.imbalance(), 3),
            "skipped_unreadable": self.skipped,
            "ignored_non_images": self.ignored,
            "generated_train_images": self.generated,
            **(
                {"workers": self.workers[1], "train_rows_per_worker": len(self.train)}
                if self.workers[1] > 1
                else {}
            ),
        }

    def describe(self) -> str:
        """A human-readable summary: classes, counts per split and class, skipped files."""
        counts = self.counts()
        width = max(len(c) for c in self.class_names)
        lines = [f"data: {self.source}", f"  {'class':<{width}}  {'train':>7}  {'val':>7}"]
        for c in self.class_names:
            lines.append(f"  {c:<{width}}  {counts['train'][c]:>7}  {counts['val'][c]:>7}")
        lines.append(f"  {'total':<{width}}  {len(self.train_labels):>7}  {len(self.val):>7}")
        if self.workers[1] > 1:
            lines.append(
                f"  worker {self.workers[0]} of {self.workers[1]} holds "
                f"{len(self.train)} training rows (its shard, padded to the largest)"
            )
        if self.generated:
            lines.append(f"  of which generated (train only): {self.generated}")
        lines.append(f"  skipped as unreadable: {len(self.skipped)}")
        lines += [f"    {s['path']}: {s['reason']}" for s in self.skipped]
        if self.ignored:
            lines.append(f"  ignored non-image files: {len(self.ignored)}")
        if self.imbalance() >= IMBALANCE_WARN_RATIO:
            lines.append(
                f"  WARNING: class imbalance {self.imbalance():.1f}:1 in train; "
                "consider --set class_weight=balanced"
            )
        return "\n".join(lines)


def require_every_class(split: str, labels, wanted, class_names=()) -> None:
    """Raises the one-line error of a split that holds no readable image of a class in
    ``wanted`` (class indices); ``class_names`` names them where it is given."""
    present = set(np.unique(np.asarray(labels)).tolist())
    missing = [int(c) for c in wanted if int(c) not in present]
    if missing:
        names = [class_names[c] if c < len(class_names) else c for c in missing]
        raise UserError(
            f"the {split} split must hold readable images of every class",
            got=f"missing: {names}",
            fix="add readable images for those classes (see the skipped list)",
        )
