"""The README, the docs/ pages and the example config files stay true to the code."""

import importlib
import json
from pathlib import Path

import pytest

from tfxfer.config import Config
from tfxfer.errors import UserError
from tfxfer.models import backbones
from tfxfer.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[2]  # the repository
# The pages whose bash/python blocks are checked, in the order their `run` blocks run: the
# README first (its quick start trains runs/mine, which the docs' serving examples use), then
# docs/ (mkdocs builds it into the website; tests/integration/test_docs.py builds it).
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_backbone_table_in_readme_is_the_registry():
    """The table lives in docs/backbones.md since the README became a newcomer page."""
    text = (ROOT / "docs" / "backbones.md").read_text()
    start = text.index("<!-- backbones:start -->\n") + len("<!-- backbones:start -->\n")
    end = text.index("<!-- backbones:end -->")
    assert text[start:end].strip() == backbones.markdown_table().strip(), (
        "docs/backbones.md backbone table is stale: paste "
        "tfxfer.models.backbones.markdown_table() between the backbones markers"
    )


def test_parts_table_in_the_docs_is_what_each_recipe_declares():
    """docs/config.md's table of which recipe reads which part is the registry's, and the error
    example it quotes is the one the runner gives."""
    from tfxfer.recipes import parts_table, text_classify

    text = (ROOT / "docs" / "config.md").read_text()
    start = text.index("<!-- parts:start -->\n") + len("<!-- parts:start -->\n")
    assert text[start : text.index("<!-- parts:end -->")] == parts_table(), (
        "docs/config.md parts table is stale: paste tfxfer.recipes.parts_table() between the "
        "parts markers"
    )
    with pytest.raises(UserError, match="^mixup: image settings belong to the small_similar, "):
        text_classify.run(text_classify.CONFIG.replace(mixup=0.2, data="/no/such/data"))


def test_recipe_table_of_the_readme_is_the_one_of_the_docs_index():
    def table(path):
        text = path.read_text().split("## Which recipe?", 1)[1]
        return [line for line in text.strip().splitlines() if line.startswith("|")][:6]

    readme = table(ROOT / "README.md")
    assert len(readme) == 6 and readme[2].count("`small_similar`") == 1
    assert readme == table(ROOT / "docs" / "index.md"), "copy README's recipe table to docs"


@pytest.mark.parametrize("recipe", RECIPES)
def test_example_config_file_loads_and_matches_the_recipe_defaults(recipe):
    module = importlib.import_module(f"tfxfer.recipes.{recipe}")
    from_file = Config.load(ROOT / "recipes" / f"{recipe}.toml", base=Config(recipe=recipe))
    default = module.CONFIG
    for key in ("data", "backbone", "weights", "train_bn", "train_per_class", "output"):
        assert getattr(from_file, key) == getattr(default, key), key
    assert [(p.trainable, p.epochs, p.lr, p.schedule) for p in from_file.phases] == [
        (p.trainable, p.epochs, p.lr, p.schedule) for p in default.phases
    ]


def test_readme_has_exactly_two_make_commands_and_ci_calls_the_test_one():
    text = (ROOT / "README.md").read_text()
    block = text.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_test_named_in_the_reliability_table_exists():
    import re

    table = (ROOT / "tests" / "README.md").read_text()
    refs = re.findall(r"`(test_\w+\.py)::(test_\w+)", table)
    assert len(refs) >= 30
    for filename, name in refs:
        (path,) = (ROOT / "tests").rglob(filename)  # test file names are unique
        source = path.read_text()
        assert f"def {name}(" in source, f"tests/README.md names a missing test {filename}::{name}"


def doc_blocks():
    """(page, marker, language, code) for every fenced bash/python block of :data:`DOC_PAGES`."""
    import re

    pattern = re.compile(r"(?:<!-- readme-test: ([^>]*?) -->\n)?```(bash|python)\n(.*?)```", re.S)
    return [
        (page.relative_to(ROOT).as_posix(), m.group(1), m.group(2), m.group(3))
        for page in DOC_PAGES
        for m in pattern.finditer(page.read_text())
    ]


