"""Trains the class-conditional GAN of :mod:`tfxfer.generative.networks` on one training split.

:func:`fit` takes a :class:`~tfxfer.data.sources.Split` (the *training* split: callers never
pass anything else, and the recipe's test checks it) and writes into ``folder``:

- ``generator.keras``: the generator (its moving average of weights when ``ema`` > 0), a plain
  float32 Keras model ``[noise, label] -> image in [-1, 1]``, with ``generator.json`` (classes,
  sizes, steps, seconds) and ``training_images.npy`` (a 64-bit digest of every training image,
  so that a run reusing the generator can check it never saw that run's validation images)
  beside it;
- ``checkpoints/gan.npz``: both networks, their optimisers, the averaged generator and the step,
  every ``checkpoint_every`` steps, written atomically. Calling :func:`fit` again on the same
  folder with the same settings continues from there (a setting that changes what trains
  starts over); a finished folder is returned as it is.

Each step updates the discriminator once on a real batch and a generated batch of the same
labels, in one call (hinge loss, DiffAugment on both), then the generator once. The GAN always
computes in float32, whatever the run's mixed-precision policy: its custom loop has no loss
scaling, and its samples join uint8 data anyway. Noise, batches and
augmentation are drawn from stateless seeds of ``(seed, step)``, so a resumed run draws what the
uninterrupted one would have.

Example:
    >>> import numpy as np, tempfile
    >>> from tfxfer.config import Generative
    >>> from tfxfer.data.sources import Split
    >>> split = Split(np.zeros((8, 8, 8, 1), np.uint8), np.arange(8) % 2)
    >>> meta = fit(split, ["a", "b"], Generative(steps=2, batch_size=4, width=4, kid_images=4),
    ...            tempfile.mkdtemp(), verbose=0)
    >>> meta["steps"], meta["image_size"], meta["channels"]
    (2, 8, 1)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfxfer.atomic import write_json, write_with
from tfxfer.config import Generative
from tfxfer.errors import UserError
from tfxfer.generative.gan import Gan

log = logging.getLogger("tfxfer")

GENERATOR = "generator.keras"
META = "generator.json"
CHECKPOINT = "checkpoints/gan.npz"
DIGESTS = "training_images.npy"
NOT_IDENTITY = ("checkpoint_every", "kid_images")  # change no trained weight


def digests(images: np.ndarray) -> np.ndarray:
    """A 64-bit BLAKE2 digest of each image's bytes (``uint64``, one per row)."""
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=8).digest(),
                "little",
            )
            for row in images
        ],
        np.uint64,
    )


