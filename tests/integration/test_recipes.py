"""Each recipe end to end: on its real dataset from ImageNet weights when the kit is present (as
in CI), else on a tiny synthetic folder from a known weights file; and the digit networks."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import START_FAMILY
from weight_checks import OUTPUT_FILES, assert_expected_changes, layer_states

from tfxfer.models import backbones
from tfxfer.recipes import RECIPES

SIZE = 32


def _one_epoch(config, data, weights, tmp_path, **extra):
    """``config`` for one epoch per phase on ``data`` from a weights file, into tmp_path/out."""
    return config.replace(
        data=str(data),
        weights=weights,
        output=str(tmp_path / "out"),
        batch_size=8,
        feature_views=1,
        train_per_class=None,
        verbose=0,
        **extra,
    ).with_epochs(1)


# With the kit (as in CI): every recipe on its own real dataset from ImageNet weights, at 64 px
# (which weights a recipe trains does not depend on the input size; test_kit's main job trains at
# 224), where every trained variable must move. Without it: a synthetic folder from a known
# random weights file, where frozen variables must still be bit-identical.
ON_KIT = {
    "small_similar": dict(train_per_class=20, val_per_class=20, feature_views=2),
    "small_different": dict(train_per_class=12, val_per_class=10),
    "large_different": dict(train_per_class=12, val_per_class=10),
    "large_similar": dict(train_per_class=12, val_per_class=10, feature_views=1),
}


def _recipe_case(recipe, config, image_folder, start_weights, tmp_path):
    """``(config, initial backbone states, on the kit?)`` for one epoch per phase."""
    import os

    if not os.environ.get("TFXFER_DATA_DIR"):
        path, initial = start_weights
        cfg = _one_epoch(
            config, image_folder, path, tmp_path, image_size=SIZE, backbone=START_FAMILY
        )
        return cfg, initial, False
    cfg = config.replace(
        output=str(tmp_path / "out"), verbose=0, batch_size=8, image_size=64, **ON_KIT[recipe]
    ).with_epochs(1)
    start = backbones.build(cfg.backbone, 64, weights="imagenet")
    return cfg, layer_states(start), True


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_writes_every_output_changes_exactly_its_weights_and_serves_them(
    recipe, image_folder, tmp_path, start_weights, monkeypatch
):
    import importlib

    import keras

    traced = []  # each fit traces its training step once (tfxfer.train.prebuild), not twice
    step = keras.Model.train_step
    monkeypatch.setattr(
        keras.Model, "train_step", lambda self, data: traced.append(1) or step(self, data)
    )

    module = importlib.import_module(f"tfxfer.recipes.{recipe}")
    cfg, initial, on_kit = _recipe_case(
        recipe, module.CONFIG, image_folder, start_weights, tmp_path
    )
    result = module.run(cfg)
    out = Path(cfg.output)
    for name in OUTPUT_FILES:
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text()) == cfg.to_dict()
    metrics = json.loads((out / "metrics.json").read_text())
    per_class = ON_KIT[recipe]["val_per_class"] if on_kit else 6
    assert metrics == result.metrics
    assert metrics["num_val"] == per_class * len(metrics["class_names"])
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["num_val"]
    history = json.loads((out / "history.json").read_text())
    assert [h["phase"] for h in history] == [p.name for p in cfg.phases]
    assert all(len(h["history"]["loss"]) == 1 for h in history)
    assert len(traced) == len(history), (len(traced), len(history))
    # Frozen variables must be bit-identical. From ImageNet weights every trained variable moves;
    # from random ones most do (frozen BN saturates ReLU6, and some layers get zero gradients).
    tally = assert_expected_changes(
        initial, str(out / "model.keras"), cfg, every_trained_changes=on_kit
    )
    assert (tally["identical"] == 0) == (recipe == "large_different")  # train_bn there
    assert (tally["changed"] > 0) == (recipe != "small_similar")
    if recipe == "small_similar":
        assert tally["trainable_unchanged"] == 0
    else:
        assert tally["changed"] > 3 * tally["trainable_unchanged"]
    # The SavedModel serves uint8 pixels, gives the trained Keras model's logits, reproduces the
    # run's validation accuracy, and refuses float input.
    from tfxfer.train.loop import load_data

    size = cfg.image_size
    val = load_data(cfg, size).val  # the run's own validation images
    x = tf.constant(val.images[:8])
    x = tf.image.grayscale_to_rgb(x) if x.shape[-1] == 1 else x  # Fashion-MNIST is grey
    images = tf.cast(tf.round(tf.image.resize(x, (size, size))), tf.uint8).numpy()
    served = tf.saved_model.load(result.paths["saved_model"])
    logits = served.serve_images(tf.constant(images))["logits"].numpy()
    want = result.model.plain_model(images.astype("float32"), training=False).numpy()
    # (float summation order differs between the two graphs: up to 4e-4 seen on random weights)
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-3)
    if val.images.shape[1:] == (size, size, 3):  # folders decode at the model's size
        logits = served.serve_images(tf.constant(val.images))["logits"].numpy()
        accuracy = (logits.argmax(1) == val.labels).mean()
        assert accuracy == pytest.approx(metrics["val_accuracy"], abs=1e-4)
    with pytest.raises((TypeError, ValueError)):
        served.serve_images(tf.constant(images.astype("float32")))
    # TensorBoard, read with its own reader: every phase's epochs, numbered across the run, with
    # the history's loss, the validation accuracy and the rate at the epoch's end; then the
    # final numbers and the confusion matrix, the very image of confusion_matrix.png
    from PIL import Image
    from support import board_events

    events = board_events(out)
    for epoch, h in enumerate(history):
        train, val = events[f"{h['phase']}/train"], events[f"{h['phase']}/validation"]
        assert [step for step, _ in train["epoch_loss"]] == [epoch]
        np.testing.assert_allclose(train["epoch_loss"][0][1], h["history"]["loss"][0], rtol=1e-6)
        np.testing.assert_allclose(
            val["epoch_accuracy"][0][1], h["history"]["val_accuracy"][0], rtol=1e-6
        )
        peak = next(p for p in cfg.phases if p.name == h["phase"]).rates()[0]
        assert 0 <= train["epoch_learning_rate"][0][1] <= peak * (1 + 1e-6)  # cosine ends at 0
    evaluation = events["evaluation"]
    assert evaluation["val_accuracy"] == [(len(history), pytest.approx(metrics["val_accuracy"]))]
    ((_, image),) = evaluation["confusion_matrix"]
    png = np.asarray(Image.open(out / "confusion_matrix.png").convert("RGB"))
    np.testing.assert_array_equal(image, png)


DIGITS = [n for n in backbones.names() if backbones.get(n).from_scratch]


@pytest.mark.parametrize("family", DIGITS)
def test_a_digit_network_trains_from_scratch_through_a_recipe_and_serves_what_it_trained(
    family, image_folder, tmp_path
):
    """small_different (head, then its partial phase) on a digit network: the frozen block(s)
    stay bit-identical, the others move, and the SavedModel serves the Keras model's logits."""
    from tfxfer.data import sources as data
    from tfxfer.recipes import small_different

    spec = backbones.get(family)
    start = backbones.build(family, weights=None)
    path = str(tmp_path / "start.weights.h5")
    start.save_weights(path)
    cfg = _one_epoch(
        small_different.CONFIG,
        image_folder,
        path,
        tmp_path,
        backbone=family,
        image_size=None,  # the network's own size: 28 or 32 px
        head_hidden=(100, 100),  # the DANN paper's label classifier, FC 100-100-classes
    )
    result = small_different.run(cfg)
    tally = assert_expected_changes(layer_states(start), str(tmp_path / "out" / "model.keras"), cfg)
    assert tally["identical"] > 0 and tally["changed"] > 0  # block 1.. frozen, the rest trained
    val = data.load(str(image_folder), spec.default_size).val
    served = tf.saved_model.load(result.paths["saved_model"])
    logits = served.serve_images(tf.constant(val.images))["logits"].numpy()
    want = result.model.plain_model(val.images.astype("float32"), training=False).numpy()
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)
    assert result.metrics["num_val"] == 12
