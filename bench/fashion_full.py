"""Full Fashion-MNIST with ``large_different``: 60,000 training images, the 10,000 test images.

Issue 17's P4 row: the ``large_different`` recipe as shipped (ImageNet MobileNetV2, every layer
and BatchNorm trained, Adam 5e-4 with a cosine schedule, batch 64, the ``light`` augmentation)
at a size that fits two CPU cores: 32 px (the 28 px images resized in the pipeline) and
``--epochs`` epochs. The built-in ``fashion_mnist`` evaluates on the official test split.

Run: ``python bench/fashion_full.py [--epochs 8] [--image-size 32]`` (about 16 minutes on 2 CPU
cores, nothing else running), or ``--from-run DIR`` to print the table of a finished run
folder. Prints the per-epoch curve, the test accuracy and the wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine, save, table


def report(run: Path, wall: float | None) -> dict:
    history = json.loads((run / "history.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    rows = []
    for phase in history:
        h = phase["history"]
        for e in range(len(h["loss"])):
            rows.append(
                {
                    "epoch": e + 1,
                    "train_loss": h["loss"][e],
                    "train_accuracy": h["accuracy"][e],
                    "test_loss": h["val_loss"][e],
                    "test_accuracy": h["val_accuracy"][e],
                }
            )
    return {
        "machine": machine(),
        "image_size": cfg["image_size"],
        "epochs": len(rows),
        "test_accuracy": metrics["val_accuracy"],
        "num_test": metrics["num_val"],
        "train_seconds": history[-1]["seconds"],
        "run_seconds": metrics["seconds"],
        "wall_seconds": wall,
        "curve": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--output", default="bench/runs/fashion_full")
    p.add_argument("--from-run", help="print the table of a finished run folder")
    a = p.parse_args()
    wall = None
    run = Path(a.from_run or a.output)
    if not a.from_run:
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tfxfer.recipes.large_different",
                "--image-size",
                str(a.image_size),
                "--epochs",
                str(a.epochs),
                "--output",
                str(run),
                "--overwrite",
            ],
            check=True,
        )
        wall = round(time.perf_counter() - t0, 1)
    result = report(run, wall)
    save("fashion_full", result)
    print(
        table(
            result["curve"],
            [
                ("epoch", "epoch"),
                ("train_loss", "train loss"),
                ("train_accuracy", "train acc"),
                ("test_loss", "test loss"),
                ("test_accuracy", "test acc"),
            ],
        )
    )
    print(
        f"test accuracy {result['test_accuracy']:.4f} on {result['num_test']:,} images; "
        f"training {result['train_seconds']:.0f}s, run {result['run_seconds']:.0f}s"
        + (f", wall {wall:.0f}s" if wall else "")
    )


if __name__ == "__main__":
    main()
