"""Generative augmentation: what the GAN's parts compute, that it trains and resumes exactly,
and that generated images reach the training split only (never validation, never the GAN's
own input from validation)."""

from __future__ import annotations

import dataclasses
import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfxfer.config import Config, Generative, Phase
from tfxfer.data.sources import ImageData, Split
from tfxfer.errors import UserError
from tfxfer.generative import networks, quality, sample, synthetic
from tfxfer.generative import train as gan_train

TINY = Generative(steps=4, batch_size=4, width=4, latent_dim=8, checkpoint_every=2, kid_images=6)


def tiny_data(seed: int = 0) -> ImageData:
    """Three classes; every validation image is a constant that no training image equals."""
    rng = np.random.default_rng(seed)
    train = Split(rng.integers(0, 200, (12, 12, 12, 1), dtype=np.uint8), np.arange(12) % 3)
    val = Split(
        np.stack([np.full((12, 12, 1), 250 + i, np.uint8) for i in range(6)]), np.arange(6) % 3
    )
    return ImageData(["a", "b", "c"], train, val, "synthetic")


@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: keras.layers.Dense(5), (None, 7)),
        (lambda: keras.layers.Conv2D(6, 3), (None, 8, 8, 4)),
    ],
)
def test_spectral_norm_finds_the_top_singular_value_and_divides_by_it(make, shape):
    # Power iteration converges at the rate (s2/s1)^2 per step. A random kernel's top two singular
    # values can be close (an unseeded draw once left the output 0.6% off after 60 iterations,
    # and the initializer's seed is fixed when the layer is constructed, so seeding Keras inside
    # the test did not pin it). The kernel is therefore built with a known spectrum whose gap
    # makes 60 iterations exact to float32: s = 3, 1.5, 1.4, ... -> (1/2)^120.
    layer = make()
    sn = networks.SpectralNorm(layer)
    sn.build(shape)
    layer.bias.assign(np.linspace(-1, 1, layer.bias.shape[0]))
    rng = np.random.default_rng(0)
    fan_in, units = int(np.prod(layer.kernel.shape[:-1])), layer.kernel.shape[-1]
    left, _ = np.linalg.qr(rng.normal(size=(fan_in, units)))
    right, _ = np.linalg.qr(rng.normal(size=(units, units)))
    spectrum = np.concatenate([[3.0], np.linspace(1.5, 0.5, units - 1)])
    kernel = ((left * spectrum) @ right.T).reshape(layer.kernel.shape).astype("float32")
    layer.kernel.assign(kernel)
    top = np.linalg.svd(kernel.reshape(-1, units), compute_uv=False)[0]  # independent check
    assert top == pytest.approx(3.0, rel=1e-5)
    for _ in range(60):  # power iterations, one per training call
        sigma = float(sn.sigma(training=True))
    assert sigma == pytest.approx(top, rel=1e-4)
    x = rng.normal(size=(2,) + shape[1:]).astype("float32")
    got = np.asarray(sn(x, training=True))
    np.testing.assert_array_equal(np.asarray(layer.kernel), kernel)  # never overwritten
    layer.kernel.assign(kernel / top)  # the plain layer with the kernel divided by hand
    np.testing.assert_allclose(got, layer(x), rtol=1e-4, atol=1e-5)


def test_spectral_norm_bounds_every_weight_of_the_discriminator_the_class_embedding_too():
    """The discriminator is documented as Lipschitz: each layer with weights must be spectrally
    normalised (the class embedding was not), so that after the power iterations every matrix
    it uses has its largest singular value at 1 and the projection term ``embed(y) . phi`` moves
    by at most ``|phi1 - phi2|``."""
    d = networks.build_discriminator(num_classes=4, image_size=16, channels=1, width=4)
    weighted = [layer for layer in d.layers if layer.trainable_weights]
    assert weighted and all(isinstance(layer, networks.SpectralNorm) for layer in weighted), [
        type(layer).__name__ for layer in weighted if not isinstance(layer, networks.SpectralNorm)
    ]
    assert any(isinstance(layer.layer, keras.layers.Embedding) for layer in weighted)
    for layer in weighted:
        for _ in range(200):
            sigma = layer.sigma(training=True)
        used = np.asarray(layer.matrix / sigma).reshape(-1, layer.matrix.shape[-1])
        assert np.linalg.svd(used, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-3)
    embedding = next(layer for layer in weighted if isinstance(layer.layer, keras.layers.Embedding))
    embedding.layer.embeddings.assign(embedding.layer.embeddings * 50.0)  # far from norm 1
    for _ in range(200):
        embedding.sigma(training=True)
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(2, 64, embedding.matrix.shape[-1])).astype("float32")
    y = rng.integers(0, 4, 64)
    e = np.asarray(embedding(y))
    change = np.abs(np.sum(e * (phi[0] - phi[1]), axis=1))
    assert (change <= np.linalg.norm(phi[0] - phi[1], axis=1) * (1 + 1e-3)).all()


