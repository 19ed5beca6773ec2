"""What augmentation and mixing *do*: independent draws per layer, mixing of cached features,
class weights of mixed labels."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfxfer.data import augment
from tfxfer.data.features import FeatureCache, feature_dataset
from tfxfer.models import model

N_DRAWS = 256


def _per_image_parameters(augmenter, n=N_DRAWS) -> dict[str, np.ndarray]:
    """Each layer's random parameters for ``n`` images, drawn as the augmenter's call draws them
    (every layer from its own generator, in order), one number per image and key."""
    images = tf.zeros((n, 16, 16, 3))
    params = {}
    for i, layer in enumerate(augmenter.layers):
        t = layer.get_random_transformation(images, training=True)
        if "transforms" in t:  # RandAugment: which ops, and each op's own parameters
            t = {"layer_idxes": tf.fill((n,), t["layer_idxes"][0]), **t["transforms"]}
        for key, value in _leaves(t):
            value = np.asarray(value, np.float64)
            if value.ndim and value.shape[0] == n:
                column = value.reshape(n, -1)[:, 0]
                if column.std() > 0:
                    params[f"{i}:{key}"] = column
    return params


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, f"{prefix}{k}.")
    elif tree is not None:
        yield prefix.rstrip("."), tree


@pytest.mark.parametrize("preset", ["standard", "strong"])
def test_augmentation_parameters_are_independent_across_layers_and_reproducible(preset):
    tm = model.build("MobileNet025", 2, 32, weights=None, augment=preset, seed=0)
    params = _per_image_parameters(tm.augmenter)
    layers_seen = {k.split(":")[0] for k in params}
    assert len(layers_seen) == len(tm.augmenter.layers)  # every layer drew something random
    worst = 0.0
    for (a, x), (b, y) in itertools.combinations(params.items(), 2):
        if a.split(":")[0] != b.split(":")[0]:  # pairs of parameters from different layers
            worst = max(worst, abs(np.corrcoef(x, y)[0, 1]))
    assert worst < 0.2, f"correlated augmentation parameters across layers: |r| = {worst:.3f}"

    again = _per_image_parameters(
        model.build("MobileNet025", 2, 32, weights=None, augment=preset, seed=0).augmenter
    )
    other = _per_image_parameters(
        model.build("MobileNet025", 2, 32, weights=None, augment=preset, seed=1).augmenter
    )
    assert all(np.array_equal(params[k], again[k]) for k in params)  # same seed, same draws
    assert not all(np.array_equal(params[k], other[k]) for k in params)


def test_head_dropout_layers_and_mixers_each_get_their_own_seed():
    tm = model.build(
        "MobileNet025", 3, 32, weights=None, hidden=(8, 8), seed=5, heads={"a": 3, "b": 2}
    )
    seeds = [
        layer.seed
        for head in tm.heads.values()
        for layer in head.layers
        if layer.name.startswith("dropout")
    ]
    assert len(seeds) == 6 and len(set(seeds)) == 6
    assert len(set(augment.layer_seeds(5, 3, "mix")) | set(seeds)) == 9


def _one_hot_cache(n=16):
    """Feature i is the one-hot vector of sample i, and sample i is class i: after mixing,
    features and labels must be the very same convex combination."""
    feats = np.eye(n, dtype=np.float16)[None]
    return FeatureCache(feats, np.arange(n), np.eye(n, dtype=np.float32), np.arange(n))


@pytest.mark.parametrize("mixup,cutmix", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_cached_head_phase_mixes_features_and_labels_alike(mixup, cutmix):
    cache = _one_hot_cache()
    mixer = augment.feature_mixer(mixup, cutmix, seed=0)
    ds = feature_dataset(cache, 16, 8, train=True, seed=0, mixer=mixer)
    mixed_rows = 0
    for x, y in ds.repeat(4):
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_allclose(x, y, atol=2e-3)  # float16 features
        np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
        mixed_rows += int((y.max(axis=1) < 0.99).sum())
    assert mixed_rows > 16  # most samples are mixes of two
    val = list(feature_dataset(cache, 16, 8, train=False, mixer=mixer))
    assert all(np.asarray(y).max(axis=1).min() == 1.0 for _, y in val)  # never at validation


def test_mixup_in_a_cached_phase_reaches_the_head_training(image_folder, tmp_path, monkeypatch):
    from tfxfer.config import Config, Phase
    from tfxfer.train import loop as train

    calls = []
    real = augment.feature_mixer

    def spy(mixup, cutmix, seed=None):
        calls.append((mixup, cutmix))
        return real(mixup, cutmix, seed)

    monkeypatch.setattr(augment, "feature_mixer", spy)
    cfg = Config(
        data=str(image_folder),
        weights=None,
        backbone="MobileNet025",
        image_size=32,
        mixup=0.2,
        batch_size=8,
        verbose=0,
        output=str(tmp_path / "o"),
        phases=(Phase(epochs=1),),
    )
    result = train.run(cfg)
    assert calls == [(0.2, 0.0)] and result.history[0]["cached_features"]


def test_class_weight_of_a_mixed_label_is_its_label_weighted_mix():
    from tfxfer.train.inputs import with_sample_weights

    w = np.array([0.5, 2.0, 4.0])
    y = np.array([[1, 0, 0], [0, 0, 1], [0.3, 0.7, 0], [0.25, 0, 0.75]], np.float32)
    ds = with_sample_weights(tf.data.Dataset.from_tensors((np.zeros((4, 2)), y)), w)
    _, _, sw = next(iter(ds))
    np.testing.assert_allclose(np.asarray(sw), y @ w, rtol=1e-6)  # numpy: sum_c y_c w_c
    np.testing.assert_allclose(np.asarray(sw)[:2], w[y[:2].argmax(1)])  # one-hot: class_weight
