"""Each recipe end to end on a tiny synthetic folder, starting from a known weights file."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
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


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_writes_every_output_and_changes_exactly_its_weights(
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
    path, initial = start_weights
    cfg = _one_epoch(module.CONFIG, image_folder, path, tmp_path, image_size=SIZE)
    result = module.run(cfg)
    out = Path(cfg.output)
    for name in OUTPUT_FILES:
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text()) == cfg.to_dict()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result.metrics and metrics["num_val"] == 12
    assert np.array(metrics["confusion_matrix"]).sum() == 12
    history = json.loads((out / "history.json").read_text())
    assert [h["phase"] for h in history] == [p.name for p in cfg.phases]
    assert all(len(h["history"]["loss"]) == 1 for h in history)
    assert len(traced) == len(history), (len(traced), len(history))
    # Random start weights: frozen variables must be bit-identical; trained ones mostly move (the
    # kit test, from ImageNet weights, requires every trained variable to move).
    tally = assert_expected_changes(
        initial, str(out / "model.keras"), cfg, every_trained_changes=False
    )
    if recipe == "small_similar":
        assert tally["changed"] == tally["trainable_unchanged"] == 0
    else:
        assert tally["changed"] > 3 * tally["trainable_unchanged"]
        assert (tally["identical"] == 0) == (recipe == "large_different")  # train_bn there


def test_saved_model_serves_uint8_and_reproduces_the_run_accuracy(image_folder, tmp_path):
    from tfxfer.data import sources as data
    from tfxfer.recipes import small_similar

    cfg = small_similar.CONFIG.replace(
        data=str(image_folder),
        backbone="MobileNet025",  # serving is the same for every family; the smallest is fastest
        image_size=SIZE,
        weights=None,
        output=str(tmp_path / "o"),
        verbose=0,
    ).with_epochs(3)
    result = small_similar.run(cfg)
    served = tf.saved_model.load(result.paths["saved_model"])
    val = data.load(str(image_folder), SIZE).val
    logits = served.serve_images(tf.constant(val.images))["logits"].numpy()
    assert (logits.argmax(1) == val.labels).mean() == pytest.approx(
        result.metrics["val_accuracy"], abs=1e-4
    )
    with pytest.raises((TypeError, ValueError)):
        served.serve_images(tf.constant(val.images.astype("float32")))


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
