"""Issue 15: the auto recipe's signals and decision, the learning-rate finder, and the BatchNorm
momentum rule, each against an independent computation; the CLI paths end to end on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import START_FAMILY, write_class_images
from support import assert_one_line_error

from tfxfer.auto import bn_distance
from tfxfer.auto import plan as planning
from tfxfer.auto import train as auto
from tfxfer.config import Augment, Auto, Config, Phase
from tfxfer.errors import UserError
from tfxfer.models import freeze
from tfxfer.recipes import auto as auto_recipe
from tfxfer.train import lr_find


def _conv_bn(mean: float, var: float, channels: int = 3) -> keras.Model:
    """Input -> identity -> BatchNorm whose moving statistics are ``mean``, ``var``."""
    x = keras.Input((4, 4, channels))
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    model = keras.Model(x, bn(keras.layers.Activation("linear")(x)))
    bn.moving_mean.assign(np.full(channels, mean, np.float32))
    bn.moving_variance.assign(np.full(channels, var, np.float32))
    return model


def test_bn_distance_is_the_gaussian_kl_of_the_measured_moments_to_the_moving_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(1.5, 2.0, (40, 4, 4, 3)).astype(np.float32)
    probe = bn_distance.StatsProbe(_conv_bn(mean=0.5, var=3.0))
    probe.update(x[:32])
    probe.update(np.concatenate([x[32:], np.full((24, 4, 4, 3), 99.0, np.float32)]), count=8)
    m, v = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # the padding rows must not count
    want = np.mean(
        0.5 * ((v + 1e-3) / 3.001 + (m - 0.5) ** 2 / 3.001 - 1 - np.log((v + 1e-3) / 3.001))
    )
    assert probe.distance() == pytest.approx(want, rel=1e-5)
    # the KL itself against numerical integration of p log(p/q)
    t = np.linspace(-30, 30, 200001)
    p = np.exp(-((t - 1.0) ** 2) / (2 * 2.0)) / np.sqrt(2 * np.pi * 2.0)
    q = np.exp(-((t + 0.5) ** 2) / (2 * 0.7)) / np.sqrt(2 * np.pi * 0.7)
    assert bn_distance.gaussian_kl(1.0, 2.0, -0.5, 0.7) == pytest.approx(
        getattr(np, "trapezoid", getattr(np, "trapz", None))(p * np.log(p / q), t), rel=1e-6
    )


def test_bn_distance_is_zero_on_the_statistics_bn_holds_and_grows_with_the_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (64, 4, 4, 3)).astype(np.float32)
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))  # exactly mean 0, variance 1
    distances = []
    for shift in (0.0, 0.5, 1.0, 2.0):
        probe = bn_distance.StatsProbe(_conv_bn(mean=0.0, var=1.0 - 1e-3))
        probe.update(x + shift)
        distances.append(probe.distance())
    assert distances[0] == pytest.approx(0.0, abs=1e-6)
    assert distances[2] == pytest.approx(0.5, rel=1e-4)  # one standard deviation: 1/2
    assert all(a < b for a, b in zip(distances, distances[1:]))


def test_a_backbone_without_batchnorm_has_no_distance():
    x = keras.Input((8, 8, 3))
    net = keras.Model(x, keras.layers.LayerNormalization()(keras.layers.Conv2D(4, 3)(x)))
    probe = bn_distance.StatsProbe(net)
    probe.update(np.ones((2, 8, 8, 3), np.float32))
    assert probe.distance() is None


def _signals(per_class, distance, logme=0.0):
    return planning.Signals(
        per_class=per_class,
        min_per_class=int(per_class),
        max_per_class=int(per_class),
        num_classes=3,
        logme=logme,
        distance=distance,
        probe_images=30,
        image_size=32,
        seconds=1.0,
    )


@pytest.mark.parametrize(
    "per_class, distance, recipe",
    [
        (100, 0.1, "small_similar"),
        (100, 2.0, "small_different"),
        (600, 0.1, "large_similar"),
        (600, 2.0, "large_different"),
        (500, 0.5, "large_similar"),  # a value on a threshold: large, similar
    ],
)
def test_decide_follows_the_documented_table(per_class, distance, recipe):
    rules = Auto(large_per_class=500, similar_distance=0.5)
    chosen, reasons = planning.decide(_signals(per_class, distance), rules, "MobileNetV2")
    assert chosen == recipe
    assert f" {per_class:g} training images" in reasons[0] and reasons[0].endswith(
        f" 500 -> {'small' if per_class < 500 else 'large'}"
    )
    assert f" {distance:.3f} " in reasons[1] and " 0.5 -> " in reasons[1]


def test_without_batchnorm_similarity_comes_from_logme():
    rules = Auto(large_per_class=500, similar_logme=-0.2)
    similar = planning.decide(_signals(100, None, logme=-0.1), rules, "ConvNeXtTiny")[0]
    assert similar == "small_similar"
    chosen, reasons = planning.decide(_signals(100, None, logme=-0.3), rules, "ConvNeXtTiny")
    assert chosen == "small_different" and "no BatchNorm" in reasons[1]


def test_probe_indices_are_stratified_capped_and_seeded():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 30)
    idx = planning.probe_indices(labels, 30, seed=3)
    assert np.bincount(labels[idx]).tolist() == [10, 5, 10]  # class 1 holds only 5
    assert len(set(idx)) == len(idx)
    assert np.array_equal(idx, planning.probe_indices(labels, 30, seed=3))
    assert not np.array_equal(idx, planning.probe_indices(labels, 30, seed=4))


def test_chosen_config_is_the_recipes_own_with_the_users_data_and_changes():
    user = Config(
        recipe="auto",
        data="/d",
        output="/o",
        image_size=64,
        augment="strong",
        train_per_class=None,
        auto=Auto(epochs=2, lr_find=True),
    )
    ratio_only = planning.chosen_config(
        Config(recipe="auto", augment={"synthetic_ratio": 1}),
        auto_recipe.CANDIDATES["small_different"].replace(augment="none"),
    )
    assert ratio_only.augment == Augment("none", 1.0)  # the recipe's preset, the user's ratio
    base = auto_recipe.CANDIDATES["small_different"]  # its own default is 100 per class
    chosen = planning.chosen_config(user, base)
    assert (chosen.recipe, chosen.data, chosen.output, chosen.image_size) == (
        "small_different",
        "/d",
        "/o",
        64,
    )
    assert chosen.train_per_class is None and chosen.augment.preset == "strong"
    assert [p.trainable for p in chosen.phases] == [p.trainable for p in base.phases]
    assert {p.epochs for p in chosen.phases} == {2} and {p.lr for p in chosen.phases} == {"auto"}
    assert chosen.batch_size == base.batch_size  # not changed by the user: the recipe's


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(weights=None), "weights must be pretrained"),
        (dict(phases=(Phase(epochs=3),)), "auto.epochs"),
        (dict(adapt={"target": "mnist_m"}), "domain_adapt"),
        (dict(strategy="multiworker"), "--dry-run, then run the chosen recipe"),
    ],
)
def test_auto_refuses_what_it_cannot_plan(change, words):
    cfg = Config.from_dict(change, base=auto_recipe.CONFIG)
    with pytest.raises(UserError, match=words):
        planning.check(cfg)


def test_lr_pick_is_a_tenth_of_the_lag_free_minimum_and_ignores_a_diverged_tail():
    lrs = np.geomspace(1e-7, 1.0, 200)
    x = np.log10(lrs)
    rng = np.random.default_rng(0)
    losses = (x + 2.0) ** 2 + 1.0 + rng.normal(0, 0.05, 200)  # lowest at lr 1e-2
    losses[180:] = np.inf
    rate, index = lr_find.pick(lrs, losses)
    assert abs(np.log10(lrs[index]) - (-2.0)) < 0.15
    assert rate == pytest.approx(lrs[index] / 10)
    # the causal average would put the minimum far to the right: the lag the rule avoids
    assert np.argmin(lr_find.smooth(losses[:180])) - index > 20


def test_sweep_ramps_the_rate_stops_on_divergence_and_restores_every_weight(monkeypatch):
    monkeypatch.setattr(lr_find, "LR_MAX", 1e3)  # SGD at rates of hundreds: sure to diverge
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6)).astype(np.float32)
    y = keras.utils.to_categorical((x[:, 0] > 0).astype(int), 2)
    inputs = keras.Input((6,))
    h = keras.layers.BatchNormalization()(keras.layers.Dense(8)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model(x[:4])
    before = [w.copy() for w in model.get_weights()]
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    rec = lr_find.sweep(
        model,
        ds,
        lambda ramp: keras.optimizers.SGD(ramp),
        {"loss": keras.losses.CategoricalCrossentropy(from_logits=True)},
        150,
    )
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    lrs = np.asarray(rec["lrs"])
    assert lrs[0] == pytest.approx(lr_find.LR_MIN) and np.allclose(
        np.diff(np.log(lrs)), np.log(lr_find.LR_MAX / lr_find.LR_MIN) / 149, rtol=1e-4
    )
    assert rec["steps"] < 150  # stopped once the loss diverged
    assert 1e-5 < rec["lr"] < 1.0


def test_lr_find_records_each_batch_own_loss_including_a_remainder_batch():
    """10 samples in batches of 4: 4, 4, then a remainder of 2, repeated. With a zero rate the
    weights never move, so each batch's loss is known in numpy: Keras's running mean is
    weighted by batch size, and the recorder must undo exactly that."""
    import tensorflow as tf

    x = np.arange(1, 11, dtype=np.float32)[:, None]
    y = np.zeros((10, 1), np.float32)
    model = keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    rec = lr_find.sweep(model, ds, lambda ramp: keras.optimizers.SGD(0.0), {"loss": "mse"}, steps=6)
    by_hand = [float(np.mean(x[i : i + 4] ** 2)) for i in (0, 4, 8)]  # 7.5, 42.5, 90.5
    np.testing.assert_allclose(rec["losses"], by_hand * 2, rtol=1e-6)


def test_bn_momentum_fades_the_old_statistics_to_one_percent_and_leaves_frozen_layers_alone():
    from tfxfer.models import backbones

    net = backbones.build("MobileNet025", 32, weights=None)
    bns = bn_distance.bn_layers(net)
    original = bns[0].momentum
    freeze.unfreeze_from(net, "MobileNet025", 3, train_bn=True)
    m = freeze.fit_bn_momentum(net, 200)
    assert m == pytest.approx(0.01 ** (1 / 200)) and m**200 == pytest.approx(0.01)
    assert {b.momentum for b in bns if b.trainable} == {m}
    assert {b.momentum for b in bns if not b.trainable} == {original}
    freeze.freeze_all(net)
    assert freeze.fit_bn_momentum(net, 200) is None
    assert {b.momentum for b in bns} == {original}
    # what the rule buys: 200 training-mode batches move the moving mean to the data's
    bn = keras.layers.BatchNormalization(momentum=0.999)
    bn.build((None, 3))
    bn.momentum = min(0.999, 0.01 ** (1 / 200))
    data = np.random.default_rng(0).normal(5.0, 1.0, (200, 64, 3)).astype(np.float32)
    for batch in data:
        bn(batch, training=True)
    assert np.allclose(bn.moving_mean.numpy(), 5.0 * 0.99, atol=0.05)


@pytest.fixture
def two_class_folder(tmp_path):
    write_class_images(tmp_path / "data", {"a": 10, "b": 10}, size=32)
    return tmp_path / "data"


def _cfg(folder, out, weights, **auto_keys):
    return auto_recipe.CONFIG.replace(
        data=str(folder),
        output=str(out),
        weights=weights,
        backbone=START_FAMILY,
        image_size=32,
        verbose=0,
        auto=Auto(**{"epochs": 1, "probe_images": 12, **auto_keys}),
    )


@pytest.mark.integration
def test_dry_run_plans_from_measured_signals_and_trains_nothing(
    two_class_folder, tmp_path, start_weights
):
    the_plan = auto_recipe.plan(_cfg(two_class_folder, tmp_path / "out", start_weights[0]))
    s = the_plan.signals
    assert (s.per_class, s.num_classes, s.probe_images, s.image_size) == (8, 2, 12, 32)
    assert s.distance is not None and s.distance >= 0 and np.isfinite(s.logme)
    assert the_plan.recipe == planning.decide(s, Auto(), START_FAMILY)[0]
    written = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert written["recipe"] == the_plan.recipe and written["config"]["recipe"] == the_plan.recipe
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plan.json"]
    # a directory that holds a run keeps its own plan.json
    (tmp_path / "out" / "config.json").write_text("{}")
    (tmp_path / "out" / "plan.json").write_text("theirs")
    again = auto_recipe.plan(_cfg(two_class_folder, tmp_path / "out", start_weights[0]))
    assert (tmp_path / "out" / "plan.json").read_text() == "theirs"
    assert "plan.json not written" in again.summary()


def _random_weights_file(tmp_path):
    from tfxfer.models import backbones

    path = tmp_path / "mobilenet025.weights.h5"  # a weights file: auto needs "pretrained"
    backbones.build("MobileNet025", 32, weights=None).save_weights(path)
    return str(path)


@pytest.mark.integration
def test_auto_runs_the_chosen_recipe_with_found_rates_through_the_cli(two_class_folder, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "tfxfer.recipes.auto",
        "--data",
        str(two_class_folder),
        "--output",
        str(out),
        "--weights",
        _random_weights_file(tmp_path),
        "--image-size",
        "32",
        "--backbone",
        "MobileNet025",
        "--set",
        "auto.epochs=1",
        "--set",
        "auto.probe_images=12",
        "--set",
        "auto.similar_distance=100",
        "--set",
        "verbose=0",
        "--set",
        "lr_find_steps=10",
        "--set",
        "auto.lr_find=true",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["recipe"] == "small_similar" and "<= 100" in plan["reasons"][1]
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert config["recipe"] == "small_similar" and metrics["auto"]["recipe"] == "small_similar"
    assert config["phases"][0]["epochs"] == 1 and config["phases"][0]["lr"] == "auto"
    history = json.loads((out / "history.json").read_text())
    assert len(history) == len(config["phases"]) == 1
    assert all(isinstance(h["lr_found"], float) for h in history)  # every phase found its rate
    assert (out / "lr_find.png").stat().st_size > 0 and (out / "saved_model").is_dir()
    assert "auto chose small_similar" in proc.stdout


@pytest.mark.integration
def test_compare_runs_every_candidate_and_keeps_the_best(two_class_folder, tmp_path):
    from tfxfer.train import loop

    cfg = _cfg(
        two_class_folder, tmp_path / "out", _random_weights_file(tmp_path), compare_epochs=1
    ).replace(backbone="MobileNet025")
    base = auto_recipe.CANDIDATES["small_similar"]
    candidates = {
        "dead": base.replace(recipe="dead", phases=(Phase(lr=0.0),)),
        "small_similar": base,
    }  # a rate of 0 leaves the head at its random init
    data = loop.load_data(cfg, 32)
    first = planning.plan(cfg, data, 32, {**candidates, **auto_recipe.CANDIDATES})
    chosen = auto.compare(first, cfg, data, candidates)
    assert sorted(chosen.compare) == ["dead", "small_similar"]
    assert chosen.compare[chosen.recipe] == max(chosen.compare.values())
    assert chosen.compare["small_similar"] >= chosen.compare["dead"]
    assert chosen.config.recipe == chosen.recipe and "compare" in chosen.reasons[2]
    for name in candidates:  # each ran into its own folder; only its score is kept
        assert (tmp_path / "out" / "compare" / name / "config.json").exists()
        assert not (tmp_path / "out" / "compare" / name / "checkpoints").exists()
    # a tie goes to the signals' choice: with two equal candidates, the plan's recipe is kept
    first.recipe = "small_similar"
    tied = auto.compare(
        first,
        cfg.replace(output=str(tmp_path / "tie")),
        data,
        {"small_similar": base, "twin": base.replace(recipe="twin")},
    )
    if tied.compare["twin"] == tied.compare["small_similar"]:
        assert tied.recipe == "small_similar"


@pytest.mark.integration
def test_lr_find_command_sweeps_one_phase_and_says_how_to_use_it(
    two_class_folder, tmp_path, start_weights
):
    out = tmp_path / "out"
    base = [
        "tfxfer",
        "lr-find",
        "small_similar",
        "--data",
        str(two_class_folder),
        "--output",
        str(out),
        "--weights",
        start_weights[0],
        "--backbone",
        START_FAMILY,
        "--image-size",
        "32",
        "--set",
        "verbose=0",
        "--set",
        "lr_find_steps=30",
    ]
    code = "import sys; from tfxfer.cli import entry; sys.exit(entry(sys.argv[2:]))"
    proc = subprocess.run([sys.executable, "-c", code, *base], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--set phases.0.lr=" in proc.stdout
    assert (out / "lr_find" / "lr_find.png").stat().st_size > 0
    assert not (out / "lr_find" / "saved_model").exists()  # nothing trained after the sweep
    bad = subprocess.run(
        [sys.executable, "-c", code, *base, "--phase", "4"], capture_output=True, text=True
    )
    assert_one_line_error(
        bad,
        "'--phase' must name an existing entry by index (from 0) or name",
        "0 or head",
        "got '4'",
    )


@pytest.mark.integration
def test_find_only_stops_at_the_named_phase_after_an_earlier_auto_phase(
    two_class_folder, tmp_path, start_weights
):
    from tfxfer.train import loop

    cfg = Config(
        data=str(two_class_folder),
        output=str(tmp_path / "out"),
        image_size=32,
        backbone=START_FAMILY,
        weights=start_weights[0],
        verbose=0,
        lr_find_steps=12,
        feature_views=1,
        phases=(Phase(name="a", lr="auto", epochs=1), Phase(name="b", lr="auto")),
    )
    result = loop.run(cfg, find_only=1)
    assert result.metrics["lr_find_phase"] == 1
    assert [h["phase"] for h in result.history] == ["a"]  # phase a trained with its own sweep
    assert isinstance(result.history[0]["lr_found"], float)
    saved = lr_find.load(tmp_path / "out" / "checkpoints")
    assert sorted(saved) == [0, 1] and result.metrics["lr_find"] == saved[1]
    from tfxfer.train import rundir

    rundir.release(result.output)


def test_domain_adapt_refuses_lr_auto_in_one_line():
    from tfxfer.adapt import train as adapt
    from tfxfer.recipes import domain_adapt

    cfg = domain_adapt.CONFIG.override(["phases.0.lr=auto"])
    with pytest.raises(UserError, match="lr=auto.*not in domain adaptation"):
        adapt.check(cfg)
