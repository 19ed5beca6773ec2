import json

import pytest

from tfxfer.config import Config, Phase
from tfxfer.errors import UserError


def test_defaults_round_trip_through_dict_and_file(tmp_path):
    cfg = Config(head_hidden=(64, 32), phases=(Phase(epochs=2), Phase(name="ft", trainable="all")))
    assert Config.from_dict(cfg.to_dict()) == cfg
    cfg.save(tmp_path / "c.json")
    assert Config.load(tmp_path / "c.json") == cfg


def test_partial_toml_file_fills_in_from_base(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('backbone = "ResNet50"\n[[phases]]\nepochs = 7\nlr = 0.01\n')
    cfg = Config.load(path, base=Config(batch_size=8))
    assert (cfg.backbone, cfg.batch_size, cfg.phases[0].epochs, cfg.phases[0].lr) == (
        "ResNet50",
        8,
        7,
        0.01,
    )
    assert cfg.phases[0].optimizer == "adam"  # unspecified phase keys take Phase defaults


def test_unknown_key_is_rejected_with_the_valid_keys():
    with pytest.raises(UserError, match="unknown config key.*valid:.*backbone.*got 'backbon'"):
        Config().replace(backbon="x")
    with pytest.raises(UserError, match="unknown config key"):
        Config().override(["phases.0.learning_rate=1"])
    with pytest.raises(UserError, match="unknown config key"):
        Config.from_dict({"phases": [{"epoch": 3}]})


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("batch_size=abc", "batch_size must be an integer"),
        ("batch_size=1.5", "batch_size must be an integer"),
        ("head_dropout=high", "head_dropout must be a number"),
        ("train_bn=1", "train_bn must be true or false"),
        ("head_hidden=5", "head_hidden must be a list"),
        ("batch_size=0", "batch_size must be >= 1"),
        ("seed=-3", "seed must be >= 0"),
        ("phases.0.epochs=0", "epochs .* must be >= 1"),
        ("phases.0.epochs=-3", "epochs .* must be >= 1"),
        ("strategy=cluster", "strategy must be one of"),
        ("augment=extreme", "augment.preset must be one of"),
        ("augment.synthetic_ratio=-1", "augment.synthetic_ratio must be >= 0"),
        ("augment.generator=/g", "augment.generator is sampled only when augment.synthetic_ratio"),
        ("generative.image_size=30", "generative.image_size must be 0 .automatic. or a multiple"),
        ("generative.ema=1", "generative.ema must be in"),
        ("phases.3.lr=1", "'phases.3.lr' must name an existing entry by index"),
        ("nonsense", "--set takes key=value"),
        ("regularization=l3", "regularization.method must be one of"),
        ("regularization.alpha=-1", "regularization.alpha must be >= 0"),
        ("beta=-1", "regularization.beta must be >= 0"),
    ],
)
def test_wrong_values_are_rejected_with_the_rule(assignment, message):
    with pytest.raises(UserError, match=message):
        Config().override([assignment])


def test_augment_shorthand_keeps_the_rest_of_the_table(tmp_path):
    from tfxfer.config import Augment

    cfg = Config().override(["augment.synthetic_ratio=2", "augment=none"])
    assert cfg.augment == Augment(preset="none", synthetic_ratio=2.0)  # "none" parses as null
    assert Config().override(["augment.preset=none"]).augment.preset == "none"  # the long form
    assert Config(augment="strong").replace(augment={"synthetic_ratio": 1}).augment == Augment(
        "strong", 1.0
    )  # a partial table keeps the rest of the base's
    assert cfg.replace(augment="strong").augment == Augment("strong", 2.0)
    assert Config(augment="standard").augment == Augment("standard")  # alone: the defaults
    assert Config(augment={"synthetic_ratio": 1}).augment == Augment("light", 1.0)
    path = tmp_path / "c.toml"
    path.write_text('augment = "strong"\n[generative]\nsteps = 10\n')
    loaded = Config.load(path)
    assert (loaded.augment.preset, loaded.generative.steps) == ("strong", 10)
    assert Config.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["augment"]["preset"] == "none"