def readme_blocks():
    """(marker, language, code) for every fenced bash/python block of the README and docs/."""
    return [(marker, language, code) for _, marker, language, code in doc_blocks()]


def test_every_readme_code_block_is_marked_run_or_skip_with_a_reason():
    blocks = doc_blocks()
    assert len(blocks) >= 5
    assert {"README.md", "docs/serving.md", "docs/config.md"} <= {page for page, *_ in blocks}
    for page, marker, _, code in blocks:
        assert marker is not None, f"{page}: block without a readme-test marker:\n{code}"
        assert marker == "run" or (marker.startswith("skip: ") and len(marker) > 12), marker
    readme_runs = [c for p, m, _, c in blocks if p == "README.md" and m == "run"]
    assert any("--output runs/mine" in c for c in readme_runs), "the run the docs' examples use"


@pytest.mark.kit
@pytest.mark.slow
def test_readme_code_blocks_marked_run_run_as_written(tmp_path):
    """Runs each `run` block of the README and docs/ in order, in a scratch folder with the repo's
    recipes/ and a small image folder at path/to/folder (the pages' placeholder). The README's
    quick start trains runs/mine on it once; the docs' predict, export and LiteRT blocks use that
    run instead of training their own."""
    import os
    import subprocess
    import sys

    from conftest import write_class_images

    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    write_class_images(tmp_path / "path" / "to" / "folder", {"cat": 8, "dog": 8}, size=64)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    for page, marker, language, code in doc_blocks():
        if marker != "run":
            continue
        cmd = (
            ["bash", "-euo", "pipefail", "-c", code]
            if language == "bash"
            else [sys.executable, "-c", code]
        )
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"{page} block failed:\n{code}\n{proc.stderr[-3000:]}"
    assert (tmp_path / "runs" / "mine" / "saved_model" / "saved_model.pb").exists()
    assert (tmp_path / "runs" / "mine" / "model_int8.tflite").exists()  # docs/serving.md's export
    assert (tmp_path / "predictions.csv").exists()
    shift = json.loads((tmp_path / "shift.json").read_text())  # docs/serving.md's --shift
    assert shift["images"] == 16 and 0 <= shift["mean"] <= 1 and len(shift) == 18


def test_multitask_example_config_resolves_to_the_documented_coarse_grouping():
    from tfxfer.methods import tasks

    cfg = Config.load(
        ROOT / "recipes" / "fashion_multitask.toml", base=Config(recipe="small_different")
    )
    assert [t.name for t in cfg.tasks] == ["fine", "coarse"]
    assert cfg.tasks[1].groups == tasks.FASHION_MNIST_COARSE


def test_methods_command_lines_in_the_readme_resolve_to_what_the_methods_table_says():
    """The methods block is too slow to run here; each line must still parse to its intent."""
    import shlex

    from tfxfer import cli

    (code,) = [c for _, _, c in readme_blocks() if "lr_decay=0.5" in c]
    configs = []
    for line in code.strip().splitlines():
        words = shlex.split(line)
        assert words[:2] == ["python", "-m"], line
        module = importlib.import_module(words[2])
        configs.append(cli.resolve_config(module.CONFIG, words[3:]))
    discriminative, multitask = configs
    assert discriminative.phases[1].lr_decay == 0.5
    assert discriminative.regularization.method == "l2sp"
    assert [t.name for t in multitask.tasks] == ["fine", "coarse"]
    assert multitask.recipe == "small_different"


