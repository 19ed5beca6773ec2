"""CDAN's conditioning maps, CDAN+E's weights and MCC's loss against numpy transcriptions of the
papers' definitions, and the composition rules of adapt.method."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfxfer.adapt import dann, losses
from tfxfer.config import ADAPT_METHODS, Adapt
from tfxfer.errors import UserError
from tfxfer.models import backbones
from tfxfer.models import model as model_lib


def _probs(rng, n, classes):
    z = rng.normal(size=(n, classes)) * 2
    e = np.exp(z - z.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype("float32")


def test_the_multilinear_map_is_every_feature_times_every_class_probability():
    rng = np.random.default_rng(0)
    f, g = rng.normal(size=(5, 7)).astype("float32"), _probs(rng, 5, 3)
    want = np.stack([np.outer(f[i], g[i]).ravel() for i in range(5)])
    np.testing.assert_allclose(losses.multilinear(f, g).numpy(), want, rtol=1e-6)


def test_the_randomized_map_is_its_formula_and_keeps_inner_products_on_average():
    rng = np.random.default_rng(1)
    f, g = rng.normal(size=(2, 6)).astype("float32"), _probs(rng, 2, 4)
    layer = losses.RandomizedMultilinear(dim=50, seed=3)
    got = layer(f, g).numpy()
    rf, rg = np.asarray(layer.r_f), np.asarray(layer.r_g)
    np.testing.assert_allclose(got, (f @ rf) * (g @ rg) / math.sqrt(50), rtol=1e-5, atol=1e-6)
    assert not layer.trainable_weights  # fixed, never trained
    # E[<R(f1, g1), R(f2, g2)>] = <f1, f2> <g1, g2> = <f1 ⊗ g1, f2 ⊗ g2>: averaged over draws
    exact = float(f[0] @ f[1]) * float(g[0] @ g[1])
    draws = [losses.RandomizedMultilinear(dim=2000, seed=s)(f, g).numpy() for s in range(40)]
    estimate = np.mean([float(r[0] @ r[1]) for r in draws])
    spread = np.std([float(r[0] @ r[1]) for r in draws]) / math.sqrt(len(draws))
    assert abs(estimate - exact) < 4 * spread + 1e-3, (estimate, exact, spread)


def test_entropy_weights_are_one_plus_exp_minus_entropy_normalised_per_domain():
    rng = np.random.default_rng(2)
    p = _probs(rng, 10, 5)
    is_source = np.arange(10) < 4
    h = -(p * np.log(p + 1e-7)).sum(1)
    raw = 1 + np.exp(-h)
    want = np.where(is_source, raw / raw[is_source].sum(), raw / raw[~is_source].sum())
    got = losses.entropy_weights(p, is_source).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[is_source].sum() == pytest.approx(1) and got[~is_source].sum() == pytest.approx(1)
    assert got[np.argmin(h[~is_source]) + 4] == got[~is_source].max()  # confident weighs most


def _numpy_mcc(logits, temperature):
    """Jin et al. 2020, section 3, element by element."""
    n, classes = logits.shape
    z = logits / temperature
    y = np.exp(z - z.max(1, keepdims=True))
    y /= y.sum(1, keepdims=True)
    h = [-sum(y[i, j] * math.log(y[i, j] + 1e-7) for j in range(classes)) for i in range(n)]
    w = [n * (1 + math.exp(-h[i])) / sum(1 + math.exp(-hk) for hk in h) for i in range(n)]
    c = [[sum(y[i, j] * w[i] * y[i, k] for i in range(n)) for k in range(classes)]
         for j in range(classes)]  # fmt: skip
    col = [sum(c[j][k] for j in range(classes)) for k in range(classes)]
    total = sum(c[j][k] / col[k] for j in range(classes) for k in range(classes) if j != k)
    return total / classes


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_mcc_loss_is_the_papers_class_confusion(temperature):
    rng = np.random.default_rng(3)
    logits = (rng.normal(size=(12, 4)) * 3).astype("float32")
    got = float(losses.mcc_loss(logits, temperature))
    assert got == pytest.approx(_numpy_mcc(logits.astype(np.float64), temperature), rel=1e-5)
    confident = np.eye(4, dtype="float32")[np.arange(12) % 4] * 40  # no two classes share images
    assert float(losses.mcc_loss(confident, temperature)) < 1e-4 < got


def test_cdan_takes_the_randomized_map_when_features_times_classes_is_too_wide():
    tm = model_lib.build("MobileNet025", 33, 32, weights=None, augment="none", seed=0)
    width = tm.feature_model.output.shape[-1]
    assert width * 33 > losses.MULTILINEAR_MAX >= width * 3
    trainer = dann.DomainAdversarial(
        tm, dann.domain_classifier((), seed=0), 10, "cdan+e", cdan_dim=64
    )
    assert trainer.randomized is not None and trainer.domain.input_shape[-1] == 64
    trainer.compile(optimizer=keras.optimizers.SGD(0.01))
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    logs = trainer.train_step(((x, np.eye(33, dtype="float32")[:4]), x[::-1]))
    assert np.isfinite(float(logs["loss"])) and float(logs["lambda"]) == 0.0  # p = 0
    assert trainer.domain_logits(trainer.features(x)).shape == (4, 1)


@pytest.mark.parametrize("family", [n for n in backbones.names() if backbones.get(n).from_scratch])
def test_cdan_on_every_digit_network_conditions_on_the_exact_map(family):
    """Ten digit classes times each digit network's features stay within the exact map: the
    domain classifier sees every product f_a * g_c (the randomized one fell 0.033 short)."""
    tm = model_lib.build(family, 10, None, weights=None, augment="none", seed=0)
    width = tm.feature_model.output.shape[-1]
    trainer = dann.DomainAdversarial(tm, dann.domain_classifier((), seed=0), 10, "cdan+e")
    assert trainer.randomized is None and trainer.domain.input_shape[-1] == width * 10
    x = np.random.default_rng(0).uniform(0, 255, (2,) + tm.model.input.shape[1:])
    features = trainer.features(x.astype("float32"))
    probs = tf.nn.softmax(trainer.head(features))
    np.testing.assert_allclose(
        trainer.domain_input(features, probs).numpy(),
        np.einsum("na,nc->nac", features.numpy(), probs.numpy()).reshape(2, -1),
        rtol=1e-6,
    )


@pytest.mark.parametrize("method", ["dann+e", "source_only+mcc", "mcc+dann", "cdan+mcc+e", "e"])
def test_compositions_outside_the_papers_are_refused_with_the_rule(method):
    with pytest.raises(UserError) as info:
        Adapt(method=method)
    text = str(info.value)
    assert "\n" not in text and "composes one adversary" in text and "cdan+e+mcc" in text


def test_every_valid_composition_is_accepted():
    assert {Adapt(method=m).method for m in ADAPT_METHODS} == set(ADAPT_METHODS)
