"""How good a generator is, measured with the run's own backbone: KID against real images.

The features are the global-average-pooled output of the run's backbone (``backbone``, with the
run's ``weights``, at the run's input size, after the family's own input scaling): the same
features the classifier will be trained on, rather than an ImageNet Inception network that
Fashion-MNIST or a medical image has little to do with. Three numbers come out:

- ``kid``: generated images vs real **validation** images (as many of each, in the validation
  split's class proportions). Validation images are only *measured* here, never trained on.
- ``kid_real``: real **training** images (in the same class counts) vs the same validation
  images: the floor a perfect generator of the training distribution would reach with so few
  samples.
- ``cas`` is not here: the Classification Accuracy Score needs a classifier trained on samples
  (``bench/generative.py``).

Example:
    >>> import numpy as np
    >>> from tfxfer.generative.quality import class_matched
    >>> labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    >>> np.bincount(labels[class_matched(labels, 8, np.random.default_rng(0))]).tolist()
    [4, 2, 2]
"""

from __future__ import annotations

import logging

import numpy as np

from tfxfer.data import features
from tfxfer.data.sources import ImageData, Split
from tfxfer.generative import kid as kid_lib
from tfxfer.generative import sample
from tfxfer.models import model as model_lib

log = logging.getLogger("tfxfer")


def class_matched(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``count`` rows of ``labels`` drawn without replacement, stratified: each class
    keeps its share (largest remainders round), so two splits compared get the same mix."""
    labels = np.asarray(labels)
    if count >= len(labels):
        return np.arange(len(labels))
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / len(labels)
    take = np.floor(exact).astype(int)
    take[np.argsort(take - exact)[: count - take.sum()]] += 1
    picked = [
        rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, take)
    ]
    return np.sort(np.concatenate(picked))


def measure(
    gen: sample.Generator,
    data: ImageData,
    backbone: str,
    weights: str | None,
    image_size: int,
    count: int = 1000,
    seed: int = 0,
) -> dict:
    """KID of ``gen``'s samples and of real training images, both against validation images.

    Args:
        gen: The generator.
        data: The run's data (its ``train`` must hold real images only).
        backbone, weights, image_size: The run's backbone, its weights and input size.
        count: Images per side (capped by the validation and training splits' sizes).
        seed: Seed of the subsets and of the samples.
    """
    rng = np.random.default_rng(seed)
    val_idx = class_matched(data.val.labels, count, rng)
    n = len(val_idx)
    if n < 4:
        log.warning("generator KID not measured: %d validation images (at least 4 needed)", n)
        return {"kid": None, "kid_images": n, "kid_requested": count}
    fake_labels = data.val.labels[val_idx]
    # real training images in the validation subset's class counts, as the generated ones are
    train_idx = np.concatenate(
        [
            rng.choice(
                np.flatnonzero(data.train.labels == c),
                min(k, int((data.train.labels == c).sum())),
                replace=False,
            )
            for c, k in enumerate(np.bincount(fake_labels, minlength=data.num_classes))
            if k
        ]
    )
    fake = sample.synthesize(gen, fake_labels, seed=seed, shape=data.train.images.shape[1:])
    # all three sets on the float32 (validation) side of the feature cache
    rows = Split(
        np.concatenate([data.val.images[val_idx], data.train.images[train_idx], fake]),
        np.concatenate([fake_labels, data.train.labels[train_idx], fake_labels]),
    )
    tm = model_lib.build(backbone, data.num_classes, image_size, weights, "none", dropout=0.0)
    cache = features.extract(
        tm,
        ImageData(data.class_names, Split(fake[:1], fake_labels[:1]), rows, data.source),
        1,
        image_size,
    )
    val, real, generated = np.split(cache.val, [n, n + len(train_idx)])
    subset = max(2, min(len(real), n) // 2)  # half of each side per draw: the draws differ
    kid, kid_std = kid_lib.kid(val, generated, 50, subset, seed)
    floor, floor_std = kid_lib.kid(val, real, 50, subset, seed)
    report = {
        "kid": round(kid, 5),
        "kid_std": round(kid_std, 5),
        "kid_real": round(floor, 5),
        "kid_real_std": round(floor_std, 5),
        "kid_images": n,
        "kid_requested": count,
        "kid_features": f"{backbone} ({weights or 'random'} weights) global average pool, "
        f"{cache.val.shape[-1]} features, {image_size} px",
    }
    log.info(
        "generator KID vs validation: %.4f +- %.4f (real training images: %.4f); %s",
        kid,
        kid_std,
        floor,
        report["kid_features"],
    )
    return report
