"""The codebase's structure: imports flow one way with no cycles, and every registered recipe
keeps the runner's contract (help without TensorFlow, its config round-trips through
``config.json``, another recipe's section is refused before any data is read)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import pytest

from tfxfer.config import SECTIONS, Config
from tfxfer.errors import UserError
from tfxfer.recipes import registered

RECIPES = registered()


def test_every_command_is_registered_and_listed_by_help():
    assert set(RECIPES) == {
        "small_similar",
        "small_different",
        "large_different",
        "large_similar",
        "auto",
        "domain_adapt",
        "zero_shot",
        "text_classify",
        "generative",
    }
    code = (
        "import sys; sys.argv = ['tfxfer']; from tfxfer.cli import entry; "
        "sys.exit(entry(['--help']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    listed = [line.split()[0] for line in proc.stdout.split("recipes:")[1].splitlines() if line]
    assert proc.returncode == 0 and listed == list(RECIPES)


def test_imports_have_no_cycles():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("tfxfer")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    done: set[str] = set()

    def walk(module, path):  # depth-first; a module met again on the current path is a cycle
        for nxt in edges[module]:
            assert nxt not in path, " -> ".join([*path, nxt])
            if nxt not in done:
                walk(nxt, [*path, nxt])
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            walk(module, [module])


def test_layers_hold():
    lint = shutil.which("lint-imports") or str(
        __import__("pathlib").Path(sys.executable).parent / "lint-imports"
    )
    proc = subprocess.run([lint], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_contract(name, tmp_path):
    """For every registered recipe: its help lists its own section keys and needs no
    TensorFlow; its defaults round-trip through config.json; a section it does not read is
    refused, naming the recipe and the section, before any data is read."""
    recipe = RECIPES[name]
    probe = (
        "import atexit, sys; sys.argv = ['tfxfer']\n"
        "atexit.register(lambda: print('HEAVY', sorted(m for m in ('tensorflow', 'keras') "
        "if m in sys.modules)))\n"
        f"from tfxfer.cli import entry; raise SystemExit(entry([{name!r}, '--help']))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "HEAVY []" in proc.stdout, proc.stderr[-2000:]
    for section in recipe.help.get("help_sections", ()):
        assert f"{section}.* keys (defaults)" in proc.stdout
    path = tmp_path / "config.json"
    recipe.config.save(path)
    assert Config.load(path) == recipe.config
    assert Config.load(path).to_dict() == recipe.config.to_dict()
    foreign = [s for s in SECTIONS if s not in recipe.sections]
    assert foreign, f"{name} reads every section"
    for section in foreign:
        current = getattr(recipe.config, section)
        field = next(
            f
            for f in dataclasses.fields(current)
            if isinstance(getattr(current, f.name), (bool, int, float)) and f.name != "sparsity"
        )
        value = getattr(current, field.name)
        if isinstance(value, bool):
            changed = not value
        elif isinstance(value, float):
            changed = value / 2 if value else 0.5
        else:
            changed = value + 1
        cfg = recipe.config.replace(
            data=str(tmp_path / "no_such_data"),
            output=str(tmp_path / "out"),
            **{section: {field.name: changed}},
        )
        module = sys.modules[f"tfxfer.recipes.{name}"]
        with pytest.raises(
            UserError,
            match=rf"^{section}\.\* settings belong to the .* "
            rf"the {name} recipe would ignore them",
        ):
            module.run(cfg)
        assert not (tmp_path / "out").exists()
