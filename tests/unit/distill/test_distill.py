"""Distillation (tfxfer.distill, the distill recipe): the loss against numpy, the teacher
frozen and in inference mode, the student's split equal to the teacher's (its validation images
never train the student), the shipped model the student's, and bad input in one line."""

from __future__ import annotations

import hashlib
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import START_FAMILY, write_class_images
from PIL import Image
from support import board_events

from tfxfer.data import unlabelled
from tfxfer.distill import step
from tfxfer.distill import teacher as teacher_lib
from tfxfer.distill import train as distill_train
from tfxfer.models import model as model_lib
from tfxfer.recipes import distill, small_similar
from tfxfer.train.loop import load_data


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_the_soft_loss_is_t_squared_times_the_mean_kl_divergence(temperature):
    rng = np.random.default_rng(0)
    t, s = rng.normal(0, 3, (16, 5)), rng.normal(0, 3, (16, 5))
    lp_t, lp_s = _log_softmax(t / temperature), _log_softmax(s / temperature)
    kl = (np.exp(lp_t) * (lp_t - lp_s)).sum(-1)
    got = float(step.soft_loss(t, s, temperature))
    np.testing.assert_allclose(got, temperature**2 * kl.mean(), rtol=1e-5)
    assert float(step.soft_loss(t, t, temperature)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("batch_size", [28, 32])
def test_a_step_mixes_the_labels_and_the_teachers_soft_targets_and_leaves_the_teacher_as_it_was(
    batch_size,
):
    """One step's reported losses and its update against a separate computation: the teacher
    (DTN: BatchNorm and dropout) at its own 32 px in inference mode, the student (DannMnist at
    28 px, no dropout: deterministic in training mode), the batch at either's size (each model
    gets it resized to its own); the last two images have no label."""
    keras.utils.set_random_seed(0)
    student = model_lib.build("DannMnist", 3, 28, None, "none", dropout=0.0, seed=0)
    teacher = model_lib.build("DTN", 3, 32, None, "none", dropout=0.5, seed=1).model
    teacher.trainable = False
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (8, batch_size, batch_size, 3)).astype("float32")
    y = np.zeros((8, 3), "float32")
    y[np.arange(6), rng.integers(0, 3, 6)] = 1.0  # rows 6 and 7: no label
    temperature, alpha, lr = 3.0, 0.3, 0.1
    trainer = step.Distiller(student, teacher, temperature, alpha)
    trainer.compile(optimizer=keras.optimizers.SGD(lr))
    teacher_before = [v.numpy().copy() for v in teacher.weights]
    kernel = student.head.get_layer("logits").kernel
    w0 = kernel.numpy().copy()
    xt = x if batch_size == 32 else tf.image.resize(x, (32, 32))
    xs = x if batch_size == 28 else tf.image.resize(x, (28, 28), antialias=True)
    t = teacher(xt, training=False).numpy()
    with tf.GradientTape() as tape:  # the same loss, written apart from the step
        s = student.plain_model(xs, training=True)
        lp_s = tf.nn.log_softmax(s)
        hard = -tf.reduce_sum(y[:6] * lp_s[:6]) / 6.0
        p_t = tf.nn.softmax(t / temperature)
        kl = tf.reduce_sum(p_t * (tf.math.log(p_t) - tf.nn.log_softmax(s / temperature)), -1)
        expected = alpha * hard + (1 - alpha) * temperature**2 * tf.reduce_mean(kl)
    grad = tape.gradient(expected, kernel).numpy()
    logs = trainer.train_on_batch(x, y, return_dict=True)
    s0 = s.numpy()
    np.testing.assert_allclose(logs["label_loss"], -(y[:6] * _log_softmax(s0)[:6]).sum() / 6, 1e-5)
    np.testing.assert_allclose(logs["loss"], float(expected), rtol=1e-5)
    np.testing.assert_allclose(kernel.numpy(), w0 - lr * grad, rtol=1e-4, atol=1e-6)
    for before, v in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(before, v.numpy(), err_msg=v.path)  # BN statistics too
    assert not teacher.trainable_variables


