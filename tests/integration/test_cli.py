"""User mistakes through the real CLI, in subprocesses: one line, exit 2, no traceback."""

import json
import os
import subprocess
import sys

import pytest
from conftest import write_class_images
from support import assert_one_line_error


def run_cli(args, cwd, module="tfxfer.recipes.small_similar", timeout=120):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def good_folder(tmp_path):
    return write_class_images(tmp_path / "good", {"a": 6, "b": 6})


CASES = {
    "unknown backbone": (
        ["--backbone", "ResNet51"],
        ["backbone must be a registered name", "MobileNetV2", "ResNet51"],
    ),
    "missing data path": (
        ["--data", "/no/such/dir"],
        ["data must be an existing directory", "/no/such/dir"],
    ),
    "image size below minimum": (
        ["--backbone", "Xception", "--image-size", "32"],
        ["image_size must be >= 71 for Xception"],
    ),
    "unknown config key": (["--set", "learning_rate=0.1"], ["unknown config key", "learning_rate"]),
    "wrong type": (["--set", "batch_size=big"], ["batch_size must be an integer", "big"]),
    "zero epochs": (["--epochs", "0"], ["must be >= 1", "got 0"]),
    "negative batch": (["--batch-size", "-4"], ["batch_size must be >= 1"]),
    "freeze beyond depth": (
        [
            "--freeze-blocks",
            "9",
            "--set",
            "phases.0.trainable=partial",
            "--weights",
            "none",
            "--image-size",
            "32",
        ],
        ["freeze_blocks must be between 0 and 5"],
    ),
    "bad strategy": (["--strategy", "magic"], ["strategy must be one of", "mirrored"]),
    "not a flag": (["--epoch", "3", "--bogus"], ["invalid command line"]),
    "weights file that does not fit": (
        ["--weights", "__WRONG__", "--image-size", "32"],
        ["weights file must fit MobileNetV2"],
    ),
    "missing config file": (["--config", "/no/such.toml"], ["config file must exist"]),
    "another recipe's section": (
        ["--set", "auto.compare=true"],
        ["auto.* settings belong to the auto recipe", "compare=True"],
    ),
    "GAN settings without synthetic images": (
        ["--set", "generative.steps=5"],
        ["generative.* settings train the GAN of augment.synthetic_ratio, which is 0 here"],
    ),
    "generator folder that holds none": (
        [
            "--set",
            "augment.synthetic_ratio=1",
            "--set",
            "augment.generator=/no/such",
            "--weights",
            "none",
            "--image-size",
            "32",
        ],
        ["augment.generator must be a folder holding generator.keras", "/no/such"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_argument_gives_one_line_error(case, tmp_path, good_folder):
    args, fragments = CASES[case]
    if "__WRONG__" in args:
        import keras

        wrong = tmp_path / "wrong.weights.h5"
        keras.applications.MobileNet(
            include_top=False, weights=None, alpha=0.25, input_shape=(32, 32, 3)
        ).save_weights(wrong)
        args = [str(wrong) if a == "__WRONG__" else a for a in args]
    base = ["--data", str(good_folder), "--output", str(tmp_path / "out")]
    assert_one_line_error(run_cli(base + args, tmp_path), *fragments)


def test_data_folder_with_one_class_is_refused(tmp_path):
    folder = write_class_images(tmp_path / "one", {"only": 5})
    proc = run_cli(["--data", str(folder), "--output", str(tmp_path / "o")], tmp_path)
    assert_one_line_error(proc, "at least 2 classes")


def test_unknown_recipe_through_the_console_entry(tmp_path):
    code = "import sys; from tfxfer.cli import entry; sys.exit(entry(['tiny_similar']))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert_one_line_error(
        proc,
        "must be a recipe, predict, export or lr-find",
        "small_similar",
        "auto",
        "lr-find",
        "tiny_similar",
    )


def test_output_dir_with_a_different_run_is_refused_unless_overwrite(tmp_path, good_folder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"recipe": "other", "data": "elsewhere"}))
    base = [
        "--data",
        str(good_folder),
        "--output",
        str(out),
        "--backbone",
        "MobileNet025",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--epochs",
        "1",
    ]
    assert_one_line_error(run_cli(base, tmp_path), "already holds a different run", "--overwrite")
    ok = run_cli(base + ["--overwrite"], tmp_path, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "val_accuracy=" in ok.stdout and "exported SavedModel" in ok.stdout


def test_help_lists_backbones_and_the_global_batch_rule(tmp_path):
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0
    assert "GLOBAL batch" in proc.stdout and "EfficientNetV2S" in proc.stdout


def test_generative_command_trains_samples_and_measures(tmp_path):
    folder = write_class_images(tmp_path / "ten", {"a": 10, "b": 10})
    out = tmp_path / "gan"
    args = [
        "--data",
        str(folder),
        "--output",
        str(out),
        "--weights",
        "none",
        "--image-size",
        "32",
        "--steps",
        "3",
        "--set",
        "generative.batch_size=4",
        "--set",
        "generative.width=4",
        "--set",
        "generative.kid_images=4",
    ]
    proc = run_cli(args, tmp_path, module="tfxfer.generative")
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "generator.json").read_text())
    assert (meta["steps"], meta["image_size"], meta["channels"]) == (3, 32, 3)  # decoded at 32
    # 20% of the 20 images are validation: the GAN trained on the rest, KID used the held-out
    assert meta["settings"]["images"] + meta["kid_images"] == 20 and meta["kid_images"] == 4
    assert (out / "samples.png").stat().st_size > 0 and "KID vs validation" in proc.stdout
    assert_one_line_error(
        run_cli(args[:-6] + ["--steps", "many"], tmp_path, module="tfxfer.generative"),
        "invalid command line",
        "many",
    )


def test_help_needs_no_tensorflow_and_a_missing_command_exits_2_with_usage(tmp_path):
    """``tfxfer --help`` and a recipe's ``--help`` print without importing TensorFlow or Keras
    (no start-up log lines, well under a second); ``tfxfer`` alone is a usage error (exit 2)."""
    probe = (
        "import atexit, sys; sys.argv = ['tfxfer'] + sys.argv[1:]\n"
        "atexit.register(lambda: print('HEAVY', sorted(m for m in ('tensorflow', 'keras') "
        "if m in sys.modules)))\n"
        "from tfxfer.cli import entry; raise SystemExit(entry(sys.argv[1:]))"
    )
    for args in (
        ["--help"],
        ["small_similar", "--help"],
        ["auto", "--help"],
        ["domain_adapt", "--help"],
        ["predict", "--help"],
        ["export", "--help"],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "HEAVY []" in proc.stdout and "usage" in proc.stdout.lower(), (args, proc.stdout)
        assert "I0000" not in proc.stderr and "absl" not in proc.stderr, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 2 and "usage: tfxfer RECIPE" in proc.stderr
    assert "a command is required" in proc.stderr and proc.stdout.strip() == "HEAVY []"