def test_translate_and_cutout_match_numpy_and_pass_gradients_to_kept_pixels():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 2, (3, 8, 8, 2)).astype("float32")
    offsets = np.array([[2, -1], [0, 0], [-3, 3]], np.int32)
    expected = np.zeros_like(x)
    for i, (dy, dx) in enumerate(offsets):
        for r in range(8):
            for c in range(8):
                if 0 <= r - dy < 8 and 0 <= c - dx < 8:
                    expected[i, r, c] = x[i, r - dy, c - dx]
    np.testing.assert_array_equal(networks.translate(tf.constant(x), offsets), expected)
    corners = np.array([[0, 0], [4, 2], [1, 4]], np.int32)
    cut = networks.cutout(tf.constant(x), corners, 4).numpy()
    for i, (r, c) in enumerate(corners):
        hole = np.zeros((8, 8), bool)
        hole[r : r + 4, c : c + 4] = True
        assert np.all(cut[i][hole] == 0) and np.array_equal(cut[i][~hole], x[i][~hole])
    ones = tf.ones((64, 16, 16, 1))
    with tf.GradientTape() as tape:
        tape.watch(ones)
        out = networks.diff_augment(ones, tf.constant([1, 2], tf.int64))
        total = tf.reduce_sum(out)
    grad = tape.gradient(total, ones).numpy()
    assert set(np.unique(grad)) <= {0.0, 1.0} and grad.sum() == (out.numpy() != 0).sum()
    zeros = (out.numpy() == 0).reshape(64, -1).sum(axis=1)
    assert zeros.min() >= 8 * 8  # the half-size hole always lies inside
    blank = out.numpy()[..., 0] == 0  # a translation leaves whole zero rows/columns; the hole not
    assert blank.all(axis=2).sum(axis=1).max() <= 2 and blank.all(axis=1).sum(axis=1).max() <= 2
    assert blank.all(axis=2).sum(axis=1).max() >= 1  # (some image moved: the check has teeth)
    np.testing.assert_array_equal(out, networks.diff_augment(ones, tf.constant([1, 2], tf.int64)))
    assert not np.array_equal(out, networks.diff_augment(ones, tf.constant([3, 4], tf.int64)))


