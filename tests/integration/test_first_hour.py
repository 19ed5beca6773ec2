"""A new user's first hour, through the real ``tfxfer`` command line (subprocesses): mistakes
found before any work, paths that cannot be written, failed runs that leave nothing behind, one
phase numbering, one export vocabulary, LiteRT inputs and labels, and messages that name the
cause. One tiny trained run (module scope) serves the tests that need a finished run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_class_images
from support import assert_one_line_error

# The console script pip installed beside this interpreter: the command a user types.
TFXFER = os.path.join(os.path.dirname(sys.executable), "tfxfer")


def tfxfer(*args, cwd, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [TFXFER, *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TINY = (  # the smallest registered family: these tests are about the command, not the network
    "--backbone",
    "MobileNet025",
    "--weights",
    "none",
    "--image-size",
    "32",
    "--epochs",
    "1",
    "--set",
    "verbose=0",
    "--set",
    "feature_views=1",
)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """``small_different`` trained at 32 px with an fp32 LiteRT file, the partial phase's rate
    set by name: ``(run_dir, data_dir, workdir, stdout+stderr of the run)``. Trained once for
    all xdist workers (under a lock in their shared temporary folder); a test that changes the
    run works on its own copy (:func:`copy_of`)."""
    import fcntl

    work = tmp_path_factory.getbasetemp().parent / "first_hour"
    work.mkdir(exist_ok=True)
    data, out, log = work / "data", work / "run", work / "log.txt"
    with open(work / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not log.exists():
            write_class_images(data, {"ants": 6, "bees": 6})
            proc = tfxfer(
                "small_different",
                "--data",
                data,
                "--output",
                out,
                *TINY,
                "--export",
                "fp32",
                "--set",
                "phases.partial.lr=3e-5",
                cwd=work,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            log.write_text(proc.stdout + proc.stderr)
    return out, data, work, log.read_text()


def copy_of(run, tmp_path):
    import shutil

    return shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns(".tfxfer.lock"))


# 1. everything that shows without data is refused before any is read -----------------------
UP_FRONT = {
    "freeze blocks beyond the backbone's (a partial phase)": (
        ["small_different", "--freeze-blocks", "7"],
        ["freeze_blocks must be between 0 and 5"],
    ),
    "freeze blocks beyond the backbone's (head-only recipe)": (
        ["small_similar", "--freeze-blocks", "7"],
        ["freeze_blocks must be between 0 and 5"],
    ),
    "image size 0 names the backbone's minimum": (
        ["small_similar", "--image-size", "0"],
        ["image_size must be >= 32 for MobileNetV2"],
    ),
    "an export format that does not exist": (
        ["small_similar", "--export", "onnx"],
        ["export must be one of", "litert-int8"],
    ),
    "a phase that does not exist, by name": (
        ["small_different", "--set", "phases.fine.lr=1e-5"],
        ["must name an existing entry by index (from 0) or name", "1 or partial"],
    ),
    "freeze blocks beyond a digit network's two": (
        ["small_different", "--backbone", "DannMnist", "--weights", "none", "--freeze-blocks", "3"],
        ["freeze_blocks must be between 0 and 2 (DannMnist is split into 2 blocks)"],
    ),
    "ImageNet weights for a network trained from scratch": (
        ["domain_adapt", "--backbone", "LeNet", "--target", "somewhere"],
        ["LeNet has no ImageNet weights", "--weights none"],
    ),
}


@pytest.mark.parametrize("case", sorted(UP_FRONT))
def test_mistakes_are_refused_before_any_data_is_read(case, tmp_path):
    args, fragments = UP_FRONT[case]
    # the data does not exist: an error about it would mean the data was read first
    proc = tfxfer(
        *args,
        "--data",
        tmp_path / "no_such_data",
        "--output",
        tmp_path / "out",
        cwd=tmp_path,
        timeout=120,
    )
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "out").exists()  # nothing was written, so nothing blocks the fix


def test_a_mistake_or_help_answers_before_tensorflow_is_imported(tmp_path):
    """The answer to a mistyped command or --help comes in a fraction of a second: the Keras
    registrations (which import TensorFlow) wait until work starts. Both entry points."""
    args, fragments = UP_FRONT["freeze blocks beyond the backbone's (a partial phase)"]
    mistakes = ["--data", tmp_path / "none", "--output", tmp_path / "out"]
    for cmd in (
        [sys.executable, "-X", "importtime", "-m", "tfxfer.recipes.small_different", *args[1:]],
        [sys.executable, "-X", "importtime", TFXFER, *args],
    ):
        proc = subprocess.run(
            [*map(str, cmd), *map(str, mistakes)], cwd=tmp_path, capture_output=True, text=True
        )
        assert_one_line_error(proc, *fragments)
        imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
        assert "tfxfer.cli" in imported or "tfxfer.runner" in imported, proc.stderr[-2000:]
        assert "tensorflow" not in imported and "keras" not in imported
    help_proc = subprocess.run(
        [sys.executable, "-X", "importtime", TFXFER, "small_similar", "--help"],
        capture_output=True,
        text=True,
    )
    assert help_proc.returncode == 0 and "--freeze-blocks" in help_proc.stdout
    assert "tensorflow" not in [
        line.rsplit("|", 1)[-1].strip() for line in help_proc.stderr.splitlines()
    ]


# 2. a path that cannot be written: one line, before any work ------------------------------
def test_unwritable_output_is_one_line_before_any_work(tmp_path, finished):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for output, cause in (
        ("/proc/x", "No such file or directory"),
        (a_file, "is a file, not a directory"),
    ):
        proc = tfxfer(
            "small_similar",
            "--data",
            tmp_path / "no_such_data",
            "--output",
            output,
            cwd=tmp_path,
            timeout=120,
        )
        assert_one_line_error(
            proc, "the output directory must be one tfxfer can create and write in", cause
        )
    run, data, work, _ = finished
    proc = tfxfer("predict", run, data, "--output", "/proc/x/pred.csv", cwd=work, timeout=120)
    assert_one_line_error(proc, "/proc/x")
    assert "images classified" not in proc.stderr and "/12 images" not in proc.stderr


# 3. a run that fails before training leaves nothing that blocks its fix --------------------
def test_a_run_that_failed_before_training_does_not_block_the_corrected_command(tmp_path):
    data = write_class_images(tmp_path / "data", {"only": 6})
    out = tmp_path / "out"
    args = ("small_similar", "--data", data, "--output", out, *TINY)
    assert_one_line_error(tfxfer(*args, cwd=tmp_path), "at least 2 classes")
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    (out / "notes").mkdir(parents=True)  # a folder the user keeps there survives a failure
    assert_one_line_error(tfxfer(*args, cwd=tmp_path), "at least 2 classes")
    assert sorted(p.name for p in out.iterdir()) == ["notes"]
    write_class_images(data, {"other": 6})
    fixed = tfxfer(*args, "--set", "phases.head.lr=2e-3", cwd=tmp_path)  # a changed config too
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["phases"][0]["lr"] == 2e-3


# 4. one phase numbering: by index from 0 or by name, in the log, --set and --help ----------
def test_phases_are_named_and_numbered_alike_in_set_log_and_help(tmp_path, finished):
    _, _, _, log = finished
    assert "phases.0 'head' (1 of 2)" in log and "phases.1 'partial' (2 of 2)" in log
    assert "lr=3e-05" in log.split("phases.1 'partial'")[1].splitlines()[0]
    for recipe, example in (
        ("small_similar", "phases.head.lr=1e-5"),
        ("small_different", "phases.partial.lr=1e-5"),
    ):
        help_text = tfxfer(recipe, "--help", cwd=tmp_path, timeout=60).stdout
        assert f"e.g. --set {example}" in help_text and "phases.0 or phases.head" in help_text
        # the help's own example is accepted (the missing data is what stops it)
        proc = tfxfer(
            recipe,
            "--set",
            example,
            "--data",
            tmp_path / "none",
            "--output",
            tmp_path / "o",
            cwd=tmp_path,
            timeout=120,
        )
        assert_one_line_error(proc, "data must be an existing directory")
    auto_help = tfxfer("auto", "--help", cwd=tmp_path, timeout=60).stdout
    assert "phases: those of the recipe the plan chooses" in auto_help
    assert "auto.compare=false" in auto_help and "auto.similar_distance=0.046" in auto_help
    assert "phases.0 head[" not in auto_help


# 5. one export vocabulary; predict and export take each other's folders ------------------
def test_export_and_predict_accept_both_vocabularies_and_both_folders(finished, tmp_path):
    run, data, work, _ = finished
    run = copy_of(run, tmp_path)
    proc = tfxfer("export", run / "saved_model", "--litert", "litert-fp16", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "model_fp16.tflite").is_file() and not list(run.glob("*litert-litert*"))
    proc = tfxfer("export", run, "--export", "dynamic", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    litert = json.loads((run / "metrics.json").read_text())["litert"]
    assert sorted(litert) == ["dynamic", "fp16", "fp32"]
    for model in (run, run / "saved_model"):
        proc = tfxfer("predict", model, data / "ants", cwd=work, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("\n") == 7 and "6 of 6 images classified" in proc.stderr
    assert_one_line_error(
        tfxfer("predict", work, data, cwd=work, timeout=120),
        "a run folder or its saved_model folder",
    )


# 6. LiteRT: the pixels training saw, and the class names beside the file ----------------
def test_litert_takes_the_decoded_pixels_and_names_its_classes(finished, tmp_path):
    import tensorflow as tf

    from tfxfer.deploy import litert

    run, _, _, _ = finished
    assert (run / "labels.txt").read_text().split() == ["ants", "bees"]
    entry = json.loads((run / "metrics.json").read_text())["litert"]["fp32"]
    assert entry["labels"] == str(run / "labels.txt")
    # a 16-bit PNG with alpha: Pillow's convert("RGB") makes it white; pixels() does not
    rng = np.random.default_rng(0)
    rgba16 = rng.integers(0, 65536, (40, 52, 4)).astype(np.uint16)
    png = tf.io.encode_png(tf.constant(rgba16)).numpy()
    served = tf.saved_model.load(str(run / "saved_model"))
    seen = served.decode(tf.constant([png]))["images"].numpy()
    mine = litert.pixels([png], 32)
    assert mine.dtype == np.uint8 and np.array_equal(mine, seen.astype(np.uint8))
    got = litert.Runner((run / "model_fp32.tflite").read_bytes())(mine[0])[None]
    want = served.serve_bytes(tf.constant([png]))["probabilities"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


# 8. messages that name the real cause ---------------------------------------------------
def test_predict_names_empty_and_undecodable_files(finished, tmp_path):
    run, data, work, _ = finished
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_bytes(b"this is text, not an image")
    good = next((data / "ants").iterdir())
    proc = tfxfer(
        "predict", run, good, tmp_path / "empty.jpg", tmp_path / "notes.png", cwd=work, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {
        line.split(": ")[2]: line for line in proc.stderr.splitlines() if "unreadable:" in line
    }
    assert "empty file (0 bytes)" in lines[str(tmp_path / "empty.jpg")]
    bad = lines[str(tmp_path / "notes.png")]
    assert "Graph execution error" not in bad and "cannot decode (" in bad
    assert "image" in bad.split("cannot decode (")[1].lower(), bad


def test_messages_name_the_cause(tmp_path):
    data = write_class_images(tmp_path / "data", {"a": 6, "b": 1})  # no validation folder
    proc = tfxfer(
        "small_similar",
        "--data",
        data,
        "--output",
        tmp_path / "o",
        *TINY,
        cwd=tmp_path,
        timeout=120,
    )
    line = assert_one_line_error(proc, "every class needs at least 2 images", "'b'")
    assert "validation folder" not in line.split("Fix:")[1]
    lr_help = tfxfer("lr-find", "--help", cwd=tmp_path, timeout=60).stdout
    assert ":mod:" not in lr_help and "``" not in lr_help and "<output>/lr_find" in lr_help
    data2 = write_class_images(tmp_path / "data2", {"a": 5, "b": 5})
    proc = tfxfer(
        "small_similar",
        "--data",
        data2,
        "--output",
        tmp_path / "o2",
        *TINY,
        "--batch-size",
        "100000",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "batch_size 100000 is larger than the 8 training images" in proc.stdout + proc.stderr


# 10. re-running a finished command keeps metrics.json and the .tflite files consistent ----
def test_rerun_keeps_the_litert_entries_of_the_same_weights_and_drops_stale_ones(
    finished, tmp_path
):
    run, data, work, _ = finished
    run = copy_of(run, tmp_path)
    assert tfxfer("export", run, "--export", "fp16", cwd=work).returncode == 0
    before = json.loads((run / "metrics.json").read_text())["litert"]
    assert sorted(before) == ["fp16", "fp32"]
    args = (
        "small_different",
        "--data",
        data,
        "--output",
        run,
        *TINY,
        "--set",
        "phases.partial.lr=3e-5",
    )  # the same run, without --export
    proc = tfxfer(*args, cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = json.loads((run / "metrics.json").read_text())
    assert after["litert"] == before  # every phase restored: the same weights, the same files
    assert all((run / f"model_{v}.tflite").is_file() for v in before)
    # a file converted from other weights is stale: deleted, with its entry
    after["litert"]["fp32"]["weights"] = "0" * 16
    (run / "metrics.json").write_text(json.dumps(after))
    proc = tfxfer(*args, cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    litert = json.loads((run / "metrics.json").read_text())["litert"]
    assert sorted(litert) == ["fp16"] and not (run / "model_fp32.tflite").exists()
    assert (run / "model_fp16.tflite").is_file()
