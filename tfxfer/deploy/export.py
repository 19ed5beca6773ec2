"""Writing a run's artefacts, each atomically (temporary name, then rename into place).

The output directory holds:

- ``saved_model/``: the serving SavedModel (:mod:`tfxfer.deploy.serving`): encoded image files
  or uint8 images of any size in, class names, top-k scores and probabilities out (every task's
  under its name); the class names are inside; no augmentation.
- ``model_<variant>.tflite`` for each ``litert-<variant>`` in ``cfg.export``
  (:mod:`tfxfer.deploy.litert`), each measured on the validation images; its accuracy, size and
  gzipped size go into ``metrics.json`` under ``litert``, with the fingerprint of the weights
  it holds (a re-run keeps the files of the same weights and deletes others). ``labels.txt``
  beside them names the class of each output index, one per line.
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

import dataclasses
import hashlib
from pathlib import Path

import keras
import numpy as np

from tfxfer.atomic import write_json, write_with
from tfxfer.config import Config
from tfxfer.deploy import litert, plots, serving
from tfxfer.train import board, rundir
from tfxfer.train.result import DeployData


def served_class_names(metrics: dict) -> dict[str, list[str]]:
    """``{task: class names}`` of the classification heads, from a run's metrics."""
    if "tasks" in metrics:
        return {name: m["class_names"] for name, m in metrics["tasks"].items()}
    return {"head": metrics["class_names"]}


def _first_head(metrics: dict) -> list[str]:
    """The class names of the head a LiteRT file holds (the first, of a multi-task model)."""
    return next(iter(served_class_names(metrics).values()))


def export_saved_model(model, metrics: dict, path: str | Path, top_k: int) -> Path:
    """Exports the serving SavedModel of a trained training graph at ``path``."""
    return serving.export(model, served_class_names(metrics), path, top_k)


def model_images(images: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """Images as the model sees them: ``(N, size, size, 3)`` uint8 (resized if stored smaller)."""
    from tfxfer.data.pipeline import to_model_input

    parts = [
        np.asarray(to_model_input(images[i : i + batch], size))
        for i in range(0, len(images), batch)
    ]
    return np.round(np.concatenate(parts)).clip(0, 255).astype(np.uint8)


def default_deploy_data(cfg: Config, data, metrics: dict) -> DeployData:
    """Calibrate on the training split, measure on the validation split (a multi-task model:
    its first task's labels)."""
    from tfxfer.methods import tasks as tasks_lib

    spec = tasks_lib.resolve(cfg.tasks, data.class_names)[0]
    reference = metrics["tasks"][spec.name] if "tasks" in metrics else metrics
    # the splits under the task's labels (a Split or a streamed Stream: both keep ``labels``)
    return DeployData(
        dataclasses.replace(data.train, labels=spec.labels(data.train.labels)),
        dataclasses.replace(data.val, labels=spec.labels(data.val.labels)),
        reference["val_accuracy"],
        "training images",
        "validation split",
    )


LABELS = "labels.txt"  # beside the .tflite files: output index i is line i's class


def weights_fingerprint(model) -> str:
    """A short hash of every weight of ``model``: a LiteRT file carries the fingerprint of the
    model it was converted from, so a re-run can tell whether the file still matches."""
    digest = hashlib.sha256()
    for v in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(v)).tobytes())
    return digest.hexdigest()[:16]


def kept_litert(out: Path, model, exporting: tuple[str, ...]) -> dict:
    """The ``litert`` entries of ``out``'s previous ``metrics.json`` that still hold: a file
    that is on disk, converted from these very weights, and not being exported again. Files
    from other weights are deleted, so ``metrics.json`` and the ``.tflite`` files always agree."""
    import json

    try:
        previous = json.loads((out / "metrics.json").read_text()).get("litert", {})
    except (OSError, ValueError):
        previous = {}
    fingerprint, kept = weights_fingerprint(model), {}
    for variant, entry in previous.items():
        path = out / f"model_{variant}.tflite"
        if f"litert-{variant}" in exporting or not path.is_file():
            continue
        if entry.get("weights") == fingerprint:
            kept[variant] = entry
        else:
            path.unlink(missing_ok=True)
    for path in out.glob("model_*.tflite"):  # files no entry describes
        variant = path.stem[len("model_") :]
        if variant not in kept and f"litert-{variant}" not in exporting:
            path.unlink(missing_ok=True)
    return kept


def export_litert(
    model, cfg: Config, deploy: DeployData, out: Path, class_names: list[str] | None = None
) -> dict:
    """Writes and measures each ``litert-<variant>`` of ``cfg.export``; returns their entries.

    int8 is calibrated on ``deploy.calibration`` and every file is measured on ``deploy.val``
    (:class:`~tfxfer.train.result.DeployData`). A multi-task model's files hold its first
    task's head. Only the calibration images and one validation batch at a time are held at
    model size. ``class_names`` (the exported head's) go to ``labels.txt`` beside the files.
    """
    size = model.input.shape[1]
    picked = litert.calibration_indices(deploy.calibration.labels, seed=cfg.seed)
    calibration = model_images(deploy.calibration.rows(picked), size)
    val_labels = deploy.val.labels

    def val_batches(batch: int = 256):
        for i in range(0, len(val_labels), batch):
            yield model_images(deploy.val.images[i : i + batch], size), val_labels[i : i + batch]

    task = cfg.tasks[0].name if cfg.tasks else None
    results = litert.export(
        model, [f.split("-", 1)[1] for f in cfg.export], out, calibration, val_batches, task
    )
    fingerprint = weights_fingerprint(model)
    if class_names is not None:
        write_with(out / LABELS, lambda tmp: Path(tmp).write_text("\n".join(class_names) + "\n"))
    for entry in results.values():
        if "file" in entry:
            entry["weights"] = fingerprint
            if class_names is not None:
                entry["labels"] = str(out / LABELS)
        if "val_accuracy" in entry:
            entry["delta_vs_float"] = round(entry["val_accuracy"] - deploy.reference, 4)
            entry["measured_on"] = f"{deploy.measured_on} ({len(val_labels)} images)"
        entry["calibrated_on"] = f"{len(picked)} {deploy.calibrated_on}"
    return results


