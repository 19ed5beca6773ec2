"""The student's training step: the labels' cross-entropy and the teacher's softened outputs
(Hinton, Vinyals & Dean 2015), as a Keras 3 ``train_step``.

For a batch of images ``x`` (already augmented, in the data pipeline: the teacher sees exactly
the view the student sees, each at its own input size, resized from the batch's) with one-hot
labels ``y`` (all-zero rows for images without labels):

- ``soft = T**2 * mean over the batch of KL(softmax(t / T) || softmax(s / T))``, ``t`` the
  teacher's logits in inference mode and ``s`` the student's, every image counting;
- ``hard = sum(w * CE(y, s)) / max(sum(w), 1)``, ``w`` 1 for a labelled image, 0 otherwise;
- ``loss = alpha * hard + (1 - alpha) * soft``, plus the student's regularisers.

With ``alpha = 1`` the teacher is never run: the student learns from the labels alone, the
baseline the distilled student is compared with.

Example:
    >>> import numpy as np
    >>> t, s = np.array([[2.0, 0.0]]), np.array([[2.0, 0.0]])
    >>> float(soft_loss(t, s, 2.0))
    0.0
"""

from __future__ import annotations

import keras
import tensorflow as tf


def soft_loss(teacher_logits, student_logits, temperature: float):
    """``T**2`` times the batch mean of ``KL(softmax(t / T) || softmax(s / T))``."""
    t = tf.cast(teacher_logits, tf.float32) / temperature
    s = tf.cast(student_logits, tf.float32) / temperature
    p = tf.nn.softmax(t)
    kl = tf.reduce_sum(p * (tf.nn.log_softmax(t) - tf.nn.log_softmax(s)), axis=-1)
    return temperature**2 * tf.reduce_mean(kl)


def _resized(images, size: int):
    """``images`` at ``size`` x ``size``: as they are when they have it, else resized (area-like
    when shrinking: antialiased bilinear)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return tf.image.resize(images, (size, size), antialias=True)


class Distiller(keras.Model):
    """Trains a student :class:`~tfxfer.models.model.TransferModel` from a frozen teacher.

    Fit it on ``(images, one_hot)`` batches (see the module docstring); validate it on the same.
    Its ``call`` is the student without augmentation; the teacher is not part of what is saved.

    Args:
        tm: The student (its ``plain_model`` trains; augmentation is the data pipeline's).
        teacher: The teacher's Keras model (images 0-255 -> logits), or None when ``alpha`` is 1.
        temperature: ``T``.
        alpha: The labels' share of the loss.
        label_smoothing: Label smoothing of the labels' cross-entropy.
    """

    def __init__(self, tm, teacher, temperature: float, alpha: float, label_smoothing=0.0, **kw):
        super().__init__(name="distiller", **kw)
        self.student, self.teacher = tm.plain_model, teacher
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.teacher_size = None if teacher is None else int(teacher.inputs[0].shape[1])
        self.student_size = int(tm.image_size)
        self.label_loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing, reduction="none"
        )
        names = ("loss", "label_loss") + (("soft_loss",) if teacher is not None else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.trackers["accuracy"] = keras.metrics.CategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, images, training=False):
        return self.student(images, training=training)

    def teacher_logits(self, images):
        """The teacher's logits for a training batch, resized to its input when it differs."""
        images = _resized(images, self.teacher_size)
        return tf.stop_gradient(tf.cast(self.teacher(images, training=False), tf.float32))

    def _hard(self, y, logits):
        w = tf.reduce_sum(y, axis=-1)  # 0 for an image without a label
        per_image = self.label_loss(y, logits)
        return tf.reduce_sum(w * per_image) / tf.maximum(tf.reduce_sum(w), 1.0), w

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        y = tf.cast(y, tf.float32)
        t = self.teacher_logits(x) if self.teacher is not None else None
        x = _resized(x, self.student_size)  # batches may come at the teacher's larger size
        with tf.GradientTape() as tape:
            s = tf.cast(self.student(x, training=True), tf.float32)
            hard, w = self._hard(y, s)
            loss = self.alpha * hard
            if t is not None:
                soft = soft_loss(t, s, self.temperature)
                loss += (1.0 - self.alpha) * soft
            if self.student.losses:  # L2-SP and other regularisers of the student
                loss += tf.add_n([tf.cast(v, tf.float32) for v in self.student.losses])
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.trainable_variables  # the student's: the teacher is frozen
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        self.trackers["loss"].update_state(loss)
        self.trackers["label_loss"].update_state(hard, sample_weight=tf.reduce_sum(w))
        if t is not None:
            self.trackers["soft_loss"].update_state(soft)
        self.trackers["accuracy"].update_state(y, s, sample_weight=w)
        return {name: m.result() for name, m in self.trackers.items()}

    def test_step(self, data):
        """The labels' cross-entropy and accuracy on labelled images (validation)."""
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        y = tf.cast(y, tf.float32)
        s = tf.cast(self.student(x, training=False), tf.float32)
        hard, w = self._hard(y, s)
        self.trackers["loss"].update_state(hard, sample_weight=tf.reduce_sum(w))
        self.trackers["accuracy"].update_state(y, s, sample_weight=w)
        return {name: self.trackers[name].result() for name in ("loss", "accuracy")}