def test_target_recipe_command_lines_in_the_readme_resolve_to_their_intent():
    """The domain_adapt and zero_shot blocks are too slow to run here; each line must parse."""
    import shlex

    from tfxfer import cli

    lines = [
        line
        for _, _, c in readme_blocks()
        for line in c.strip().splitlines()
        if "recipes.domain_adapt" in line or "recipes.zero_shot" in line
    ]
    configs = []
    for line in lines:
        words = shlex.split(line)
        module = importlib.import_module(words[2])
        configs.append(cli.resolve_config(module.CONFIG, words[3:], flags=module.FLAGS))
    dann, source_only, composed, folders, self_trained, demo, custom = configs
    assert (dann.data, dann.adapt.target, dann.adapt.method) == ("mnist", "mnist_m", "dann")
    assert dann.backbone == "auto" and dann.adapt.self_train == 0  # chosen from the data
    assert (self_trained.adapt.target, self_trained.adapt.method) == ("usps", "cdan+e+mcc")
    assert self_trained.adapt.self_train == 1 and self_trained.phases[0].epochs == 10
    assert source_only.adapt.method == "source_only" and dann.train_per_class == 2000
    assert composed.adapt.method == "cdan+e+mcc" and composed.adapt.target == "mnist_m"
    assert (folders.adapt.target, folders.adapt.target_val) == (
        "path/to/unlabelled_photos",
        "path/to/a_few_labelled_photos",
    )
    assert demo.zero_shot.unseen == ("Coat", "Sneaker", "Trouser") and demo.data == "fashion_mnist"
    assert custom.zero_shot.unseen == ("zebra", "otter")
    assert custom.zero_shot.attributes == "path/to/attributes.csv"


def test_auto_and_lr_finder_command_lines_in_the_readme_resolve_to_their_intent():
    """The auto and LR-finder lines are too slow to run here; each must parse to what it says."""
    import shlex

    from tfxfer import cli

    configs = []
    for line in [
        line.split("#")[0]
        for _, _, c in readme_blocks()
        for line in c.strip().splitlines()
        if "recipes.auto --data path" in line or "lr=auto" in line or "tfxfer lr-find" in line
    ]:
        words = shlex.split(line)
        if words[0] == "tfxfer":  # tfxfer lr-find RECIPE options: the recipe's own options
            module = importlib.import_module(f"tfxfer.recipes.{words[2]}")
            configs.append(cli.resolve_config(module.CONFIG, words[3:]))
            continue
        module = importlib.import_module(words[2])
        configs.append(
            cli.resolve_config(module.CONFIG, words[3:], flags=getattr(module, "FLAGS", ()))
        )
    plain, compare, found, one_phase, sweep = configs
    assert plain.recipe == "auto" and not plain.auto.compare and not plain.auto.lr_find
    assert compare.auto.compare and found.auto.lr_find
    assert [p.lr for p in one_phase.phases] == [1e-3, "auto"]
    assert sweep.recipe == "small_different" and sweep.data == "path/to/folder"


def test_generative_command_lines_in_the_readme_resolve_to_their_intent():
    """The GAN block is too slow to run here (test_cli.py runs the command on a small folder)."""
    import shlex

    from tfxfer import cli
    from tfxfer.recipes import generative as command

    (code,) = [c for _, _, c in readme_blocks() if "tfxfer.generative" in c]
    configs = []
    for line in code.strip().splitlines():
        words = shlex.split(line)
        module = command if words[2] == "tfxfer.generative" else importlib.import_module(words[2])
        configs.append(
            cli.resolve_config(module.CONFIG, words[3:], flags=getattr(module, "FLAGS", ()))
        )
    gan, recipe = configs
    assert (gan.data, gan.train_per_class, gan.output) == ("fashion_mnist", 100, "runs/gan")
    assert recipe.augment.synthetic_ratio == 1.0 and recipe.augment.generator == gan.output
    assert (recipe.data, recipe.train_per_class) == (gan.data, gan.train_per_class)


def test_text_command_lines_in_the_readme_resolve_to_their_intent():
    """The text block needs a pretrained preset; each line must still parse to its intent."""
    import shlex

    from tfxfer import cli
    from tfxfer.recipes import text_classify

    lines = [
        line
        for _, _, c in readme_blocks()
        for line in c.strip().splitlines()
        if "recipes.text_classify" in line
    ]
    configs = []
    for line in lines:
        words = shlex.split(line)
        scope = words[words.index("--scope") + 1]
        configs.append(
            cli.resolve_config(text_classify.config(scope), words[3:], flags=text_classify.FLAGS)
        )
    sst2, table, folder = configs
    assert (sst2.data, sst2.text.scope, sst2.phases[0].lr) == ("sst2", "full", 5e-5)
    assert (table.text.scope, table.lora.rank, table.phases[0].lr) == ("lora", 8, 3e-3)
    assert table.text.preset.startswith("hf://")
    assert (folder.text.scope, folder.text.top_k, folder.phases[0].lr) == ("top_k", 2, 1e-4)


