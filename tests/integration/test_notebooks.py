"""The Colab notebooks, executed top to bottom with nbclient at tiny settings on the kit's data.

The notebooks read their sizes from ``TFXFER_NB_*`` environment variables (full-size defaults
when unset); here they get 1 epoch, a handful of images per class and 64 px inputs, so that both
run in a few minutes on 2 CPU cores. A cell that raises fails the test (nbclient's
``CellExecutionError`` carries the cell and its traceback).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
RECIPES = ("small_similar", "small_different", "large_different", "large_similar")
RUN_PNGS = ("curves.png", "confusion_matrix.png")
TINY = {
    "TFXFER_NB_EPOCHS": "1",
    "TFXFER_NB_PER_CLASS": "8",
    "TFXFER_NB_VAL_PER_CLASS": "4",
    "TFXFER_NB_IMAGE_SIZE": "32",
    "TFXFER_NB_FEATURE_VIEWS": "1",
    "TFXFER_NB_BACKBONE": "MobileNet025",  # four_scenarios only; its ImageNet file is in the kit
}
CELL_TIMEOUT_S = 600


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A ``python3`` kernelspec that starts this interpreter (the venv's), found before any other.

    ``JUPYTER_PATH`` comes first in Jupyter's search order, so a ``python3`` spec from the user's
    or the system's Jupyter directories cannot start another Python without tfxfer.
    """
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (tfxfer tests)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv(
        "JUPYTER_PATH",
        os.pathsep.join(
            p for p in (str(tmp_path / "jupyter"), os.environ.get("JUPYTER_PATH")) if p
        ),
    )
    return "python3"


def _execute(name: str, tmp_path: Path, monkeypatch, kernel: str):
    """Runs ``notebooks/<name>`` in a fresh kernel; returns the executed notebook and output dir."""
    out = tmp_path / "out"
    for key, value in TINY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TFXFER_NB_OUTPUT", str(out))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    workdir = tmp_path / "work"
    workdir.mkdir()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=180,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError on the first cell that raises
    errors = [o for c in _code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    return nb, out


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _outputs_with(nb, mime: str) -> list:
    return [o for c in _code_cells(nb) for o in c.outputs if mime in o.get("data", {})]


def _text(nb) -> str:
    parts = []
    for cell in _code_cells(nb):
        for o in cell.outputs:
            if o.output_type == "stream":
                parts.append(o.text)
            else:
                parts += [str(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


@pytest.mark.parametrize("name", ["quickstart.ipynb", "four_scenarios.ipynb"])
def test_notebook_is_committed_with_full_size_outputs_or_none(name):
    """The quickstart is committed with the outputs of a full-size run, top to bottom (a reader
    on GitHub sees what it does); four_scenarios, hours on a CPU, without any."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    cells = _code_cells(nb)
    if name == "four_scenarios.ipynb":
        for cell in cells:
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    else:
        assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
        assert all(c.outputs for c in cells), [c.source[:40] for c in cells if not c.outputs]
        assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
        text = _text(nb)
        assert "epochs=None train_per_class=None val_per_class=None image_size=None" in text
        assert "SavedModel accuracy" in text and "serve_bytes validation_" in text
        # the photo grid is kept as JPEG (a fifth of the PNG's size)
        assert len(_outputs_with(nb, "image/png") + _outputs_with(nb, "image/jpeg")) >= 3
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    assert (
        "colab.research.google.com/github/tfxfer/tfxfer/blob/main/notebooks/" + name in first.source
    )


@pytest.mark.kit
@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch, venv_kernel):
    nb, out = _execute("quickstart.ipynb", tmp_path, monkeypatch, venv_kernel)
    # curves, confusion matrix and the prediction grid, shown inline
    assert len(_outputs_with(nb, "image/png")) >= 3
    for png in RUN_PNGS:
        assert (out / png).is_file(), png
    assert (out / "saved_model" / "saved_model.pb").is_file()
    text = _text(nb)
    assert "skipping the install" in text
    assert "SavedModel accuracy" in text
    assert text.count("serve_bytes validation_") == 2  # the stand-in upload, through raw bytes
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_val"] == 2 * int(TINY["TFXFER_NB_VAL_PER_CLASS"])


@pytest.mark.kit
@pytest.mark.slow
def test_four_scenarios_notebook_runs(tmp_path, monkeypatch, venv_kernel):
    nb, out = _execute("four_scenarios.ipynb", tmp_path, monkeypatch, venv_kernel)
    assert len(_outputs_with(nb, "image/png")) >= len(RECIPES)  # one curves plot per recipe
    for recipe in RECIPES:
        for png in RUN_PNGS:
            assert (out / recipe / png).is_file(), f"{recipe}/{png}"
    tables = [
        o["data"]["text/markdown"]
        for o in _outputs_with(nb, "text/markdown")
        if "val accuracy" in o["data"]["text/markdown"]
    ]
    assert len(tables) == 1
    for recipe in RECIPES:
        assert f"`{recipe}`" in tables[0]
