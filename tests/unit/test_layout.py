"""The codebase's structure: imports flow one way with no cycles, and every registered recipe
keeps the runner's contract (help without TensorFlow, its config round-trips through
``config.json``, another recipe's section is refused before any data is read)."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys

import pytest

from tfxfer.config import PARTS, SECTIONS, Config
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
        "distill",
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
    assert "2 kept, 0 broken" in proc.stdout


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
    foreign = [p for p in PARTS if p not in recipe.sections]
    assert foreign, f"{name} reads every part"
    for part in foreign:
        key, changed = _a_change(recipe.config, part)
        cfg = recipe.config.replace(
            data=str(tmp_path / "no_such_data"), output=str(tmp_path / "out"), **{key: changed}
        )
        module = sys.modules[f"tfxfer.recipes.{name}"]
        what = rf"{part}\.\*" if part in SECTIONS else rf"{key}: {part}"
        with pytest.raises(
            UserError,
            match=rf"^{what} settings belong to the .* the {name} recipe would ignore them",
        ):
            module.run(cfg)
        assert not (tmp_path / "out").exists()


def _a_change(cfg: Config, part: str) -> tuple[str, object]:
    """A key of ``part`` and a valid value other than ``cfg``'s: a section's table with one
    number or switch changed, or the first number or switch of a group of top-level keys."""

    def other(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, float):
            return value / 2 if value else 0.5
        return value + 1

    if part in SECTIONS:
        current = getattr(cfg, part)
        field = next(
            f
            for f in dataclasses.fields(current)
            if isinstance(getattr(current, f.name), (bool, int, float)) and f.name != "sparsity"
        )
        return part, {field.name: other(getattr(current, field.name))}
    key = next(k for k in PARTS[part] if isinstance(getattr(cfg, k), (bool, int, float)))
    return key, other(getattr(cfg, key))


def test_every_config_key_belongs_to_one_part():
    """The run part (read by all) and the declarable parts split the config's keys."""
    from tfxfer.config import RunPart

    run = [f.name for f in dataclasses.fields(RunPart)]
    declared = [k for keys in PARTS.values() for k in keys]
    assert sorted(run + declared) == sorted(f.name for f in dataclasses.fields(Config))


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_recipes_defaults_set_only_the_parts_it_reads(name):
    """What a recipe does not read stays at the config's defaults: its config.json then says
    nothing it ignores (no text run naming an image backbone)."""
    recipe = RECIPES[name]
    for part, keys in PARTS.items():
        if part not in recipe.sections:
            for key in keys:
                assert getattr(recipe.config, key) == getattr(Config(), key), (part, key)


def test_every_config_choice_has_its_factory_next_to_its_code():
    """The names a config accepts are the keys of the tables that build them: a choice with no
    code, or code no config can reach, fails here."""
    from tfxfer import config
    from tfxfer.methods import regularize
    from tfxfer.train import optim
    from tfxfer.zero_shot import methods as zsl

    assert list(optim.OPTIMIZERS) == list(config.OPTIMIZERS)
    assert list(optim.SCHEDULES) == list(config.SCHEDULES)
    assert list(regularize.REGULARIZERS) == list(config.REGULARIZATIONS)
    assert list(zsl.METHODS) == list(config.ZERO_SHOT_METHODS)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_each_optimizer_is_built_with_the_phases_settings(name):
    from tfxfer.config import Phase
    from tfxfer.train import optim

    phase = Phase(optimizer=name, lr=0.02, weight_decay=0.01, momentum=0.8, schedule="cosine")
    opt = optim.make_optimizer(phase, steps_per_epoch=10, multipliers={"v": 0.5})
    assert type(opt).__name__.lower() == name
    assert float(opt.learning_rate) == pytest.approx(0.02)  # the cosine's first step
    if name in ("adamw", "sgd"):
        assert opt.weight_decay == pytest.approx(0.01)
    if name in ("sgd", "rmsprop"):
        assert opt.momentum == pytest.approx(0.8)


def test_a_recipe_authors_mistakes_are_refused_at_registration():
    from tfxfer import runner

    before = dict(runner.REGISTRY)
    with pytest.raises(ValueError, match=r"unknown parts \['imag'\]; valid: \['head', 'image'"):
        runner.register(Config(recipe="scratch"), sections=("head", "imag"))
    with pytest.raises(ValueError, match=r"its defaults set \['mixup'\], parts it does not read"):
        runner.register(Config(recipe="scratch", mixup=0.2), sections=("head", "text"))
    assert dict(runner.REGISTRY) == before  # nothing registered