def test_config_command_lines_in_the_docs_resolve_to_their_intent(monkeypatch):
    """docs/config.md's CLI lines are full-size runs, too slow to run here (the README's quick
    start runs a recipe as written): each must parse to what it says, and its Python block must
    build the same configs as the command lines."""
    import shlex

    from tfxfer import cli

    monkeypatch.chdir(ROOT)  # the lines name recipes/large_similar.toml from the repo root
    (code,) = [c for _, _, c in readme_blocks() if "--freeze-blocks 2" in c]
    configs = []
    for line in code.strip().splitlines():
        words = shlex.split(line)
        assert words[:2] == ["python", "-m"], line
        module = importlib.import_module(words[2])
        configs.append(cli.resolve_config(module.CONFIG, words[3:]))
    ants, partial, big = configs
    assert (ants.recipe, ants.data, ants.output) == ("small_similar", "hymenoptera", "runs/ants")
    assert [p.epochs for p in ants.phases] == [3] * len(ants.phases)
    assert (partial.recipe, partial.freeze_blocks, partial.phases[1].name) == (
        "small_different",
        2,
        "partial",
    )
    assert partial.phases[1].lr == 3e-4 and partial.data == "path/to/folder"
    from_file = Config.load(ROOT / "recipes" / "large_similar.toml", base=Config())
    assert (big.recipe, big.data, big.batch_size) == ("large_similar", "path/to/folder", 16)
    assert [(p.name, p.lr) for p in big.phases] == [(p.name, p.lr) for p in from_file.phases]

    (python,) = [c for _, lang, c in readme_blocks() if lang == "python" and "freeze_blocks=2" in c]
    namespace = {}
    exec(python, namespace)  # builds configs only; nothing trains
    assert namespace["cfg"] == partial and namespace["big"] == big


def test_auto_dry_run_line_in_the_docs_resolves_to_a_plan_only_run():
    """docs/auto.md's dry run probes all of hymenoptera, too slow to run here (test_auto.py
    runs a dry run on a folder): the line must still parse to a plan-only auto run."""
    import shlex

    from tfxfer import cli
    from tfxfer.recipes import auto

    (line,) = [
        line
        for _, _, c in readme_blocks()
        for line in c.strip().splitlines()
        if "recipes.auto" in line and "--dry-run" in line
    ]
    words = shlex.split(line)
    assert words[:3] == ["python", "-m", "tfxfer.recipes.auto"], line
    cfg = cli.resolve_config(auto.CONFIG, words[3:], flags=auto.FLAGS)
    assert (cfg.recipe, cfg.data, cfg.output) == ("auto", "hymenoptera", "runs/auto")
    assert cfg.auto.dry_run and not cfg.auto.compare and not cfg.auto.lr_find


def test_robust_and_distill_command_lines_in_the_docs_resolve_to_their_intent():
    """docs/robust.md's runs take minutes; each line must parse to what the page says."""
    import shlex

    from tfxfer import cli

    lines = [
        line
        for page, _, _, c in doc_blocks()
        if page == "docs/robust.md"
        for line in c.strip().splitlines()
    ]
    configs = []
    for line in lines:
        words = shlex.split(line)
        module = importlib.import_module(words[2])
        configs.append(
            cli.resolve_config(module.CONFIG, words[3:], flags=getattr(module, "FLAGS", ()))
        )
    ema, wise, teacher, student, labels_only = configs
    assert ema.phases[1].ema == 0.97 and ema.recipe == "large_similar"
    assert wise.wise_ft == "auto" and wise.data == "cats_and_dogs_filtered"
    assert (teacher.recipe, teacher.output) == ("small_similar", "runs/teacher")
    assert (student.recipe, student.distill.teacher, student.backbone) == (
        "distill",
        "runs/teacher",
        "MobileNet025",
    )
    assert student.export == ("litert-int8",) and student.distill.alpha == 0.1
    assert labels_only.distill.alpha == 1.0 and labels_only.output == "runs/labels_only"
