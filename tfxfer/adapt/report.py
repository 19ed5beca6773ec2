"""What a domain adaptation run reports after every epoch: source and target accuracy, and how
well a held-out domain classifier tells the two apart (0.5: the features are domain-invariant).
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

from tfxfer.data import pipeline

log = logging.getLogger("tfxfer")


class EpochReport(keras.callbacks.Callback):
    """Adds source, target and held-out domain accuracy to each epoch's logs, and logs them."""

    def __init__(self, tm, trainer, data, target, image_size: int, batch_size: int, label: str):
        super().__init__()
        self.tm, self.trainer, self.size, self.batch, self.label = (
            tm,
            trainer,
            image_size,
            batch_size,
            label,
        )
        self.source_val = data.val
        self.target_val = None if target.val is None else target.val.val
        self.num_classes = data.num_classes
        # traced once: Keras's predict would retrace for every new dataset, every epoch
        self._extract = tf.function(
            lambda x: tm.feature_model(x, training=False), reduce_retracing=True
        )

    def _features(self, split):
        ds = pipeline.image_dataset(split, self.num_classes, self.size, 256)
        return np.concatenate([self._extract(x).numpy() for x, _ in ds])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        source = self._features(self.source_val)
        logs["val_accuracy"] = _accuracy(self.tm, source, self.source_val.labels)
        text = f"source val {logs['val_accuracy']:.4f}"
        if self.target_val is not None:
            target = self._features(self.target_val)
            logs["target_accuracy"] = _accuracy(self.tm, target, self.target_val.labels)
            text += f", target {logs['target_accuracy']:.4f}"
            # balanced: as many target as source images, so 0.5 is chance; evenly spaced rows,
            # since a folder's images come sorted by class
            n = min(len(source), len(target))
            d = self.trainer.domain_logits(np.concatenate([_spread(source, n), _spread(target, n)]))
            d = np.asarray(d)[:, 0]
            logs["val_domain_accuracy"] = float(np.mean((d > 0) == (np.arange(2 * n) < n)))
            text += f", domain classifier {logs['val_domain_accuracy']:.4f} held out"
        log.info(
            "%s epoch %d: accuracy %s; train: domain classifier %.4f, lambda %.3f",
            self.label,
            epoch + 1,
            text,
            float(logs.get("domain_accuracy", float("nan"))),
            float(logs.get("lambda", float("nan"))),
        )


def _spread(rows: np.ndarray, n: int) -> np.ndarray:
    return rows[np.linspace(0, len(rows) - 1, n).astype(int)]


def _accuracy(tm, features: np.ndarray, labels: np.ndarray) -> float:
    logits = tm.head_model(features, training=False)
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def target_metrics(cfg, history: list[dict], target) -> dict:
    """``metrics["adapt"]``: the method, the target, and the last epoch's accuracies."""
    last = history[-1]["history"]
    m = {
        "method": cfg.adapt.method,
        "target": cfg.adapt.target,
        "target_val": None if target.val is None else target.val.source,
        "num_target_train": int(len(target.images)),
        "train_domain_accuracy": last["domain_accuracy"][-1],
        "lambda": last["lambda"][-1],
    }
    if "target_accuracy" in last:
        m.update(
            target_accuracy=last["target_accuracy"][-1],
            num_target_val=int(len(target.val.val)),
            val_domain_accuracy=last["val_domain_accuracy"][-1],
            target_accuracy_per_epoch=[a for h in history for a in h["history"]["target_accuracy"]],
        )
    return m
