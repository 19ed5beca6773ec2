"""LiteRT (TensorFlow Lite) export: float32, float16, dynamic-range and full-integer int8.

``--export litert-int8`` (or ``tfxfer export RUN_DIR --litert int8`` after a run) writes
``model_<variant>.tflite``. Each file takes one ``(1, size, size, 3)`` image and returns class
probabilities ``(1, K)`` (the first head of a multi-task model):

| variant | weights | activations | input |
|---|---|---|---|
| ``fp32`` | float32 | float32 | float32, 0-255 |
| ``fp16`` | float16 | float32 | float32, 0-255 |
| ``dynamic`` | int8 | float32 (int8 kernels where LiteRT has them) | float32, 0-255 |
| ``int8`` | int8 | int8 (full-integer: every op, no float fallback) | uint8 pixels |

The int8 variant is calibrated on a representative dataset of the run's own training images
(:data:`CALIBRATION_IMAGES` of them, spread over the classes). Its input is raw ``uint8``
pixels (scale 1, zero point 0), so an app feeds the camera's bytes; its output is dequantised
to float32. The image resize is not in these files: resize to ``size x size`` with an
antialiased bilinear filter, as :mod:`tfxfer.deploy.decode` does.

Files are converted with ``tf.lite.TFLiteConverter`` (still in TensorFlow 2.21) and run with
:func:`interpreter`: the maintained ``ai-edge-litert`` interpreter when it is installed
(``pip install tfxfer[litert]``; the Makefile installs it), else TensorFlow's deprecated
``tf.lite.Interpreter``. Which one ran is written next to each measured accuracy.

Example:
    >>> VARIANTS
    ('fp32', 'fp16', 'dynamic', 'int8')
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfxfer.atomic import write_with
from tfxfer.deploy.serving import inference_graph

VARIANTS = ("fp32", "fp16", "dynamic", "int8")
CALIBRATION_IMAGES = 200


def calibration_images(images: np.ndarray, labels: np.ndarray, count: int = CALIBRATION_IMAGES,
                       seed: int = 0) -> np.ndarray:
    """Up to ``count`` training images, the same number from each class where possible."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, count // max(1, len(classes)))
    picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return images[np.sort(np.concatenate(picked))[:count]]


def _write_probabilities_graph(model: keras.Model, path: str) -> None:
    graph = inference_graph(model)
    size = graph.input.shape[1]

    def probabilities(image):
        logits = graph(image, training=False)
        if isinstance(logits, dict):
            logits = next(iter(logits.values()))
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    archive = keras.export.ExportArchive()
    archive.track(graph)
    archive.add_endpoint("serving_default", probabilities, input_signature=[
        tf.TensorSpec((1, size, size, 3), tf.float32, name="image")])
    archive.write_out(path, verbose=False)


def convert(model: keras.Model, variant: str, calibration: np.ndarray | None = None) -> bytes:
    """The ``.tflite`` bytes of a trained training graph for one of :data:`VARIANTS`."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    with tempfile.TemporaryDirectory() as tmp:  # SavedModel: the converter's best-kept path
        _write_probabilities_graph(model, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if variant != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if variant == "int8":
            if calibration is None or not len(calibration):
                raise ValueError("int8 needs calibration images (the run's training images)")

            def representative():
                for image in calibration:
                    yield [np.asarray(image, np.float32)[None]]

            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
        return converter.convert()


def interpreter(content: bytes):
    """``(Interpreter, name)`` for ``.tflite`` bytes: ai-edge-litert's when installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        name = "ai-edge-litert"
    except ImportError:  # deprecated in TF 2.21 but still working
        Interpreter = tf.lite.Interpreter
        name = "tf.lite.Interpreter (ai-edge-litert not installed)"
    runner = Interpreter(model_content=content, num_threads=None)
    runner.allocate_tensors()
    return runner, name


class Runner:
    """Runs a ``.tflite`` classifier one image at a time, quantising the input if needed."""

    def __init__(self, content: bytes):
        self.runner, self.interpreter = interpreter(content)
        self.input = self.runner.get_input_details()[0]
        self.output = self.runner.get_output_details()[0]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = np.asarray(image, np.float32)[None]
        if self.input["dtype"] in (np.uint8, np.int8):
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.runner.set_tensor(self.input["index"], x.astype(self.input["dtype"]))
        self.runner.invoke()
        out = self.runner.get_tensor(self.output["index"])[0].astype(np.float32)
        if self.output["dtype"] in (np.uint8, np.int8):
            scale, zero = self.output["quantization"]
            out = (out - zero) * scale
        return out


def accuracy(content: bytes, images: np.ndarray, labels: np.ndarray) -> tuple[float, str]:
    """Validation accuracy of a ``.tflite`` file, measured by running it on every image."""
    run = Runner(content)
    pred = np.array([int(np.argmax(run(image))) for image in images])
    return float((pred == np.asarray(labels)).mean()), run.interpreter


def export(model: keras.Model, variants, out_dir: str | Path, train_images: np.ndarray,
           train_labels: np.ndarray, val_images: np.ndarray, val_labels: np.ndarray,
           seed: int = 0) -> dict:
    """Writes ``model_<variant>.tflite`` for each variant and measures each one.

    Returns:
        ``{variant: {file, bytes, gzip_bytes, val_accuracy, interpreter}}``.
    """
    calibration = calibration_images(train_images, train_labels, seed=seed)
    results = {}
    for variant in variants:
        content = convert(model, variant, calibration if variant == "int8" else None)
        path = Path(out_dir) / f"model_{variant}.tflite"
        write_with(path, lambda tmp, data=content: Path(tmp).write_bytes(data), suffix=".tflite")
        acc, name = accuracy(content, val_images, val_labels)
        results[variant] = {"file": str(path), "bytes": len(content),
                            "gzip_bytes": len(gzip.compress(content, compresslevel=9)),
                            "val_accuracy": round(acc, 4), "interpreter": name}
    return results
