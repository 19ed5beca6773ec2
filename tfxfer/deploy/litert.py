"""LiteRT (TensorFlow Lite) export: float32, float16, dynamic-range and full-integer int8.

``--export litert-int8`` (or ``tfxfer export RUN_DIR --litert int8`` after a run) writes
``model_<variant>.tflite``. Each file takes one ``(1, size, size, 3)`` image and returns class
probabilities ``(1, K)`` (the first head of a multi-task model); ``labels.txt`` beside the
files names the class of each index. :func:`pixels` gives an image file as the files take it:

| variant | weights | activations | input |
|---|---|---|---|
| ``fp32`` | float32 | float32 | float32, 0-255 |
| ``fp16`` | float16 | float32 | float32, 0-255 |
| ``dynamic`` | int8 | float32 (int8 kernels where LiteRT has them) | float32, 0-255 |
| ``int8`` | int8 | int8 (full-integer: every op, no float fallback) | uint8 pixels |

The int8 variant is calibrated on a representative dataset of the run's own training images
(:data:`CALIBRATION_IMAGES` of them, spread over the classes). Its input is raw ``uint8``
pixels, scale 1 and zero point 0 whatever the calibration images spanned (:func:`pixels_in`),
and ``metrics.json`` records them with each file. Its output is dequantised to float32. The
decode and resize are not in these files: :func:`pixels` does both as training did (an app
without TensorFlow decodes to 8-bit RGB, alpha over white, and resizes to ``size x size`` with
Pillow's ``Image.BILINEAR``, as :mod:`tfxfer.data.graph_decode` documents).

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
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfxfer.atomic import write_with
from tfxfer.deploy import savedmodel
from tfxfer.deploy.serving import inference_graph

VARIANTS = ("fp32", "fp16", "dynamic", "int8")
CALIBRATION_IMAGES = 200


def pixels(files, size: int) -> np.ndarray:
    """``uint8[N, size, size, 3]``: each image file (a path or its bytes) as a LiteRT file
    takes it, decoded exactly as training and the SavedModel read it (EXIF orientation, alpha
    over white, 16-bit PNG levels, Pillow's antialiased bilinear resize;
    :mod:`tfxfer.data.graph_decode`). ``Image.open(f).convert("RGB")`` is not that: it turns
    a 16-bit PNG white and composites alpha differently.

    Example:
        >>> import tensorflow as tf
        >>> png = tf.io.encode_png(tf.fill((40, 60, 3), tf.constant(7, tf.uint8))).numpy()
        >>> x = pixels([png], 32)
        >>> x.shape, x.dtype.name, int(x.max())
        ((1, 32, 32, 3), 'uint8', 7)
    """
    from tfxfer.data import graph_decode

    blobs = [f if isinstance(f, bytes) else Path(f).read_bytes() for f in files]
    return np.stack(
        [graph_decode.decode_image(tf.constant(b), size).numpy().astype(np.uint8) for b in blobs]
    )


def calibration_indices(
    labels: np.ndarray, count: int = CALIBRATION_IMAGES, seed: int = 0
) -> np.ndarray:
    """Indices of up to ``count`` training images, spread evenly over the classes."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked = []
    for rank in range(max(len(p) for p in per_class)):  # round-robin: every class in turn
        picked += [int(p[rank]) for p in per_class if rank < len(p)]
        if len(picked) >= count:
            break
    return np.sort(np.array(picked[:count], np.int64))


def _write_probabilities_graph(model: keras.Model, path: str, task: str | None) -> None:
    graph = inference_graph(model)
    size = graph.input.shape[1]

    def probabilities(image):
        logits = graph(image, training=False)
        if isinstance(logits, dict):
            if task not in logits:
                raise ValueError(
                    f"a multi-task model needs the head to export: one of "
                    f"{sorted(logits)}, got {task!r}"
                )
            logits = logits[task]
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    image = tf.TensorSpec((1, size, size, 3), tf.float32, name="image")
    savedmodel.write(
        path, {"serving_default": savedmodel.endpoint(probabilities, image)}, graph.variables
    )