@contextlib.contextmanager
def float32_policy():
    """Builds, trains and samples the GAN in float32 under any global dtype policy."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def gan_size(image_shape: tuple[int, ...], cfg: Generative) -> int:
    """The generated images' side: ``cfg.image_size``, or the data's when it is at most 64 and a
    multiple of 4, or else the next multiple of 4 above it, at most 64."""
    if cfg.image_size:
        return cfg.image_size
    side = max(image_shape[:2])
    return side if side <= 64 and side % 4 == 0 else min(64, max(8, -(-side // 4) * 4))


def to_unit_range(images: np.ndarray | tf.Tensor, size: int) -> tf.Tensor:
    """uint8 images -> float32 in [-1, 1] at ``size`` x ``size`` (area-averaged when smaller)."""
    x = tf.cast(images, tf.float32)
    if x.shape[1] != size or x.shape[2] != size:
        x = tf.clip_by_value(tf.image.resize(x, (size, size), antialias=True), 0.0, 255.0)
    return x / 127.5 - 1.0


def _batches(images: np.ndarray, labels: np.ndarray, batch: int, seed: int, step: int):
    """Stratum-free uniform batches, reshuffled every pass, from the pass ``step`` lies in."""
    n = len(labels)
    batch = min(batch, n)
    per_pass = n // batch
    epoch, offset = divmod(step, per_pass)
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(n)
        for b in range(offset, per_pass):
            idx = np.sort(order[b * batch : (b + 1) * batch])
            yield images[idx], labels[idx]
        epoch, offset = epoch + 1, 0


def fit(
    split,
    class_names: list[str],
    cfg: Generative,
    folder: str | Path,
    seed: int = 0,
    verbose: int = 1,
) -> dict:
    """Trains (or resumes, or returns) the generator of ``split`` in ``folder``.

    Args:
        split: The training split: ``uint8`` images ``(N, H, W, C)`` and integer labels.
        class_names: One name per label.
        cfg: The GAN's settings.
        folder: Where the generator, its metadata and its checkpoint go.
        seed: Seed of the initialisation, batches, noise and augmentation.
        verbose: 1 shows a progress bar, 2 one line per checkpoint (Keras's per-epoch
            lines), 0 nothing.

    Returns:
        The metadata written to ``generator.json``.
    """
    with float32_policy():
        return _fit(split, class_names, cfg, Path(folder), seed, verbose)


def _fit(
    split, class_names: list[str], cfg: Generative, folder: Path, seed: int, verbose: int
) -> dict:
    size, channels = gan_size(split.images.shape[1:], cfg), int(split.images.shape[-1])
    what = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IDENTITY}
    seen = digests(split.images)
    settings = {
        "generative": what,
        "seed": seed,
        "classes": class_names,
        "images": int(len(split)),
        "shape": list(split.images.shape[1:]),
        "data": hashlib.blake2b(
            seen.tobytes() + np.asarray(split.labels, np.int64).tobytes(), digest_size=8
        ).hexdigest(),
    }
    meta_path = folder / META
    if meta_path.is_file() and (folder / GENERATOR).is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("settings") == settings:
            log.info("generator in %s was trained by an earlier run: reused", folder)
            return meta
    gan = Gan(len(class_names), size, channels, cfg, seed)
    ckpt = folder / CHECKPOINT
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    if gan.restore(ckpt, settings):
        log.info("generator: resuming after step %d of %d", int(gan.step.numpy()), cfg.steps)
    images = to_unit_range(split.images, size).numpy()
    labels = np.asarray(split.labels, np.int32)
    log.info(
        "generator: class-conditional GAN at %dx%dx%d on %d training images, %d steps of batch %d",
        size,
        size,
        channels,
        len(labels),
        cfg.steps,
        cfg.batch_size,
    )
    done = resumed_at = int(gan.step.numpy())
    progress = keras.utils.Progbar(cfg.steps, verbose=verbose == 1, stateful_metrics=["d", "g"])
    progress.update(done)
    last, last_step = time.perf_counter(), done
    t0 = time.perf_counter()
    for real, y in _batches(images, labels, cfg.batch_size, seed, done):
        if done >= cfg.steps:
            break
        d_loss, g_loss = gan.train_step(tf.constant(real), tf.constant(y))
        done += 1
        if not (np.isfinite(float(d_loss)) and np.isfinite(float(g_loss))):
            raise UserError(
                f"the GAN's loss became NaN or infinite at step {done}; the last "
                f"checkpoint (step {done - done % cfg.checkpoint_every}) is kept",
                got=dict(d_loss=float(d_loss), g_loss=float(g_loss)),
                fix=f"re-run with a lower generative.lr (now {cfg.lr:g}), e.g. "
                f"--set generative.lr={cfg.lr / 2:g} (it starts over)",
            )
        progress.update(done, [("d", float(d_loss)), ("g", float(g_loss))])
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            gan.save(ckpt, settings)
            if verbose == 2:
                now = time.perf_counter()
                log.info(
                    "generator step %d/%d: d_loss %.3f g_loss %.3f, %.0f ms/step, checkpoint saved",
                    done,
                    cfg.steps,
                    float(d_loss),
                    float(g_loss),
                    1000 * (now - last) / max(1, done - last_step),
                )
                last, last_step = now, done
    seconds = time.perf_counter() - t0
    write_with(folder / DIGESTS, lambda p: np.save(p, seen), suffix=".npy")
    write_with(folder / GENERATOR, gan.sampler().save, suffix=".keras")
    meta = {
        "class_names": class_names,
        "image_size": size,
        "channels": channels,
        "data_shape": list(split.images.shape[1:]),
        "latent_dim": cfg.latent_dim,
        "steps": cfg.steps,
        "resumed_at_step": resumed_at,
        "seconds": round(seconds, 1),
        "settings": settings,
    }
    write_json(meta_path, meta)
    return meta
