"""Sampling a trained generator: labelled ``uint8`` images shaped like the data, a per-class grid.

:func:`synthesize` returns images at the training data's own shape and channels (the generator's
output is rescaled from [-1, 1] to 0-255 and resized back when the GAN ran at another size), so
they can join the training split as they are. Sampling is seeded and batched.

Example:
    >>> import numpy as np, tempfile
    >>> from tfxfer.config import Generative
    >>> from tfxfer.data.sources import Split
    >>> from tfxfer.generative import train
    >>> folder = tempfile.mkdtemp()
    >>> _ = train.fit(Split(np.zeros((8, 10, 10, 1), np.uint8), np.arange(8) % 2), ["a", "b"],
    ...               Generative(steps=1, batch_size=4, width=4), folder, verbose=0)
    >>> gen = load(folder)
    >>> images = synthesize(gen, np.array([0, 1, 1]), seed=0)
    >>> images.shape, images.dtype.name
    ((3, 10, 10, 1), 'uint8')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfxfer.atomic import write_with
from tfxfer.errors import UserError
from tfxfer.generative.train import GENERATOR, META, float32_policy

BATCH = 256


@dataclass
class Generator:
    """A loaded generator and what it was trained on (``generator.json``)."""

    model: keras.Model
    meta: dict

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])


def load_meta(folder: str | Path) -> dict:
    """``generator.json`` of a generator folder."""
    return json.loads((Path(folder) / META).read_text())


def load(folder: str | Path) -> Generator:
    """Loads ``generator.keras`` and ``generator.json`` from a generator folder."""
    folder = Path(folder)
    if not (folder / GENERATOR).is_file() or not (folder / META).is_file():
        raise UserError(
            "augment.generator must be a folder holding generator.keras and generator.json",
            got=str(folder),
            fix="train one with python -m tfxfer.generative --data ... --output "
            "DIR and pass DIR, or leave augment.generator unset to train one",
        )
    with float32_policy():
        model = keras.saving.load_model(folder / GENERATOR, compile=False)
    return Generator(model, load_meta(folder))


def synthesize(
    gen: Generator, labels: np.ndarray, seed: int = 0, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """``uint8`` images of the given class ``labels``, shaped ``shape`` (default: the shape of
    the data the generator was trained on)."""
    labels = np.asarray(labels, np.int32)
    height, width, channels = shape or gen.meta["data_shape"]
    out = np.empty((len(labels), height, width, channels), np.uint8)
    rng = np.random.default_rng(seed)
    for start in range(0, len(labels), BATCH):
        y = labels[start : start + BATCH]
        z = rng.standard_normal((len(y), gen.meta["latent_dim"])).astype(np.float32)
        x = (tf.cast(gen.model([z, y], training=False), tf.float32) + 1.0) * 127.5
        if x.shape[1] != height or x.shape[2] != width:
            x = tf.image.resize(x, (height, width), antialias=True)
        if x.shape[-1] != channels:
            x = tf.image.rgb_to_grayscale(x) if channels == 1 else tf.image.grayscale_to_rgb(x)
        out[start : start + len(y)] = np.round(np.clip(x.numpy(), 0, 255)).astype(np.uint8)
    return out


def grid(gen: Generator, per_class: int = 10, seed: int = 0, path: str | Path | None = None):
    """A matplotlib figure of ``per_class`` samples per class, one row per class, written as a
    PNG when ``path`` is given."""
    from matplotlib.figure import Figure

    k = len(gen.class_names)
    images = synthesize(gen, np.repeat(np.arange(k), per_class), seed)
    fig = Figure(figsize=(per_class * 0.8 + 1.6, k * 0.8 + 0.4))
    axes = fig.subplots(k, per_class, squeeze=False)
    gray = images.shape[-1] == 1
    for i, ax in enumerate(axes.ravel()):
        ax.imshow(
            images[i, ..., 0] if gray else images[i],
            cmap="gray" if gray else None,
            vmin=0,
            vmax=255,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        if i % per_class == 0:
            ax.set_ylabel(gen.class_names[i // per_class], rotation=0, ha="right", va="center")
    fig.subplots_adjust(
        left=1.4 / (per_class * 0.8 + 1.6),
        right=0.99,
        top=0.99,
        bottom=0.01,
        wspace=0.05,
        hspace=0.05,
    )
    if path is not None:
        write_with(path, lambda p: fig.savefig(p, dpi=80, format="png"), suffix=".png")
    return fig
