"""Validation after training: every head's metrics, and test-time augmentation when asked.

Example:
    >>> from tfxfer.train import validate  # doctest: +SKIP
    >>> metrics = validate.evaluate(tm, cfg, data, cache, specs, size)  # doctest: +SKIP
    >>> metrics["val_accuracy"], metrics.get("tta")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxfer.config import Config
from tfxfer.data import pipeline
from tfxfer.methods import tasks as tasks_lib
from tfxfer.methods import tta as tta_lib


def evaluate(tm, cfg: Config, data, cache, specs, size: int) -> dict:
    """``metrics.json``'s content: the first head's metrics, ``tasks`` for several heads and
    ``tta`` (accuracy with and without test-time augmentation) when ``cfg.tta`` is set."""
    if cache is not None:
        outputs = tm.head_model.predict(cache.val, batch_size=256, verbose=0)
    else:
        val_ds = pipeline.image_dataset(data.val, data.num_classes, size, cfg.batch_size)
        outputs = tm.model.predict(val_ds.map(lambda x, y: x), verbose=0)
    per_task = tasks_lib.metrics(outputs, data.val.labels, specs)
    metrics = dict(per_task[specs[0].name])
    if tm.multi:
        metrics["tasks"] = per_task
    if cfg.tta != "none":
        metrics["tta"] = _with_tta(tm, cfg, data, specs, size, per_task)
    return metrics


def _with_tta(tm, cfg: Config, data, specs, size: int, plain: dict) -> dict:
    def predict(x):
        out = tm.plain_model(x, training=False)
        if tm.multi:
            return {k: tf.nn.softmax(tf.cast(v, tf.float32)).numpy() for k, v in out.items()}
        return tf.nn.softmax(tf.cast(out, tf.float32)).numpy()

    val_ds = pipeline.image_dataset(data.val, data.num_classes, size, cfg.batch_size)
    parts = [tta_lib.average(predict, x, cfg.tta, cfg.batch_size) for x, _ in val_ds]
    if tm.multi:
        probs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        log_probs = {k: np.log(np.maximum(v, 1e-12)) for k, v in probs.items()}
    else:
        log_probs = np.log(np.maximum(np.concatenate(parts), 1e-12))
    # metrics_from_logits takes log-probabilities as logits: its softmax of them is the identity
    with_tta = tasks_lib.metrics(log_probs, data.val.labels, specs)
    return {
        "mode": cfg.tta,
        "views": len(tta_lib.views(np.zeros((1, 8, 8, 3)), cfg.tta)),
        **{
            name: {
                "val_accuracy": m["val_accuracy"],
                "correct": m["correct"],
                "val_accuracy_without_tta": plain[name]["val_accuracy"],
            }
            for name, m in with_tta.items()
        },
    }
