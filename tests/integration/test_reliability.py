"""Crashes, NaNs, safe loading and reproducibility, on real subprocesses where it matters."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_class_images

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def cli(args, cwd, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "tfxfer.recipes.large_similar", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def _args(data, out, epochs):
    return [
        "--data",
        str(data),
        "--output",
        str(out),
        "--weights",
        "none",
        "--image-size",
        "32",
        "--backbone",
        "MobileNet025",  # the smallest registered family: the loop is tested
        "--batch-size",
        "4",
        "--seed",
        "3",
        "--set",
        "phases.0.epochs=1",
        "--set",
        f"phases.1.epochs={epochs}",
        "--set",
        "phases.1.lr=0.001",
        "--set",
        "verbose=2",
    ]


def _no_half_written_files(out: Path) -> None:
    import h5py

    for path in out.rglob("*.json"):
        if not path.name.startswith("."):
            json.loads(path.read_text())  # every visible JSON file parses
    for path in out.rglob("*.h5"):
        if not path.name.startswith("."):
            with h5py.File(path, "r") as f:  # every visible weights file opens and lists
                assert list(f.keys()), path


@pytest.fixture
def folder(tmp_path):
    write_class_images(tmp_path / "d" / "train", {"a": 24, "b": 24})
    write_class_images(tmp_path / "d" / "val", {"a": 8, "b": 8}, seed=1)
    return tmp_path / "d"


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_resumes_and_matches_an_uninterrupted_run(folder, tmp_path):
    epochs = 5
    out = tmp_path / "killed"
    proc = cli(_args(folder, out, epochs), tmp_path)
    log = out / "checkpoints" / "phase1.epochs.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(json.loads(log.read_text())) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read()
    time.sleep(0.4)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _no_half_written_files(out)
    logged = len(json.loads(log.read_text()))
    meta = out / "checkpoints" / "phase1.backup" / "training_metadata.json"
    killed_at = json.loads(meta.read_text())["epoch"]  # what the backup holds
    assert 2 <= logged < epochs and logged in (killed_at, killed_at + 1)  # record, then backup
    kept = {p.name for p in meta.parent.glob("epoch*.weights.h5")}  # hidden temporaries aside
    # the previous epoch's file may remain if the kill came between metadata and clean-up
    assert f"epoch{killed_at}.weights.h5" in kept
    assert kept <= {f"epoch{killed_at}.weights.h5", f"epoch{killed_at - 1}.weights.h5"}, kept
    assert not (out / "metrics.json").exists()

    resumed = cli(_args(folder, out, epochs), tmp_path)
    text, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, text[-3000:]
    assert "phase 'warmup' was completed by an earlier run" in text
    assert f"resuming phase 'finetune' after its completed epoch {killed_at}" in text
    history = json.loads((out / "history.json").read_text())
    assert len(history[1]["history"]["loss"]) == epochs  # every epoch accounted for, once
    _no_half_written_files(out)

    clean = cli(_args(folder, tmp_path / "clean", epochs), tmp_path)
    clean_text, _ = clean.communicate(timeout=300)
    assert clean.returncode == 0, clean_text[-3000:]
    a = json.loads((out / "metrics.json").read_text())["val_accuracy"]
    b = json.loads((tmp_path / "clean" / "metrics.json").read_text())["val_accuracy"]
    assert abs(a - b) <= 0.02 + 1e-9, (a, b)


@pytest.mark.slow
def test_diverging_learning_rate_stops_with_phase_and_epoch_and_keeps_last_good_checkpoint(
    folder, tmp_path
):
    out = tmp_path / "nan"
    args = _args(folder, out, 3) + ["--set", "phases.1.lr=1e35", "--set", "phases.1.optimizer=sgd"]
    proc = cli(args, tmp_path)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, text[-3000:]
    assert "Traceback" not in text
    line = [row for row in text.splitlines() if "error:" in row]
    assert len(line) == 1 and "NaN or infinite in phase 'finetune' (phases.1), epoch 1" in line[0]
    assert "lower phases.1.lr" in line[0]
    import keras

    from tfxfer.models import model

    tm = model.build("MobileNet025", 2, 32, weights=None)
    tm.model.load_weights(str(out / "checkpoints" / "last.weights.h5"))  # the warm-up's weights
    assert all(np.isfinite(np.asarray(w)).all() for w in tm.model.weights)
    assert keras.backend.backend() == "tensorflow"
    assert "--resume" in line[0]

    # The documented way on: the same command, --resume, a lower rate. The warm-up is kept.
    warmup = (out / "checkpoints" / "phase0.done.json").read_text()
    bad = _args(folder, out, 3) + ["--set", "phases.0.lr=0.01", "--resume"]
    refused = cli(bad + ["--set", "phases.1.optimizer=sgd"], tmp_path)
    refused_text, _ = refused.communicate(timeout=300)
    assert refused.returncode == 2 and "phases.0.lr (phase 0 is completed)" in refused_text
    resumed = cli(
        _args(folder, out, 3)
        + ["--set", "phases.1.optimizer=sgd", "--resume", "--set", "phases.1.lr=0.001"],
        tmp_path,
    )
    text, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, text[-3000:]
    assert "phase 'warmup' was completed by an earlier run" in text
    assert (out / "checkpoints" / "phase0.done.json").read_text() == warmup
    history = json.loads((out / "history.json").read_text())
    losses = history[1]["history"]["loss"]
    assert len(losses) == 3 and np.isfinite(losses).all()
    assert json.loads((out / "config.json").read_text())["phases"][1]["lr"] == 0.001


# Both augmentation placements: (augment_in, cache_features, backbone). "data" with cached
# features compiles the head model, here behind EfficientNet's custom layers (freezable dropout,
# the stem rescaling); "model" compiles the whole training graph, augmentation layers included
# (as augment="none" does), around the cheapest backbone.
PLACEMENTS = (("data", True, "EfficientNetB0"), ("model", False, "MobileNet025"))


@pytest.mark.slow
def test_keras_file_and_savedmodel_load_safely_in_a_fresh_process(folder, tmp_path):
    """Both placements trained here, then loaded by one fresh process (one TensorFlow import)."""
    from tfxfer.recipes import small_similar

    runs = []
    for augment_in, cache, backbone in PLACEMENTS:
        cfg = small_similar.CONFIG.replace(
            data=str(folder),
            image_size=32,
            weights=None,
            augment="light",
            augment_in=augment_in,
            cache_features=cache,
            backbone=backbone,
            output=str(tmp_path / augment_in),
            verbose=0,
        ).with_epochs(1)
        result = small_similar.run(cfg)
        runs.append((result.paths["keras"], result.paths["saved_model"]))
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras, tensorflow as tf
        import tfxfer  # registers every custom object; no training code
        assert "tfxfer.train.loop" not in sys.modules and "tfxfer.recipes" not in sys.modules
        x = np.zeros((2, 32, 32, 3), np.uint8)
        for keras_file, saved_model in {runs!r}:
            m = keras.saving.load_model(keras_file, safe_mode=True)
            served = tf.saved_model.load(saved_model)
            a = served.serve_images(tf.constant(x))["logits"].numpy()
            b = m(x.astype("float32"), training=False).numpy()
            assert np.allclose(a, b, atol=1e-5), (keras_file, a, b)
            for bad in (x.astype("float32"), np.zeros((2, 48, 48, 1), np.uint8)):
                try:
                    served.serve_images(tf.constant(bad))
                except (TypeError, ValueError) as exc:
                    assert "uint8" in str(exc) or "3)" in str(exc), str(exc)[:300]
                else:
                    raise SystemExit("serve_images accepted a wrong input")
            print("OK", keras_file)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("OK ") == len(PLACEMENTS), proc.stdout


@pytest.mark.slow
def test_same_seed_same_data_gives_the_same_accuracy(folder, tmp_path):
    from tfxfer.recipes import small_different

    accs = []
    for i in range(2):
        cfg = small_different.CONFIG.replace(
            data=str(folder),
            image_size=32,
            weights=None,
            train_per_class=None,
            backbone="MobileNet025",
            val_per_class=None,
            output=str(tmp_path / f"r{i}"),
            verbose=0,
            seed=7,
        ).with_epochs(2)
        accs.append(small_different.run(cfg).metrics)
    assert abs(accs[0]["correct"] - accs[1]["correct"]) <= 1, accs


def test_balanced_class_weight_weights_rare_classes_up(tmp_path):
    from tfxfer.config import Config
    from tfxfer.train.inputs import class_weights

    weights = class_weights(Config(class_weight="balanced"), np.array([0] * 12 + [1] * 3), 2)
    np.testing.assert_allclose(weights, [15 / 24, 15 / 6])
    assert class_weights(Config(), np.array([0, 1]), 2) is None


@pytest.mark.slow
def test_a_second_run_into_a_running_directory_is_refused_and_a_killed_run_never_blocks(
    folder, tmp_path
):
    out = tmp_path / "busy"
    first = cli(_args(folder, out, 500), tmp_path)  # killed long before it could end
    lock = out / ".tfxfer.lock"
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        if lock.is_file() and f'"pid": {first.pid}' in lock.read_text():
            break
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended too early: " + first.stdout.read()
    second = cli(_args(folder, out, 1) + ["--overwrite"], tmp_path)  # even to overwrite
    text, _ = second.communicate(timeout=300)
    assert second.returncode == 2, text[-3000:]
    errors = [row for row in text.splitlines() if "error:" in row]
    assert len(errors) == 1 and f"locked by process {first.pid}" in errors[0], text[-2000:]
    assert first.poll() is None  # the first run goes on, its files untouched
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    third = cli(_args(folder, out, 1) + ["--overwrite"], tmp_path)
    text, _ = third.communicate(timeout=300)
    assert third.returncode == 0, text[-3000:]
    assert json.loads((out / "config.json").read_text())["phases"][1]["epochs"] == 1


# large_different (one phase, on images), writing a marker (argv[1]) after its first training
# step: the training rows decoded by then, and the number of files. With argv[2] = "hold", every
# decode but those of the first two batches' rows waits until that marker is written, so
# the first step comes while the rest of the cache is still empty, however slow the machine; then
# each takes 0.3 s more.
SLOW_STREAM = textwrap.dedent(
    """
    import json, os, sys, time
    import keras
    from tfxfer.data import filling, images
    from tfxfer.recipes import large_different

    marker, hold, real = sys.argv[1], sys.argv[2] == "hold", images.decode

    def slow(path, size):
        train = splits[0]  # made before its decoding starts
        # --batch-size 4; Keras's train function takes the next batch before its step returns
        first_two = {train.paths[i] for i in train.order[:8]}
        if hold and path not in first_two:
            deadline = time.time() + 240
            while not os.path.exists(marker) and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
        return real(path, size)

    images.decode = slow
    splits = []
    made = filling.FillingSplit.__init__

    def remember(self, *args, **kwargs):
        made(self, *args, **kwargs)
        splits.append(self)

    filling.FillingSplit.__init__ = remember

    class Marker(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                train = splits[0]
                mark = {"ready": int(train.ready.sum()), "files": len(train.paths)}
                with open(marker, "w") as f:
                    json.dump(mark, f)

    fit = keras.Model.fit
    keras.Model.fit = lambda self, *a, callbacks=None, **k: fit(
        self, *a, callbacks=[*(callbacks or []), Marker()], **k
    )
    sys.argv = [sys.argv[0]] + sys.argv[3:]
    raise SystemExit(large_different.main())
    """
)


@pytest.mark.slow
def test_killed_in_its_streamed_first_epoch_a_run_decodes_again_and_completes(folder, tmp_path):
    out, mark = tmp_path / "streamed", tmp_path / "first_step.json"
    args = _args(folder, out, 1)[:-8] + ["--set", "phases.0.epochs=1", "--set", "verbose=2"]
    env = {**ENV, "TFXFER_STREAM_MIN_FILES": "0"}

    def start(marker, pause):
        return subprocess.Popen(
            [sys.executable, "-c", SLOW_STREAM, str(marker), str(pause), *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    proc = start(mark, "hold")  # two batches are decoded, the rest waits for the first step
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not mark.is_file():
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stdout.read()
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = json.loads(mark.read_text())
    assert first["ready"] < first["files"], first  # it trained while the cache was filling
    assert first["ready"] >= 8, first  # on the first batches' rows, decoded
    _no_half_written_files(out)
    assert not (out / "checkpoints" / "phase0.epochs.json").exists()  # no epoch was completed

    resumed = start(tmp_path / "again.json", "go")
    text, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, text[-3000:]
    assert text.count("the first epoch streams") == 1  # the cache was rebuilt, once
    history = json.loads((out / "history.json").read_text())
    assert [len(h["history"]["loss"]) for h in history] == [1]
    assert json.loads((out / "data_report.json").read_text())["counts"]["train"] == {
        "a": 24,
        "b": 24,
    }
    _no_half_written_files(out)
