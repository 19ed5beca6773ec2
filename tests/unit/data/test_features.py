"""Cached features are the backbone's output for each image, whatever the batch they ran in."""

import numpy as np
import pytest

from tfxfer.data import features
from tfxfer.data.sources import ImageData, Split
from tfxfer.models import model

SIZE = 32


def _split(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8), np.arange(n) % 2)


@pytest.mark.parametrize(
    "n_train,n_val",
    [(5, 3), (3, 7), (70, 9)],  # fewer than a batch (one batch of the larger split), and more
)
def test_cached_features_are_each_images_own_features(n_train, n_val):
    """An independent computation: the feature model on all images at once, in inference mode.
    A split smaller than the extraction batch runs as one batch of its size (the other split
    padded to it); one larger runs in batches of 64 with the last one padded."""
    tm = model.build("MobileNet025", 2, SIZE, weights=None, augment="none")
    train, val = _split(n_train, 0), _split(n_val, 1)
    data = ImageData(["a", "b"], train, val, "synthetic")
    cache = features.extract(tm, data, views=1, image_size=SIZE)
    for split, got in ((train, cache.train[0]), (val, cache.val)):
        want = np.asarray(tm.feature_model(split.images.astype("float32"), training=False))
        assert got.shape == want.shape
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=2e-3, atol=2e-3)
    np.testing.assert_array_equal(cache.train_labels, train.labels)
    np.testing.assert_array_equal(cache.val_labels, val.labels)
