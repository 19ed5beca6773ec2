"""Domain-adversarial training (DANN, Ganin & Lempitsky 2015) as a Keras 3 ``train_step``.

A labelled *source* and an unlabelled *target* share one feature extractor (the backbone and
its pooling). The label head learns from source labels only; a domain classifier learns to tell
source from target features, and its gradient reaches the features through a
:class:`GradientReversal` layer, multiplied by ``-lambda``: the features learn to *defeat* it,
so they become indistinguishable across domains while staying discriminative for the labels.

- ``lambda_p = 2 / (1 + exp(-gamma p)) - 1`` (:func:`reversal_weight`) rises from 0 to ~1 as
  training progresses (``p`` from 0 to 1), so the domain classifier's noisy early gradients do
  not disturb the features; ``gamma = 10`` in the paper.
- Each step takes a source batch and a target batch of the same size: balanced domains.
- ``method="source_only"`` is the papers' baseline: the backbone and the head train on source
  images alone, so no trained part (BatchNorm statistics included) ever sees a target image.
  The domain classifier is still fitted, as a diagnostic of how far apart the domains are, on
  both domains' features computed in inference mode and cut from the gradient.
- Under ``tf.distribute`` each replica's loss is divided by the number of replicas, as Keras's
  own ``train_step`` does, and the optimiser sums the replicas' gradients.

The same step runs the methods that build on DANN (:mod:`tfxfer.adapt.losses`): CDAN feeds
the domain classifier the features conditioned on the predictions, CDAN+E weights its loss by
the predictions' entropy, and MCC adds a class-confusion loss on the target batch, alone or on
top of an adversary.

The model's ``call`` is the plain classifier (images -> logits). The domain classifier is a
separate part of :class:`DomainAdversarial` and is not in what is saved or exported.

Example:
    >>> [round(float(reversal_weight(p)), 4) for p in (0.0, 0.1, 0.5, 1.0)]
    [0.0, 0.4621, 0.9866, 0.9999]
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfxfer.adapt import losses
from tfxfer.config import adapt_terms
from tfxfer.data import augment as augment_lib


def reversal_weight(progress, gamma: float = 10.0):
    """``2 / (1 + exp(-gamma * progress)) - 1``: 0 at the start, about 1 at the end."""
    return 2.0 / (1.0 + np.exp(-gamma * np.asarray(progress, np.float64))) - 1.0


@tf.custom_gradient
def _reverse(x, weight):
    def grad(dy):
        return -tf.cast(weight, dy.dtype) * dy, tf.zeros_like(weight)

    return tf.identity(x), grad


@keras.saving.register_keras_serializable(package="tfxfer")
class GradientReversal(keras.layers.Layer):
    """The identity forward; multiplies the gradient by ``-weight`` backward.

    Args (of ``call``):
        x: Any tensor.
        weight: Scalar reversal weight ``lambda`` (a tensor, so it can change every step).
    """

    def call(self, x, weight=1.0):
        # under a mixed policy Keras casts float arguments to the compute dtype: cast back
        return _reverse(x, tf.cast(weight, tf.float32))

    def compute_output_shape(self, input_shape, *args):
        return input_shape


def domain_classifier(hidden, seed: int | None = None) -> keras.Sequential:
    """Features -> one source-vs-target logit: ReLU Dense layers of widths ``hidden``, dropout
    0.5."""
    seeds = augment_lib.layer_seeds(seed, len(hidden), stream="domain")
    layers = []
    for i, width in enumerate(hidden):
        layers += [
            keras.layers.Dense(width, activation="relu", name=f"domain_hidden_{i}"),
            keras.layers.Dropout(0.5, seed=seeds[i], name=f"domain_dropout_{i}"),
        ]
    layers.append(keras.layers.Dense(1, dtype="float32", name="domain_logit"))
    return keras.Sequential(layers, name="domain_classifier")


class DomainAdversarial(keras.Model):
    """Trains a :class:`~tfxfer.models.model.TransferModel` adversarially against its domain.

    Fit it on a dataset of ``((source_images, source_onehot), target_images)`` batches; in a
    self-training stage, ``target_images`` is ``(target_images, pseudo_onehot, weights)``.

    Args:
        tm: The transfer model (its ``feature_model`` and ``head_model`` are trained).
        domain: The domain classifier (:func:`domain_classifier`).
        total_steps: Training steps over which the progress ``p`` goes from 0 to 1.
        method: One of :data:`tfxfer.config.ADAPT_METHODS`: an adversary (``dann``, ``cdan``,
            ``cdan+e``; :mod:`tfxfer.adapt.losses`) or none (``mcc``, ``source_only``: source
            images alone train the classifier), and ``+mcc`` to add MCC's target loss.
        gamma: Steepness of the ``lambda`` schedule.
        weight: Final reversal weight (multiplies ``lambda_p``).
        label_smoothing: Label smoothing of the source cross-entropy.
        cdan_dim: Width of CDAN's randomized multilinear map (used when features x classes
            is wider than :data:`tfxfer.adapt.losses.MULTILINEAR_MAX`).
        mcc_weight: Weight of the MCC loss.
        mcc_temperature: MCC's softmax temperature.
        seed: Seed of the randomized map's fixed matrices.
        pseudo_weight: Weight of the pseudo-label cross-entropy, in the batches that carry
            pseudo-labels (:mod:`tfxfer.adapt.self_train`); 0 when the run does not self-train.
    """

    def __init__(
        self,
        tm,
        domain: keras.Sequential,
        total_steps: int,
        method: str = "dann",
        gamma: float = 10.0,
        weight: float = 1.0,
        label_smoothing: float = 0.0,
        cdan_dim: int = 1024,
        mcc_weight: float = 1.0,
        mcc_temperature: float = 2.5,
        seed: int | None = 0,
        pseudo_weight: float = 0.0,
        **kwargs,
    ):
        super().__init__(name="domain_adversarial", **kwargs)
        self.features, self.head, self.domain = tm.feature_model, tm.head_model, domain
        self.reversal = GradientReversal(name="gradient_reversal")
        self.total_steps, self.method = max(1, int(total_steps)), method
        self.adversary, self.entropy_weighted, self.mcc = adapt_terms(method)
        self.mcc_weight, self.mcc_temperature = float(mcc_weight), float(mcc_temperature)
        self.pseudo_weight = float(pseudo_weight)
        width = int(tm.feature_model.output.shape[-1])
        classes = int(tm.head_model.output.shape[-1])
        self.randomized = None
        if self.adversary == "cdan":
            if width * classes > losses.MULTILINEAR_MAX:
                self.randomized = losses.RandomizedMultilinear(
                    cdan_dim, seed, name="randomized_multilinear"
                )
                self.randomized.build((None, width), (None, classes))
                width = cdan_dim
            else:
                width *= classes
        self.gamma, self.weight = float(gamma), float(weight)
        self.label_loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing, reduction="none"
        )
        self.step = self.add_weight(
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            name="step",
            aggregation="only_first_replica",
        )
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "label_loss", "domain_loss", "lambda")
            + (("mcc_loss",) if self.mcc else ())
            + (("pseudo_loss",) if self.pseudo_weight else ())
        }
        self.trackers["accuracy"] = keras.metrics.CategoricalAccuracy(name="accuracy")
        self.trackers["domain_accuracy"] = keras.metrics.BinaryAccuracy(
            name="domain_accuracy", threshold=0.0
        )  # on logits: > 0 means "source"
        if not domain.built:
            domain.build((None, width))
        self.reversal.built = True  # no weights
        self.built = True  # every part is built: fit must not trace call() on a data sample

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.head(self.features(images, training=training), training=training)

    def reversal_weight(self):
        """This step's ``lambda`` (0 without an adversary: ``source_only``, ``mcc``)."""
        if self.adversary is None:
            return tf.constant(0.0)
        p = tf.minimum(tf.cast(self.step, tf.float32) / self.total_steps, 1.0)
        return self.weight * (2.0 / (1.0 + tf.exp(-self.gamma * p)) - 1.0)

    def domain_input(self, features, probs):
        """What the domain classifier sees: the features, or CDAN's map of features and
        predictions (the predictions cut from the gradient)."""
        if self.adversary != "cdan":
            return features
        probs = tf.stop_gradient(probs)
        if self.randomized is not None:
            return self.randomized(features, probs)
        return losses.multilinear(features, probs)

    def domain_logits(self, features):
        """The domain classifier's logits for features, in inference mode (the epoch report)."""
        features = tf.convert_to_tensor(features)
        probs = tf.nn.softmax(tf.cast(self.head(features, training=False), features.dtype))
        return self.domain(self.domain_input(features, probs), training=False)

    def train_step(self, data):
        (xs, ys), xt = data
        # a self-training stage (tfxfer.adapt.self_train) pairs each target image with its
        # pseudo-label and a weight: 1 if kept, 0 if not confident enough
        pseudo = isinstance(xt, (tuple, list))
        if pseudo:
            xt, yt, wt = xt
        ns, nt = tf.shape(xs)[0], tf.shape(xt)[0]
        lam = self.reversal_weight()
        domains = tf.concat([tf.ones((ns, 1)), tf.zeros((nt, 1))], axis=0)
        with tf.GradientTape() as tape:
            if self.method == "source_only":  # no target term: only pseudo-labels train on it
                feats = tf.stop_gradient(self.features(tf.concat([xs, xt], axis=0), training=False))
                if pseudo:
                    trained = self.features(tf.concat([xs, xt], axis=0), training=True)
                    every = tf.cast(self.head(trained, training=True), tf.float32)
                    logits = every[:ns]
                else:  # the target never reaches a trained part
                    logits = self.head(self.features(xs, training=True), training=True)
                domain_in = feats
            else:  # one batch through the backbone: trained BatchNorm sees both domains
                feats = self.features(tf.concat([xs, xt], axis=0), training=True)
                if self.adversary == "dann" and not self.mcc and not pseudo:
                    logits, probs = self.head(feats[:ns], training=True), None
                else:  # CDAN, MCC and pseudo-labels read the target's predictions too
                    every = tf.cast(self.head(feats, training=True), tf.float32)
                    logits, probs = every[:ns], tf.nn.softmax(every)
                if self.adversary is None:  # MCC alone: the domain classifier only measures
                    domain_in = tf.stop_gradient(feats)
                else:
                    domain_in = self.domain_input(self.reversal(feats, weight=lam), probs)
            label_loss = tf.reduce_mean(self.label_loss(ys, logits))
            domain_logits = self.domain(domain_in, training=True)
            per_image = tf.nn.sigmoid_cross_entropy_with_logits(
                labels=domains, logits=domain_logits
            )[:, 0]
            if self.entropy_weighted:
                w = losses.entropy_weights(probs, tf.range(ns + nt) < ns)
                domain_loss = tf.reduce_sum(w * per_image) / tf.reduce_sum(w)
            else:
                domain_loss = tf.reduce_mean(per_image)
            loss = label_loss + domain_loss
            if self.mcc:
                mcc = losses.mcc_loss(every[ns:], self.mcc_temperature)
                loss += self.mcc_weight * mcc
            if pseudo:  # mean over the kept images of the batch (0 when none is kept)
                per_target = keras.losses.categorical_crossentropy(yt, every[ns:], from_logits=True)
                kept = tf.reduce_sum(wt)
                pseudo_loss = tf.reduce_sum(wt * per_target) / tf.maximum(kept, 1.0)
                loss += self.pseudo_weight * pseudo_loss
            if self.losses:  # L2-SP and other regularisers of the transfer model
                loss += tf.add_n([tf.cast(layer, tf.float32) for layer in self.losses])
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        self.step.assign_add(1)
        for name, value in (
            ("loss", loss),
            ("label_loss", label_loss),
            ("domain_loss", domain_loss),
            ("lambda", lam),
        ) + ((("mcc_loss", mcc),) if self.mcc else ()):
            self.trackers[name].update_state(value)
        if pseudo:
            self.trackers["pseudo_loss"].update_state(pseudo_loss)
        self.trackers["accuracy"].update_state(ys, logits)
        self.trackers["domain_accuracy"].update_state(domains, domain_logits)
        return {
            name: t.result()
            for name, t in self.trackers.items()
            if pseudo or name != "pseudo_loss"  # logged in self-training stages only
        }