def save_keras(tm, path: str | Path) -> Path:
    """Saves the training graph as a ``.keras`` file, atomically."""
    write_with(path, tm.model.save, suffix=".keras")
    return Path(path)


def _save_figure(fig, path: Path) -> None:
    write_with(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")


def save_run(result, cfg: Config) -> dict[str, str]:
    """Writes every artefact of a finished :class:`~tfxfer.train.result.RunResult`; returns them.

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
    own_export = getattr(result.model, "export_serving", None)  # a text model's raw-text one
    if own_export is not None:
        own_export(served_class_names(result.metrics), paths["saved_model"], cfg.top_k)
    else:
        export_saved_model(result.model.model, result.metrics, paths["saved_model"], cfg.top_k)
    save_keras(result.model, paths["keras"])
    write_json(paths["config"], cfg.to_dict())
    write_json(paths["history"], result.history)
    write_json(paths["data_report"], result.data_report)
    _save_figure(plots.curves_figure(result.history), paths["curves"])
    _save_figure(
        plots.confusion_figure(result.metrics["confusion_matrix"], result.metrics["class_names"]),
        paths["confusion_matrix"],
    )
    for name, m in list(result.metrics.get("tasks", {}).items())[1:]:
        paths[f"confusion_matrix_{name}"] = out / f"confusion_matrix_{name}.png"
        _save_figure(
            plots.confusion_figure(m["confusion_matrix"], m["class_names"]),
            paths[f"confusion_matrix_{name}"],
        )
    if own_export is None:  # a re-run keeps the LiteRT files (and entries) of these weights
        kept = kept_litert(out, result.model.model, cfg.export)
        if kept:
            result.metrics["litert"] = kept
    write_json(paths["metrics"], result.metrics)
    board.write_evaluation(
        out,
        result.metrics,
        _epochs(result.history),
        {k: v for k, v in paths.items() if k.startswith("confusion_matrix")},
    )
    if cfg.export:  # last: everything above is on disk even if a conversion fails
        deploy = result.deploy or default_deploy_data(cfg, result.data, result.metrics)
        result.metrics["litert"] = {
            **result.metrics.get("litert", {}),
            **export_litert(result.model.model, cfg, deploy, out, _first_head(result.metrics)),
        }
        write_json(paths["metrics"], result.metrics)
    paths.update(
        {
            f"litert_{k}": Path(v["file"])
            for k, v in result.metrics.get("litert", {}).items()
            if "file" in v
        }
    )
    result.paths = {k: str(v) for k, v in paths.items()}
    return result.paths


def _epochs(history) -> int:
    """Epochs the run trained: the step of its final numbers in the TensorBoard logs."""
    entries = history if isinstance(history, list) else []
    return sum(len(h.get("history", {}).get("loss", [])) for h in entries if isinstance(h, dict))


def export_run(run_dir: str | Path, formats: tuple[str, ...], deploy_data=None) -> dict:
    """LiteRT files for a finished run (``tfxfer export RUN_DIR --litert int8``).

    Reads the run's ``config.json``, ``model.keras`` and data, writes and measures each format,
    and adds the results to ``metrics.json``. Returns the new ``litert`` entries.
    ``deploy_data(cfg, size, metrics)``: the run's recipe's own calibration and measurement
    data (:attr:`tfxfer.runner.Recipe.deploy_data`); None: the training core's.
    """
    import json

    import keras

    from tfxfer.errors import UserError
    from tfxfer.train import loop

    run = Path(run_dir)
    needed = [run / n for n in ("config.json", "model.keras", "metrics.json")]
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        raise UserError(
            "RUN_DIR must be the output directory of a finished run (config.json, "
            "model.keras, metrics.json)",
            got=f"{run} without {', '.join(missing)}",
            fix="pass the --output directory of a run that completed",
        )
    cfg = Config.load(run / "config.json")
    if cfg.text.preset:
        raise UserError(
            "LiteRT export is for image runs; a text run's SavedModel takes raw "
            "strings, with ops LiteRT does not have",
            got=str(run),
            fix="serve the run's saved_model/ with TensorFlow",
        )
    cfg = cfg.replace(export=tuple(formats))
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    metrics = json.loads((run / "metrics.json").read_text())
    size = model.input.shape[1]
    if deploy_data is not None:  # the recipe's own calibration and measurement data
        deploy = deploy_data(cfg, size, metrics)
    else:
        deploy = default_deploy_data(cfg, loop.load_data(cfg, size), metrics)
    results = export_litert(model, cfg, deploy, run, _first_head(metrics))
    metrics["litert"] = {**metrics.get("litert", {}), **results}
    write_json(run / "metrics.json", metrics)
    return results
