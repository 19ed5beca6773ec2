"""WiSE-FT (tfxfer.methods.wise_ft): alpha = 0 and alpha = 1 give back the probe and the
fine-tuned model bit for bit, BatchNorm statistics included; in between, every floating
variable is the numpy interpolation; a run reports both ends; bad settings are refused."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from conftest import START_FAMILY

from tfxfer.data.splits import Split
from tfxfer.errors import UserError
from tfxfer.methods import tasks as tasks_lib
from tfxfer.methods import wise_ft
from tfxfer.recipes import small_different, small_similar
from tfxfer.train import loop


def _bn_model(seed: int):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4), keras.layers.BatchNormalization()]
    )
    model(np.random.default_rng(seed).normal(size=(8, 6)).astype("float32"), training=True)
    return model


def test_the_ends_come_back_bit_for_bit_and_the_middle_is_the_numpy_interpolation():
    probe_model, tuned_model = _bn_model(0), _bn_model(1)
    probe, tuned = wise_ft.snapshot(probe_model), wise_ft.snapshot(tuned_model)
    names = [v.path for v in tuned_model.weights]
    assert any("moving_mean" in n for n in names) and any("moving_variance" in n for n in names)
    for alpha, want in ((0.0, probe), (1.0, tuned)):
        model = _bn_model(1)  # the fine-tuned end, as the training core holds it
        wise_ft.apply(model, probe, alpha)
        for variable, expected in zip(model.weights, want):
            np.testing.assert_array_equal(variable.numpy(), expected, err_msg=variable.path)
    model = _bn_model(1)
    wise_ft.apply(model, probe, 0.3)
    for variable, a, b in zip(model.weights, probe, tuned):
        np.testing.assert_allclose(variable.numpy(), 0.7 * a + 0.3 * b, rtol=1e-6, atol=1e-7)


def _cfg(folder, tmp_path, start_weights, alpha, name):
    return small_different.CONFIG.replace(
        data=str(folder),
        weights=start_weights[0],
        backbone=START_FAMILY,
        image_size=32,
        batch_size=8,
        train_per_class=None,
        feature_views=1,
        train_bn=True,  # the statistics differ between the ends: their interpolation is tested
        verbose=0,
        output=str(tmp_path / name),
        wise_ft=alpha,
    ).with_epochs(1)


@pytest.mark.integration
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_run_ships_the_probe_or_the_fine_tuned_model_at_the_ends(
    alpha, image_folder, tmp_path, start_weights
):
    """The shipped model.keras against the phase checkpoints the run wrote: the head-only
    phase's (alpha 0) or the fine-tuning phase's (alpha 1), every variable, BatchNorm's moving
    statistics included; the accuracy reported for that end is the run's."""
    cfg = _cfg(image_folder, tmp_path, start_weights, alpha, "run")
    result = small_different.run(cfg)
    end = (
        tmp_path
        / "run"
        / "checkpoints"
        / ("phase0.weights.h5" if alpha == 0 else "phase1.weights.h5")
    )
    reference = keras.saving.load_model(str(tmp_path / "run" / "model.keras"), safe_mode=True)
    shipped = [v.numpy() for v in reference.weights]
    reference.load_weights(str(end))
    statistics = 0
    for got, variable in zip(shipped, reference.weights):
        np.testing.assert_array_equal(got, variable.numpy(), err_msg=variable.path)
        statistics += "moving_" in variable.path
    assert statistics > 20
    report = result.metrics["wise_ft"]
    assert report["alpha"] == alpha and report["probe_phase"] == "head"
    key = "val_accuracy_probe" if alpha == 0 else "val_accuracy_fine_tuned"
    assert report[key] == result.metrics["val_accuracy"]


@pytest.mark.parametrize(
    "recipe, changes, words",
    [
        (small_different, ["wise_ft=1.5"], "wise_ft must be in [0, 1]"),
        (small_similar, ["wise_ft=0.5"], "wise_ft interpolates between"),  # head phases only
        (small_different, ["wise_ft=0.5", "phases.0.trainable=all"], "wise_ft interpolates"),
        (small_different, ["wise_ft=best"], 'wise_ft must be a number in [0, 1] or "auto"'),
        (small_different, ["wise_ft=auto", "wise_ft_holdout=0.9"], "wise_ft_holdout must be"),
        (
            small_different,
            ["wise_ft=auto", 'tasks=[{"name": "t", "groups": {"x": ["a"]}}]'],
            "wise_ft=auto chooses alpha by one head",
        ),
    ],
)
def test_wise_ft_without_its_two_ends_is_refused_in_one_line(recipe, changes, words):
    import re

    with pytest.raises(UserError, match="^" + re.escape(words)):
        recipe.CONFIG.override(changes)


