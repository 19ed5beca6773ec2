"""How fast the input pipeline gathers decoded rows: ``tf.numpy_function`` against graph ops.

Issue 17 asks to measure :func:`tfxfer.data.pipeline.gather_rows` (a ``tf.numpy_function``,
which holds the GIL and cannot be serialised for the tf.data service) before replacing it. This
script times, on the same arrays and the same shuffled index batches, the pipeline as
:func:`tfxfer.data.pipeline.image_dataset` builds it up to the model input (gather, cast,
greyscale to RGB, resize) with three gathers:

- ``numpy_function``: today's ``gather_rows`` (works on in-memory arrays and disk memmaps);
- ``graph (variable)``: ``tf.gather`` from the array held in a non-trainable ``tf.Variable``
  (graph-only, serialisable; the array must fit in memory);
- ``graph (constant)``: ``tf.gather`` from a ``tf.constant`` (the array is copied into the graph:
  only sensible for small arrays).

Arrays: Fashion-MNIST-like 60,000 x 28 x 28 x 1 (resized to 32 px on the fly), and 3,000 x 224 x
224 x 3 (no resize), in memory and (for ``numpy_function``) as a disk memmap
(:func:`tfxfer.storage.allocate` with a zero budget). Random pixels: gathering does not look at
them. Each cell is the best of 3 passes over ``--batches`` batches of 64, nothing else running.

Run: ``python bench/gather.py [--batches 300]`` (about 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine, table

from tfxfer import storage
from tfxfer.data import pipeline

BATCH = 64


def dataset(images: np.ndarray, size: int, how: str) -> tf.data.Dataset:
    if how == "numpy_function":

        def gather(idx):
            return pipeline.gather_rows(images, idx, tf.uint8)
    else:
        source = (
            tf.Variable(images, trainable=False)
            if how == "graph (variable)"
            else tf.constant(images)
        )

        def gather(idx):
            return tf.gather(source, idx)

    ds = pipeline.index_batches(len(images), BATCH, shuffle=True, seed=0)
    ds = ds.map(
        lambda idx: pipeline.to_model_input(gather(idx), size), num_parallel_calls=pipeline.AUTOTUNE
    )
    return ds.prefetch(pipeline.AUTOTUNE).with_options(pipeline.dataset_options())


def images_per_second(ds: tf.data.Dataset, batches: int) -> float:
    best = 0.0
    for _ in range(3):
        t0, n = time.perf_counter(), 0
        for x in ds.take(batches):
            n += int(x.shape[0])
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=300)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    cases = [
        ("60,000 x 28x28x1 -> 32 px", rng.integers(0, 256, (60000, 28, 28, 1), np.uint8), 32),
        ("3,000 x 224x224x3", rng.integers(0, 256, (3000, 224, 224, 3), np.uint8), 224),
    ]
    rows = []
    for name, array, size in cases:
        mapped = storage.allocate(array.shape, "uint8", budget=0)
        mapped[:] = array
        row = {"array": name}
        row["numpy_function, memory"] = images_per_second(
            dataset(array, size, "numpy_function"), args.batches
        )
        row["numpy_function, memmap"] = images_per_second(
            dataset(mapped, size, "numpy_function"), args.batches
        )
        row["graph (variable)"] = images_per_second(
            dataset(array, size, "graph (variable)"), args.batches
        )
        if array.nbytes < 2**28:
            row["graph (constant)"] = images_per_second(
                dataset(array, size, "graph (constant)"), args.batches
            )
        rows.append({k: (f"{v:,.0f}" if isinstance(v, float) else v) for k, v in row.items()})
        print(rows[-1], flush=True)
    print(
        f"\nMachine: {machine()}; images/s, best of 3 passes of {args.batches} batches of {BATCH}\n"
    )
    print(
        table(
            rows,
            [
                (k, k)
                for k in (
                    "array",
                    "numpy_function, memory",
                    "numpy_function, memmap",
                    "graph (variable)",
                    "graph (constant)",
                )
            ],
        )
    )


if __name__ == "__main__":
    main()
