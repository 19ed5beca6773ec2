"""PNG plots of a run: training curves (with phase boundaries) and the confusion matrix.

Both functions return a matplotlib ``Figure`` (built without pyplot, so importing tfxfer never
changes a notebook's backend; ``display(fig)`` shows it inline) and write a PNG when given a path.

Example:
    >>> from tfxfer.deploy.plots import confusion_figure
    >>> fig = confusion_figure([[5, 1], [0, 6]], ["ants", "bees"])
    >>> fig.axes[0].get_title()
    'Confusion matrix (validation)'
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global backend is chosen or changed


def _accuracy_keys(history: list[dict]) -> list[str]:
    """``accuracy``, or each task's ``<task>_accuracy`` of a multi-task run."""
    keys = {
        k
        for phase in history
        for k in phase["history"]
        if k.endswith("accuracy") and not k.startswith("val_")
    }
    return sorted(keys) or ["accuracy"]


def curves_figure(history: list[dict], path: str | None = None):
    """Loss and accuracy per epoch across phases. ``history`` is ``history.json``'s list."""
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    accuracy_keys = _accuracy_keys(history)
    epoch = 0
    for phase in history:
        n = len(phase["history"].get("loss", []))
        xs = np.arange(epoch + 1, epoch + n + 1)
        for ax, keys in zip(axes, (["loss"], accuracy_keys)):
            for key in keys:
                task = "" if key in ("loss", "accuracy") else key[: -len("_accuracy")] + " "
                for prefix, style in (("", "-"), ("val_", "--")):
                    values = phase["history"].get(prefix + key)
                    if values:
                        ax.plot(
                            xs,
                            values,
                            style,
                            marker="o",
                            ms=3,
                            label=f"{phase['phase']} {task}{'val' if prefix else 'train'}",
                        )
        if epoch:
            for ax in axes:
                ax.axvline(epoch + 0.5, color="grey", lw=0.8, ls=":")
        epoch += n
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a zero-shot run trains no epochs
            ax.legend(fontsize=7)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
    return fig


def confusion_figure(confusion, class_names: list[str], path: str | None = None):
    """Confusion matrix (rows: true class, columns: predicted class) with counts."""
    cm = np.asarray(confusion)
    k = len(class_names)
    size = min(10, 2.5 + 0.5 * k)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > cm.max() / 2 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (validation)")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=100)
    return fig
