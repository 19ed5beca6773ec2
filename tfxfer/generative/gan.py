"""The GAN being trained: both networks, their optimisers, the averaged generator, one step.

Each step (:meth:`Gan.train_step`) updates the discriminator once on a real batch and a generated
batch of the same labels, in one call (hinge loss, DiffAugment on both), then the generator
once, then the generator's moving average of weights (warmed up, as
``tf.train.ExponentialMovingAverage``'s ``num_updates``). Noise and augmentation are drawn from
stateless seeds of ``(seed, step)``, so a resumed run draws what the uninterrupted one would
have. :meth:`Gan.save` and :meth:`Gan.restore` keep every variable, optimiser slots and the
step included; :meth:`Gan.sampler` is the generator to ship. The loop around it is
:func:`tfxfer.generative.train.fit`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfxfer.atomic import write_with
from tfxfer.config import Generative
from tfxfer.generative import networks

log = logging.getLogger("tfxfer")


class Gan:
    """Both networks, their optimisers, the averaged generator, and one training step."""

    def __init__(self, num_classes: int, size: int, channels: int, cfg: Generative, seed: int):
        keras.utils.set_random_seed(seed)
        self.cfg, self.seed, self.num_classes = cfg, seed, num_classes
        args = dict(num_classes=num_classes, image_size=size, channels=channels)
        self.g = networks.build_generator(**args, latent_dim=cfg.latent_dim, width=cfg.width)
        self.d = networks.build_discriminator(**args, width=cfg.width)
        self.g_ema = networks.build_generator(**args, latent_dim=cfg.latent_dim, width=cfg.width)
        self.g_ema.set_weights(self.g.get_weights())
        self.g_opt = keras.optimizers.Adam(cfg.lr, beta_1=0.5, beta_2=0.999)
        self.d_opt = keras.optimizers.Adam(cfg.lr, beta_1=0.5, beta_2=0.999)
        self.g_opt.build(self.g.trainable_variables)
        self.d_opt.build(self.d.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.train_step = tf.function(self._train_step, jit_compile=False)

    def _variables(self) -> list:
        return [
            *self.g.weights,
            *self.d.weights,
            *self.g_ema.weights,
            *self.g_opt.variables,
            *self.d_opt.variables,
            self.step,
        ]

    def save(self, path: Path, settings: dict) -> None:
        arrays = {
            f"v{i}": np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            for i, v in enumerate(self._variables())
        }
        write_with(
            path, lambda p: np.savez(p, settings=json.dumps(settings), **arrays), suffix=".npz"
        )

    def restore(self, path: Path, settings: dict) -> bool:
        """Loads ``path`` when it exists and was written with the same settings."""
        if not path.is_file():
            return False
        with np.load(path) as saved:
            if json.loads(str(saved["settings"])) != settings:
                log.info("generator checkpoint %s has other settings: starting over", path)
                return False
            for i, v in enumerate(self._variables()):
                v.assign(saved[f"v{i}"])
        return True

    def sampler(self, batch: int = 1024) -> keras.Model:
        """The generator to save: the weight average with its batch-norm statistics recomputed.

        Averaging the moving statistics along with the weights gives statistics of no network
        that ever ran (measured: samples with a tenth of the real images' contrast), so each
        batch-norm layer of the average takes the mean and variance of one large batch of its
        own activations instead ("standing statistics", as BigGAN samples).
        """
        if not self.cfg.ema:
            return self.g
        rng = np.random.default_rng(self.seed)
        z = rng.standard_normal((batch, self.cfg.latent_dim)).astype(np.float32)
        y = (np.arange(batch) % self.num_classes).astype(np.int32)
        norms = [
            layer
            for layer in self.g_ema.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        momenta = [layer.momentum for layer in norms]
        for layer in norms:
            layer.momentum = 0.0  # moving statistics := this batch's
        self.g_ema([z, y], training=True)
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        return self.g_ema

    def _train_step(self, real: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        n = tf.shape(real)[0]
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.cast(self.seed, tf.int64), self.step]), 5
        )
        augment = networks.diff_augment if self.cfg.diff_augment else lambda x, _: x
        z = tf.random.stateless_normal((n, self.cfg.latent_dim), seeds[0])
        with tf.GradientTape() as tape:
            fake = self.g([z, labels], training=True)
            # one call: both halves of the loss see the same spectral norms (one power step)
            both = tf.concat([augment(real, seeds[1]), augment(fake, seeds[2])], axis=0)
            scores = self.d([both, tf.concat([labels, labels], axis=0)], training=True)
            real_score, fake_score = scores[:n], scores[n:]
            d_loss = tf.reduce_mean(tf.nn.relu(1.0 - real_score)) + tf.reduce_mean(
                tf.nn.relu(1.0 + fake_score)
            )
        self.d_opt.apply_gradients(
            zip(tape.gradient(d_loss, self.d.trainable_variables), self.d.trainable_variables)
        )
        z = tf.random.stateless_normal((n, self.cfg.latent_dim), seeds[3])
        with tf.GradientTape() as tape:
            fake = self.g([z, labels], training=True)
            g_loss = -tf.reduce_mean(self.d([augment(fake, seeds[4]), labels], training=True))
        self.g_opt.apply_gradients(
            zip(tape.gradient(g_loss, self.g.trainable_variables), self.g.trainable_variables)
        )
        # warmed-up decay, as tf.train.ExponentialMovingAverage's num_updates: the average
        # forgets the random initialisation instead of keeping ema ** steps of it
        t = tf.cast(self.step, tf.float32)
        decay = tf.minimum(self.cfg.ema, (1.0 + t) / (10.0 + t))
        for avg, new in zip(self.g_ema.weights, self.g.weights):
            avg.assign(decay * avg + (1.0 - decay) * new)
        self.step.assign_add(1)
        return d_loss, g_loss