@pytest.mark.integration
def test_a_killed_gan_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    data = tiny_data()
    full = gan_train.fit(data.train, data.class_names, TINY, tmp_path / "full", verbose=0)
    reference = keras.saving.load_model(tmp_path / "full" / gan_train.GENERATOR).get_weights()

    real_batches = gan_train._batches

    def killed_after_three(*args):
        for i, batch in enumerate(real_batches(*args)):
            if i == 3:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(gan_train, "_batches", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        gan_train.fit(data.train, data.class_names, TINY, tmp_path / "killed", verbose=0)
    monkeypatch.setattr(gan_train, "_batches", real_batches)
    resumed = gan_train.fit(data.train, data.class_names, TINY, tmp_path / "killed", verbose=0)
    assert resumed["resumed_at_step"] == 2 and full["resumed_at_step"] == 0
    weights = keras.saving.load_model(tmp_path / "killed" / gan_train.GENERATOR).get_weights()
    for a, b in zip(reference, weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # every variable of the last checkpoint: both networks, the average, optimiser slots, step
    with (
        np.load(tmp_path / "full" / gan_train.CHECKPOINT) as a,
        np.load(tmp_path / "killed" / gan_train.CHECKPOINT) as b,
    ):
        names = [k for k in a.files if k != "settings"]
        assert len(names) > 40 and names == [k for k in b.files if k != "settings"]
        for k in names:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # a finished folder with the same settings is returned without training
    monkeypatch.setattr(gan_train, "Gan", None)
    assert (
        gan_train.fit(data.train, data.class_names, TINY, tmp_path / "full", verbose=0)["settings"]
        == full["settings"]
    )


def test_samples_have_the_data_shape_and_the_grid_one_row_per_class(tmp_path):
    data = tiny_data()
    gan_train.fit(
        data.train, data.class_names, dataclasses.replace(TINY, image_size=8), tmp_path, verbose=0
    )
    gen = sample.load(tmp_path)
    assert gen.meta["image_size"] == 8
    images = sample.synthesize(gen, np.array([0, 1, 2, 2]), seed=3)
    assert images.shape == (4, 12, 12, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, sample.synthesize(gen, np.array([0, 1, 2, 2]), seed=3))
    assert sample.synthesize(gen, np.array([0]), shape=(5, 5, 3)).shape == (1, 5, 5, 3)
    fig = sample.grid(gen, per_class=4, path=tmp_path / "grid.png")
    assert len(fig.axes) == 12 and (tmp_path / "grid.png").stat().st_size > 0
    assert [fig.axes[4 * i].get_ylabel() for i in range(3)] == ["a", "b", "c"]


def test_class_matched_subsets_keep_each_class_share():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    for count in (10, 33, 99):
        idx = quality.class_matched(labels, count, np.random.default_rng(count))
        assert len(idx) == count == len(set(idx.tolist()))
        shares = np.bincount(labels[idx], minlength=3) / count
        assert np.all(np.abs(shares - [0.5, 0.3, 0.2]) <= 1 / count + 1e-9)
    assert synthetic.per_class_counts(labels, 0.5, 4).tolist() == [25, 15, 10, 0]


@pytest.mark.integration
def test_synthetic_ratio_extends_training_only_and_the_gan_never_sees_validation(
    tmp_path, monkeypatch
):
    from tfxfer.train import loop

    data = tiny_data()
    seen = []
    real_fit = gan_train.fit
    monkeypatch.setattr(
        gan_train, "fit", lambda split, *a, **k: (seen.append(split), real_fit(split, *a, **k))[1]
    )
    cfg = Config(
        data="unused",
        backbone="MobileNet025",
        weights=None,
        image_size=32,
        augment={"preset": "none", "synthetic_ratio": 1.5},
        generative=TINY,
        phases=(Phase(epochs=1),),
        batch_size=8,
        feature_views=1,
        verbose=0,
        output=str(tmp_path / "run"),
    )
    result = loop.run(cfg, data=data)
    assert len(seen) == 1 and seen[0] is data.train  # the GAN got the training split, nothing else
    assert result.data.val is data.val  # validation untouched: no generated image enters it
    assert result.data.generated == 18 and len(result.data.train) == 12 + 18
    np.testing.assert_array_equal(result.data.train.images[:12], data.train.images)
    assert np.bincount(result.data.train.labels[12:]).tolist() == [6, 6, 6]
    assert result.metrics["num_val"] == 6  # evaluated on the 6 real validation images only
    meta = json.loads((tmp_path / "run" / "generator" / gan_train.META).read_text())
    assert meta["kid_images"] == 6 and "MobileNet025" in meta["kid_features"]
    assert (tmp_path / "run" / "generator" / synthetic.GRID).is_file()
    assert result.data_report["generated_train_images"] == 18


def test_bad_generator_inputs_are_refused_in_one_line(tmp_path):
    data = tiny_data()
    cfg = Config(augment={"synthetic_ratio": 1.0, "generator": str(tmp_path / "none")})
    with pytest.raises(UserError, match="generator.keras and generator.json"):
        synthetic.extend(cfg, data, tmp_path, 32)
    gan_train.fit(data.train, ["x", "y", "z"], TINY, tmp_path / "other", verbose=0)
    cfg = Config(augment={"synthetic_ratio": 1.0, "generator": str(tmp_path / "other")})
    with pytest.raises(UserError, match="trained on the run's classes"):
        synthetic.extend(cfg, data, tmp_path, 32)
    with pytest.raises(UserError, match="multi-worker"):
        synthetic.extend(Config(augment={"synthetic_ratio": 1.0}), data, None, 32)
    from tfxfer.adapt import train as adapt
    from tfxfer.zero_shot import train as zero_shot

    with pytest.raises(UserError, match="not domain_adapt"):
        adapt.check(
            Config(
                recipe="domain_adapt", adapt={"target": "mnist_m"}, augment={"synthetic_ratio": 1.0}
            )
        )
    with pytest.raises(UserError, match="not zero_shot.*generative.steps"):
        zero_shot.run(Config(recipe="zero_shot", generative={"steps": 5}))
    with pytest.raises(UserError, match="multi-worker run cannot train its generator"):
        synthetic.check(Config(augment={"synthetic_ratio": 1.0}), workers=2)
    with pytest.raises(UserError, match="outside an --output that --overwrite clears"):
        synthetic.check(
            Config(
                augment={"synthetic_ratio": 1.0, "generator": "runs/x/generator"},
                output="runs/x",
                overwrite=True,
            ),
            workers=1,
        )


def test_a_reused_generator_that_saw_a_validation_image_is_refused(tmp_path):
    data = tiny_data()
    leaky = Split(
        np.concatenate([data.train.images, data.val.images[:1]]),
        np.concatenate([data.train.labels, data.val.labels[:1]]),
    )
    gan_train.fit(leaky, data.class_names, TINY, tmp_path / "leaky", verbose=0)
    cfg = Config(augment={"synthetic_ratio": 1.0, "generator": str(tmp_path / "leaky")})
    with pytest.raises(UserError, match="1 of the 6 validation images were in its training"):
        synthetic.extend(cfg, data, tmp_path, 32)
    shutil.copytree(tmp_path / "leaky", tmp_path / "clean")  # as if trained on train only:
    np.save(tmp_path / "clean" / gan_train.DIGESTS, gan_train.digests(data.train.images))
    extended = synthetic.extend(
        cfg.replace(augment={"generator": str(tmp_path / "clean")}), data, tmp_path, 32
    )
    assert extended.generated == 12 and extended.val is data.val


def test_the_gan_trains_and_samples_in_float32_under_a_mixed_policy(tmp_path):
    data = tiny_data()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        gan_train.fit(data.train, data.class_names, TINY, tmp_path, verbose=0)
        gen = sample.load(tmp_path)
        images = sample.synthesize(gen, np.array([0, 1]))
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # the saved layers carry the policy they were built under: float32, not mixed_bfloat16
    assert {layer.dtype_policy.name for layer in gen.model.layers} == {"float32"}
    assert images.min() < images.max()  # real samples, not an empty array
