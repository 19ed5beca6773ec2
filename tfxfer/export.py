"""Writing a run's artefacts, each atomically (temporary name, then rename into place).

The output directory holds:

- ``saved_model/``: ``model.export()`` of the serving graph, whose ``serve`` signature takes a
  batch of ``uint8`` images ``(N, size, size, 3)`` and returns logits; no augmentation inside.
- ``model.keras``: the training graph, loadable with ``keras.saving.load_model(path,
  safe_mode=True)`` (no Lambda layers; tfxfer's one custom layer is registered).
- ``config.json`` (the resolved config), ``history.json``, ``metrics.json``,
  ``data_report.json``.
- ``curves.png`` and ``confusion_matrix.png``.

A directory that already holds a *different* run (its ``config.json`` differs) is refused unless
``overwrite=True``; the same config may be re-run into it (that is how an interrupted run resumes).

Example:
    >>> from tfxfer.export import write_json
    >>> import tempfile, os, json
    >>> p = os.path.join(tempfile.mkdtemp(), "x.json"); write_json(p, {"a": 1})
    >>> json.load(open(p))
    {'a': 1}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from tfxfer import plots
from tfxfer.config import Config
from tfxfer.errors import UserError

# Keys that do not change what a run computes, so they may differ on a re-run into the same dir.
_RUN_NEUTRAL_KEYS = ("overwrite", "verbose", "output", "strategy")


def _comparable(cfg: dict) -> dict:
    return {k: v for k, v in cfg.items() if k not in _RUN_NEUTRAL_KEYS}


def prepare_output_dir(cfg: Config) -> Path:
    """Creates the output directory, refusing one that holds a different run."""
    out = Path(cfg.output)
    previous = out / "config.json"
    if previous.is_file() and not cfg.overwrite:
        try:
            old = json.loads(previous.read_text())
        except json.JSONDecodeError:
            old = None
        if old is None or _comparable(old) != _comparable(cfg.to_dict()):
            changed = sorted(k for k in _comparable(cfg.to_dict())
                             if old is None or old.get(k) != cfg.to_dict()[k])
            raise UserError("output directory already holds a different run",
                            got=f"{out} (differs in: {', '.join(changed[:5])})",
                            fix="pass --overwrite to replace it, or choose another --output")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_json(path: str | Path, obj) -> None:
    """Writes JSON to a temporary name, then renames it over ``path``."""
    path = Path(path)
    tmp = _atomic_path(path)
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _replace_dir(tmp: Path, final: Path) -> None:
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_saved_model(tm, path: str | Path) -> Path:
    """Exports the serving graph (uint8 images -> logits) as a SavedModel at ``path``."""
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    shutil.rmtree(tmp)
    tm.serving_model().export(str(tmp), format="tf_saved_model", verbose=False)
    _replace_dir(tmp, path)
    return path


def save_keras(tm, path: str | Path) -> Path:
    """Saves the training graph as a ``.keras`` file, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.keras")
    tm.model.save(str(tmp))
    os.replace(tmp, path)
    return path


def _save_figure(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_run(tm, cfg: Config, out: Path, history: list[dict], metrics: dict,
              data_report: dict) -> dict[str, str]:
    """Writes every artefact of a finished run; returns their paths by name."""
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
    export_saved_model(tm, paths["saved_model"])
    save_keras(tm, paths["keras"])
    write_json(paths["config"], cfg.to_dict())
    write_json(paths["history"], history)
    write_json(paths["metrics"], metrics)
    write_json(paths["data_report"], data_report)
    _save_figure(plots.curves_figure(history), paths["curves"])
    _save_figure(plots.confusion_figure(metrics["confusion_matrix"], metrics["class_names"]),
                 paths["confusion_matrix"])
    return {k: str(v) for k, v in paths.items()}