# ---- runs: a teacher trained once, and its students ---------------------------------------


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, start_weights):
    """A small_similar run at 40 px on a folder without a split (split by seed 3, val_split
    0.3); its students run at 32 px."""
    root = tmp_path_factory.mktemp("distill")
    data = write_class_images(root / "flat", {"a": 10, "b": 10, "c": 10}, size=24)
    write_class_images(root / "extra" / "pool", {"x": 7}, size=24, seed=5)
    cfg = small_similar.CONFIG.replace(
        data=str(data),
        weights=start_weights[0],
        backbone=START_FAMILY,
        image_size=40,
        batch_size=8,
        feature_views=1,
        seed=3,
        val_split=0.3,
        verbose=0,
        output=str(root / "teacher"),
    ).with_epochs(2)
    small_similar.run(cfg)
    return root, cfg


def _student(root, start_weights, name, **section):
    return distill.CONFIG.replace(
        weights=start_weights[0],
        image_size=32,
        batch_size=8,
        verbose=0,
        output=str(root / name),
        distill={"teacher": str(root / "teacher"), **section},
    ).with_epochs(1)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.integration
def test_a_distilled_student_keeps_the_teachers_split_and_ships_itself(
    teacher_run, start_weights, caplog
):
    root, teacher_cfg = teacher_run
    before = _digest(root / "teacher" / "model.keras")
    cfg = _student(root, start_weights, "student", unlabelled=str(root / "extra" / "pool" / "x"))
    with caplog.at_level("INFO", logger="tfxfer"):
        result = distill.run(cfg)
    assert "training images decoded at 40 px, the teacher's input" in caplog.text
    saved = json.loads((root / "student" / "config.json").read_text())
    for key in teacher_lib.SPLIT_KEYS:  # split as the teacher split it
        assert saved[key] == getattr(teacher_cfg, key), key
    # sentinel: the teacher's validation images are the student's, and never in its training
    theirs, ours = load_data(teacher_cfg, 32), load_data(type(cfg).from_dict(saved), 32)
    np.testing.assert_array_equal(theirs.val.images, ours.val.images)
    pool, extra = distill_train.training_pool(type(cfg).from_dict(saved), ours, 32)
    assert extra == 7 and len(pool) == len(ours.train) + 7
    assert (pool.labels[-7:] == -1).all() and (pool.labels[:-7] >= 0).all()
    trained = {row.tobytes() for row in pool.images}
    assert not any(row.tobytes() in trained for row in ours.val.images)
    report = result.metrics["distill"]
    teacher_metrics = json.loads((root / "teacher" / "metrics.json").read_text())
    assert report["teacher_val_accuracy"] == teacher_metrics["val_accuracy"]
    assert report["unlabelled_images"] == 7 and report["alpha"] == 0.1
    assert [h["phase"] for h in result.history] == ["head", "all"]
    for h in result.history:
        assert {"soft_loss", "label_loss", "val_accuracy"} <= set(h["history"])
    events = board_events(root / "student")
    assert [s for s, _ in events["all/train"]["epoch_soft_loss"]] == [1]
    # what ships is the student, and the SavedModel serves what model.keras computes
    shipped = keras.saving.load_model(str(root / "student" / "model.keras"), safe_mode=True)
    assert shipped.count_params() == result.model.model.count_params()
    assert shipped.get_layer("backbone").name == "backbone"
    served = tf.saved_model.load(str(root / "student" / "saved_model"))
    images = ours.val.images
    probs = served.serve_images(tf.constant(images))["probabilities"].numpy()
    logits = shipped.predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(probs, tf.nn.softmax(logits).numpy(), atol=1e-5)
    assert _digest(root / "teacher" / "model.keras") == before  # the teacher is only read


