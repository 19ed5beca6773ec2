"""The README and the example config files stay true to the code."""

import importlib
from pathlib import Path

import pytest

from tfxfer import backbones
from tfxfer.config import Config
from tfxfer.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]


def test_backbone_table_in_readme_is_the_registry():
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- backbones:start -->\n") + len("<!-- backbones:start -->\n")
    end = text.index("<!-- backbones:end -->")
    assert text[start:end].strip() == backbones.markdown_table().strip(), (
        "README backbone table is stale: paste tfxfer.backbones.markdown_table() between the "
        "backbones markers")


@pytest.mark.parametrize("recipe", RECIPES)
def test_example_config_file_loads_and_matches_the_recipe_defaults(recipe):
    module = importlib.import_module(f"tfxfer.recipes.{recipe}")
    from_file = Config.load(ROOT / "recipes" / f"{recipe}.toml", base=Config(recipe=recipe))
    default = module.CONFIG
    for key in ("data", "backbone", "weights", "train_bn", "train_per_class", "output"):
        assert getattr(from_file, key) == getattr(default, key), key
    assert [(p.trainable, p.epochs, p.lr, p.schedule) for p in from_file.phases] == [
        (p.trainable, p.epochs, p.lr, p.schedule) for p in default.phases]


def test_readme_has_exactly_two_make_commands_and_ci_calls_the_test_one():
    text = (ROOT / "README.md").read_text()
    block = text.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [l.split("#")[0].strip() for l in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_test_named_in_the_reliability_table_exists():
    import re

    table = (ROOT / "tests" / "README.md").read_text()
    refs = re.findall(r"`(test_\w+\.py)::(test_\w+)", table)
    assert len(refs) >= 30
    for filename, name in refs:
        source = (ROOT / "tests" / filename).read_text()
        assert f"def {name}(" in source, f"tests/README.md names a missing test {filename}::{name}"
