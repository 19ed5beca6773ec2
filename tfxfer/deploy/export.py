"""Writing a run's artefacts, each atomically (temporary name, then rename into place).

The output directory holds:

- ``saved_model/``: ``model.export()`` of the serving graph, whose ``serve`` signature takes a
  batch of ``uint8`` images ``(N, size, size, 3)`` and returns logits (a multi-task model: one
  named output per task, all from that one signature); no augmentation inside.
- ``model.keras``: the training graph, loadable with ``keras.saving.load_model(path,
  safe_mode=True)`` (no Lambda layers; tfxfer's one custom layer is registered).
- ``config.json`` (the resolved config), ``history.json``, ``metrics.json``,
  ``data_report.json``.
- ``curves.png`` and ``confusion_matrix.png`` (multi-task: ``confusion_matrix_<task>.png`` for
  each task after the first).

Example:
    >>> from tfxfer.deploy import export  # doctest: +SKIP
    >>> from tfxfer.train import loop as train  # doctest: +SKIP
    >>> result = train.run(cfg)  # doctest: +SKIP
    >>> paths = export.save_run(result, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from tfxfer.deploy import plots
from tfxfer.train import rundir
from tfxfer.atomic import write_json, write_with
from tfxfer.config import Config


def export_saved_model(tm, path: str | Path) -> Path:
    """Exports the serving graph (uint8 images -> logits) as a SavedModel at ``path``."""
    serving = tm.serving_model()
    write_with(path, lambda tmp: serving.export(tmp, format="tf_saved_model", verbose=False))
    return Path(path)


def save_keras(tm, path: str | Path) -> Path:
    """Saves the training graph as a ``.keras`` file, atomically."""
    write_with(path, tm.model.save, suffix=".keras")
    return Path(path)


def _save_figure(fig, path: Path) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")


def save_run(result, cfg: Config) -> dict[str, str]:
    """Writes every artefact of a finished :class:`tfxfer.train.loop.RunResult`; returns the paths.

    Non-chief workers (``result.output is None``) write nothing. The output directory's lock,
    taken by :func:`tfxfer.train.loop.run`, is released when this returns
    (:mod:`tfxfer.train.rundir`).
    """
    if result.output is None:
        return {}
    try:
        return _save_all(result, cfg)
    finally:
        rundir.release(result.output)  # taken by tfxfer.train.loop.run


def _save_all(result, cfg: Config) -> dict[str, str]:
    out = Path(result.output)
    paths = {
        "saved_model": out / "saved_model",
        "keras": out / "model.keras",
        "config": out / "config.json",
        "history": out / "history.json",
        "metrics": out / "metrics.json",
        "data_report": out / "data_report.json",
        "curves": out / "curves.png",
        "confusion_matrix": out / "confusion_matrix.png",
    }
    export_saved_model(result.model, paths["saved_model"])
    save_keras(result.model, paths["keras"])
    write_json(paths["config"], cfg.to_dict())
    write_json(paths["history"], result.history)
    write_json(paths["metrics"], result.metrics)
    write_json(paths["data_report"], result.data_report)
    _save_figure(plots.curves_figure(result.history), paths["curves"])
    _save_figure(plots.confusion_figure(result.metrics["confusion_matrix"],
                                        result.metrics["class_names"]), paths["confusion_matrix"])
    for name, m in list(result.metrics.get("tasks", {}).items())[1:]:
        paths[f"confusion_matrix_{name}"] = out / f"confusion_matrix_{name}.png"
        _save_figure(plots.confusion_figure(m["confusion_matrix"], m["class_names"]),
                     paths[f"confusion_matrix_{name}"])
    result.paths = {k: str(v) for k, v in paths.items()}
    return result.paths