def test_regularization_is_a_section_with_a_method_shorthand(tmp_path):
    from tfxfer.config import Regularization

    cfg = Config().override(["regularization.alpha=0.5", "regularization=l2sp"])
    assert cfg.regularization == Regularization("l2sp", 0.5, 0.01)  # the bare string: the method
    assert Config().override(["regularization.method=none"]).regularization.method == "none"
    assert Config(regularization="l2").regularization == Regularization("l2")
    path = tmp_path / "c.toml"
    path.write_text('regularization = "l2sp"\n')
    assert Config.load(path).regularization.method == "l2sp"
    assert Config.load(path).to_dict()["regularization"] == {
        "method": "l2sp",
        "alpha": 0.1,
        "beta": 0.01,
    }


@pytest.mark.parametrize(
    "build",
    [
        lambda path: Config().override(["alpha=0.3", "beta=0.02", "regularization=l2sp"]),
        lambda path: Config().replace(alpha=0.3, beta=0.02, regularization="l2sp"),
        lambda path: Config.load(path),
    ],
    ids=["--set", "replace", "file"],
)
def test_moved_keys_still_work_with_a_one_line_warning(build, tmp_path, caplog):
    """alpha and beta, top-level keys before the regularization section, keep working from
    every way in (a config file as written before the move included), each with one line."""
    path = tmp_path / "old.toml"
    path.write_text('regularization = "l2sp"\nalpha = 0.3\nbeta = 0.02\n')
    with caplog.at_level("WARNING", logger="tfxfer"):
        cfg = build(path)
    assert (cfg.regularization.method, cfg.regularization.alpha, cfg.regularization.beta) == (
        "l2sp",
        0.3,
        0.02,
    )
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "config key 'alpha' is now 'regularization.alpha'; the old name still works for now",
        "config key 'beta' is now 'regularization.beta'; the old name still works for now",
    ]


def test_set_overrides_parse_json_values_and_dotted_paths():
    cfg = Config(phases=(Phase(), Phase(name="ft"))).override(
        ["phases.1.lr=1e-5", "head_hidden=[128]", "weights=none", "train_bn=true", "data=/some/dir"]
    )
    assert cfg.phases[1].lr == 1e-5 and cfg.phases[0].lr == 1e-3
    assert cfg.head_hidden == (128,) and cfg.weights is None and cfg.train_bn is True
    assert cfg.data == "/some/dir"


def test_config_is_frozen_and_with_epochs_sets_every_phase():
    cfg = Config(phases=(Phase(epochs=2), Phase(name="ft", epochs=9)))
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.batch_size = 3  # type: ignore[misc]
    assert [p.epochs for p in cfg.with_epochs(4).phases] == [4, 4]


def test_saved_json_is_plain_json(tmp_path):
    Config().save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["phases"][0]["trainable"] == "head" and isinstance(data["head_hidden"], list)


@pytest.mark.integration
def test_python_310_support_is_true_as_declared(tmp_path):
    """pyproject says requires-python >= 3.10: every module parses as 3.10 syntax, and TOML
    configs load through tomli where the standard library has no tomllib."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[3]  # the repository
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert declared["requires-python"] == ">=3.10"
    assert any(d.startswith("tomli") and "3.11" in d for d in declared["dependencies"])
    for path in sorted((root / "tfxfer").rglob("*.py")):
        ast.parse(path.read_text(), str(path), feature_version=(3, 10))
    (tmp_path / "c.toml").write_text('backbone = "ResNet50"\n[[phases]]\nepochs = 2\n')
    code = (
        "import sys; sys.modules['tomllib'] = None\n"  # import tomllib now fails, as on 3.10
        "sys.argv = ['tfxfer']\n"  # as on tfxfer's command line: no TensorFlow import needed
        "from tfxfer.config import Config\n"
        f"cfg = Config.load({str(tmp_path / 'c.toml')!r})\n"
        "assert sys.modules['tomli'] and cfg.backbone == 'ResNet50', cfg\n"
        "print(cfg.phases[0].epochs)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "2", proc.stderr[-2000:]