def convert(
    model: keras.Model, variant: str, calibration: np.ndarray | None = None, task: str | None = None
) -> bytes:
    """The ``.tflite`` bytes of a trained training graph for one of :data:`VARIANTS`.

    ``task`` names the head of a multi-task model to export (its probabilities only).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    with tempfile.TemporaryDirectory() as tmp:  # SavedModel: the converter's best-kept path
        _write_probabilities_graph(model, tmp, task)
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
            return pixels_in(converter.convert())
        return converter.convert()


def pixels_in(content: bytes) -> bytes:
    """An int8 file whose ``uint8`` input is raw pixels: scale 1, zero point 0.

    The converter gives the input the range of the calibration images (scale 0.7059 when they
    peaked at 180), so an app feeding raw pixels would be wrong unless it quantised them
    first. The input is only read by the converter's QUANTIZE op, which maps it to the int8
    range the first layer was calibrated for; declaring the input as pixels turns that op into
    a requantisation from pixels, and the rest of the file is unchanged.

    Raises:
        RuntimeError: The input is read by another op than QUANTIZE (not what the converter
            writes; nothing is changed then).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    (index,) = graph.inputs
    readers = {
        flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
        for op in graph.operators
        if index in op.inputs
    }
    if readers != {"QUANTIZE"}:
        raise RuntimeError(
            f"the int8 file's input is read by {sorted(readers)}, not by a "
            "QUANTIZE op alone: cannot declare it as raw pixels"
        )
    quantization = graph.tensors[index].quantization
    quantization.scale = np.array([1.0], np.float32)
    quantization.zeroPoint = np.array([0], np.int64)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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


def accuracy(content: bytes, batches: Iterable) -> tuple[float, str]:
    """Validation accuracy of a ``.tflite`` file, measured by running it on every image of
    ``batches`` (``(uint8 images, labels)`` pairs)."""
    run = Runner(content)
    correct = total = 0
    for images, labels in batches:
        pred = np.array([int(np.argmax(run(image))) for image in images])
        correct += int((pred == np.asarray(labels)).sum())
        total += len(pred)
    return correct / max(1, total), run.interpreter


def export(
    model: keras.Model,
    variants,
    out_dir: str | Path,
    calibration: np.ndarray,
    val_batches: Callable[[], Iterable],
    task: str | None = None,
) -> dict:
    """Writes ``model_<variant>.tflite`` for each variant and measures each one.

    Args:
        model: The trained training graph.
        variants: Some of :data:`VARIANTS`.
        out_dir: Where the files go.
        calibration: ``(n, size, size, 3)`` training images for int8.
        val_batches: Returns a fresh iterator of ``(uint8 images, labels)`` validation batches.
        task: The head to export from a multi-task model.

    Returns:
        ``{variant: {file, bytes, gzip_bytes, val_accuracy, interpreter, input}}``; a variant
        whose conversion or run fails gets ``{error}`` instead and the others go on.
    """
    results = {}
    for variant in variants:
        try:
            content = convert(model, variant, calibration if variant == "int8" else None, task)
            path = Path(out_dir) / f"model_{variant}.tflite"
            write_with(
                path, lambda tmp, data=content: Path(tmp).write_bytes(data), suffix=".tflite"
            )
            acc, name = accuracy(content, val_batches())
            details = Runner(content).input
        except Exception as exc:
            results[variant] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
            continue
        scale, zero = details["quantization"]
        results[variant] = {
            "file": str(path),
            "bytes": len(content),
            "gzip_bytes": len(gzip.compress(content, compresslevel=9)),
            "val_accuracy": round(acc, 4),
            "interpreter": name,
            "input": {
                "dtype": np.dtype(details["dtype"]).name,
                "scale": float(scale),
                "zero_point": int(zero),
            },
        }
    return results