def test_the_held_out_rows_are_a_per_class_share_disjoint_from_training_and_seeded():
    labels = np.repeat([0, 1, 2], [20, 7, 2])
    kept, held = wise_ft.hold_out(labels, 0.1, seed=4)
    assert np.intersect1d(kept, held).size == 0
    np.testing.assert_array_equal(np.union1d(kept, held), np.arange(len(labels)))
    assert np.bincount(labels[held]).tolist() == [2, 1, 1]  # round(0.1 n), at least 1
    np.testing.assert_array_equal(wise_ft.hold_out(labels, 0.1, seed=4)[1], held)
    assert not np.array_equal(wise_ft.hold_out(labels, 0.1, seed=5)[1], held)
    with pytest.raises(UserError, match="^wise_ft=auto holds out training images of every"):
        wise_ft.hold_out(np.array([0, 0, 1]), 0.1, seed=0)


@pytest.mark.integration
def test_auto_chooses_alpha_on_held_out_training_images_never_on_the_validation_split(
    image_folder, tmp_path, start_weights
):
    """The chosen alpha is the best of the grid on the held-out training images, which train
    nothing; the shipped weights are the numpy interpolation of the two phase checkpoints at
    that alpha; and chosen again from the run's two ends with every validation label swapped,
    the held-out scores and alpha do not move (the validation split chooses nothing; compared
    on the same trained ends, as two trainings need not be bit-identical)."""
    result = small_different.run(_cfg(image_folder, tmp_path, start_weights, "auto", "run"))
    report = result.metrics["wise_ft"]
    scores = {float(a): s for a, s in report["holdout"].items()}
    assert sorted(scores) == list(wise_ft.GRID)
    assert report["alpha"] == wise_ft.choose({a: tuple(s) for a, s in scores.items()})
    assert scores[report["alpha"]][0] == max(s[0] for s in scores.values())
    assert len(result.data.train) == 22 and "2 training images" in report["chosen_on"]
    reference = keras.saving.load_model(str(tmp_path / "run" / "model.keras"), safe_mode=True)
    shipped = [v.numpy() for v in reference.weights]
    ends = []
    for phase in ("phase0", "phase1"):
        reference.load_weights(str(tmp_path / "run" / "checkpoints" / f"{phase}.weights.h5"))
        ends.append([v.numpy() for v in reference.weights])
    a = report["alpha"]
    for got, p, f, v in zip(shipped, *ends, reference.weights):
        if np.issubdtype(got.dtype, np.floating):
            np.testing.assert_allclose(
                got, (1 - a) * p + a * f, rtol=1e-5, atol=1e-6, err_msg=v.path
            )
    # the choice again, from the run's two ends, with the validation labels as read and swapped
    # (two classes: every validation label wrong); held-out scores and alpha must not move
    cfg = _cfg(image_folder, tmp_path, start_weights, "auto", "run")
    tm, checkpoints = result.model, tmp_path / "run" / "checkpoints"
    tm.model.load_weights(str(checkpoints / "phase0.weights.h5"))
    probe = wise_ft.snapshot(tm.model)
    _, held = wise_ft.split_data(loop.load_data(cfg, 32), cfg.wise_ft_holdout, cfg.seed)
    specs = tasks_lib.resolve((), result.data.class_names)
    val = result.data.val
    swapped = dataclasses.replace(result.data, val=Split(val.images, 1 - val.labels))
    found = {}
    for name, data in (("as read", result.data), ("swapped", swapped)):
        tm.model.load_weights(str(checkpoints / "phase1.weights.h5"))  # the fine-tuned end
        found[name] = loop._interpolate(tm, cfg, data, specs, 32, probe, held)
        assert found[name]["holdout"] == report["holdout"], name
        assert found[name]["alpha"] == report["alpha"], name
    tuned = [found[n]["val_accuracy_fine_tuned"] for n in ("as read", "swapped")]
    assert tuned[1] == pytest.approx(1 - tuned[0])  # the swap did reach the validation split