@pytest.mark.integration
def test_alpha_one_learns_from_the_labels_alone_without_loading_the_teacher(
    teacher_run, start_weights, monkeypatch
):
    root, _ = teacher_run

    def refuse(self):
        raise AssertionError("the teacher was loaded")

    monkeypatch.setattr(teacher_lib.Teacher, "load_model", refuse)
    result = distill.run(_student(root, start_weights, "labels", alpha=1.0))
    for h in result.history:
        assert "soft_loss" not in h["history"] and "label_loss" in h["history"]
    assert result.metrics["distill"]["alpha"] == 1.0


def test_unlabelled_images_of_a_labelled_source_are_its_training_split_without_labels(
    image_folder,
):
    images, skipped = unlabelled.images(str(image_folder), 24, role="--unlabelled")
    assert images.shape == (24, 24, 24, 3) and not skipped  # train/ only: 12 + 12


@pytest.mark.parametrize(
    "argv, words",
    [
        ([], "distill needs a teacher"),
        (["--teacher", "{missing}"], "--teacher must be the directory of a finished run"),
        (["--teacher", "{teacher}", "--alpha", "2"], "distill.alpha must be in [0, 1]"),
        (["--teacher", "{teacher}", "--temperature", "0"], "distill.temperature must be above 0"),
        (["--teacher", "{teacher}", "--seed", "5"], "seed: yours 5, the teacher's 3"),
        (["--teacher", "{teacher}", "--data", "{other}"], "split as the teacher split it"),
        (["--teacher", "{teacher}", "--data", "hymenoptera"], "data: yours 'hymenoptera'"),
        (["--teacher", "{text}"], "the teacher must be an image classifier"),
        (["--teacher", "{relabelled}"], "the data's classes must be the teacher's"),
        (["--teacher", "{teacher}", "--unlabelled", "{mixed}"], "either images (unlabelled)"),
        (["--teacher", "{teacher}", "--set", "mixup=0.2"], "distillation trains one head"),
        (["--teacher", "{teacher}", "--set", "wise_ft=0.5"], "without tasks, MixUp"),
        (["--teacher", "{teacher}", "--set", "phases.all.lr=auto"], "no lr=auto"),
        (
            ["--teacher", "{teacher}", "--set", "adapt.target=mnist_m"],
            "adapt.* settings belong to the domain_adapt recipe; the distill recipe would ignore",
        ),
    ],
)
def test_bad_distillation_input_fails_in_one_line(teacher_run, tmp_path, capsys, argv, words):
    root, _ = teacher_run
    text = shutil.copytree(root / "teacher", tmp_path / "text", ignore=_only_json)
    (text / "model.keras").write_bytes(b"")
    config = json.loads((text / "config.json").read_text())
    (text / "config.json").write_text(json.dumps({**config, "recipe": "text_classify"}))
    relabelled = shutil.copytree(root / "teacher", tmp_path / "relabelled", ignore=_only_json)
    shutil.copy(root / "teacher" / "model.keras", relabelled)
    metrics = json.loads((relabelled / "metrics.json").read_text())
    metrics["class_names"] = metrics["class_names"][::-1]
    (relabelled / "metrics.json").write_text(json.dumps(metrics))
    mixed = write_class_images(tmp_path / "mixed" / "val", {"a": 2}, size=20).parent
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(mixed / "stray.png")
    paths = {
        "teacher": root / "teacher",
        "missing": tmp_path / "nothing",
        "other": root / "extra",
        "text": text,
        "relabelled": relabelled,
        "mixed": mixed,
    }
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    common = ["--image-size", "32", "--batch-size", "8", "--epochs", "1", "--weights", "none"]
    status = distill.main(common + ["--output", str(tmp_path / "o")] + argv)
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and words in err, err


def _only_json(folder, names):
    return [n for n in names if not n.endswith(".json")]
