"""Fine-tuning practices against the recipe as shipped: + EMA, + WiSE-FT, + both; clean and
under the offline shift suite; 3 seeds, paired; resumable, one JSON per arm.

Sets and the recipe each ships with (``tfxfer.recipes``), every arm from ImageNet MobileNetV2
at ``--size`` px (default 112, to fit 2 CPU cores):

- ``hymenoptera`` (245 / 153 images): ``small_similar``, head only;
- ``cats_and_dogs_filtered`` (2,000 / 1,000): ``large_similar``, head warm-up then the whole
  network;
- ``fashion_mnist`` at 100 training images per class (validation: 100 per class of its test
  split): ``small_different``, head then blocks 4-5.

Arms (the same data subset and initial weights within a seed):

- ``shipped``: the recipe's config, only the size, data subset, seed and output changed;
- ``ema``: + ``phases.N.ema`` on every phase, ``min(0.999, 1 - 10 / steps)`` for a phase of
  ``steps`` steps (cached feature views counted): Keras's average starts from the weights after
  the first step, with no warm-up, so that start keeps a weight of ``ema ** steps`` in the
  final average; this keeps it below ``exp(-10)`` (0.999 over 465 steps would leave it 0.63);
- ``wise_ft``: + ``wise_ft=auto``: alpha chosen from 0, 0.1, ..., 1 on 10% of each class's
  training images, held out before training (they train nothing; the validation images choose
  nothing); head-only recipes have nothing to interpolate and skip it;
- ``both``: ``ema`` and ``wise_ft``.

Each arm reports its validation accuracy (the run's ``metrics.json``) and the shift suite's
(``tfxfer.data.shift``: 5 corruptions x 3 severities of the validation images, through the
exported SavedModel's ``serve_images``, as ``tfxfer predict --shift`` does): clean and the mean
over the 15 shifted sets. Nothing is selected on the validation images.

Run: ``python bench/finetune.py [--sets ...] [--arms ...] [--seeds 0,1,2] [--size 112]
[--table]``; writes ``bench/arms/finetune/<set>-<arm>-seed<k>.json`` per arm, skips arms
already written, and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine

ARMS_DIR = Path(__file__).resolve().parent / "arms" / "finetune"
SETS = {  # set: (recipe, train per class, val per class, training images)
    "hymenoptera": ("small_similar", None, None, 245),
    "cats_and_dogs_filtered": ("large_similar", None, None, 2000),
    "fashion_mnist": ("small_different", 100, 100, 1000),
}
ARMS = ("shipped", "ema", "wise_ft", "both")
EMA_MAX, EMA_SPAN = 0.999, 10.0  # ema = min(EMA_MAX, 1 - EMA_SPAN / steps of the phase)
WISE_ALPHA = "auto"
BATCH = 32


def arm_config(dataset: str, arm: str, seed: int, size: int, out: str):
    """The config of one arm, or None when the arm does not apply (WiSE-FT on a head-only
    recipe)."""
    from tfxfer.config import wise_ft_probe

    recipe, per_class, val_per_class, train_images = SETS[dataset]
    cfg = importlib.import_module(f"tfxfer.recipes.{recipe}").CONFIG.replace(
        data=dataset,
        image_size=size,
        train_per_class=per_class,
        val_per_class=val_per_class,
        batch_size=BATCH,
        seed=seed,
        verbose=0,
        overwrite=True,
        output=out,
    )
    if arm in ("wise_ft", "both"):
        if wise_ft_probe(cfg.phases) is None:
            return None
        cfg = cfg.replace(wise_ft=WISE_ALPHA)
    if arm in ("ema", "both"):
        if cfg.wise_ft == "auto":  # the held-out images train nothing
            train_images -= round(train_images * cfg.wise_ft_holdout)
        cfg = cfg.replace(
            phases=[
                {**dataclasses.asdict(p), "ema": ema_momentum(cfg, p, train_images)}
                for p in cfg.phases
            ]
        )
    return cfg


def ema_momentum(cfg, phase, train_images: int) -> float:
    """``min(EMA_MAX, 1 - EMA_SPAN / steps)`` for ``phase`` (see the module docstring)."""
    cached = phase.trainable == "head" and cfg.cache_features
    examples = train_images * (cfg.feature_views if cached else 1)
    steps = phase.epochs * max(1, -(-examples // BATCH))
    return round(min(EMA_MAX, 1.0 - EMA_SPAN / steps), 4)


def run_arm(dataset: str, arm: str, seed: int, size: int) -> dict | None:
    import keras
    import tensorflow as tf

    from tfxfer.data import shift

    recipe = SETS[dataset][0]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = arm_config(dataset, arm, seed, size, tmp + "/run")
        if cfg is None:
            return None
        keras.backend.clear_session()
        t0 = time.perf_counter()
        result = importlib.import_module(f"tfxfer.recipes.{recipe}").run(cfg)
        seconds = time.perf_counter() - t0
        served = tf.saved_model.load(result.paths["saved_model"])
        images = result.data.val.images
        if images.shape[-1] == 1:
            images = tf.image.grayscale_to_rgb(tf.constant(images)).numpy()
        if images.shape[1] != size:
            images = tf.cast(tf.round(tf.image.resize(images, (size, size))), tf.uint8).numpy()
        table = shift.accuracy(
            lambda batch: served.serve_images(batch)["probabilities"],
            images,
            result.data.val.labels,
            seed=seed,
        )
    return {
        "set": dataset,
        "recipe": recipe,
        "arm": arm,
        "seed": seed,
        "size": size,
        "val_accuracy": result.metrics["val_accuracy"],
        "shift_clean": table["clean"],
        "shift_mean": table["mean"],
        "shift": table,
        "wise_ft": result.metrics.get("wise_ft"),
        "ema": [p.ema for p in cfg.phases],
        "seconds": round(seconds, 1),
        "machine": machine(),
        "date": date.today().isoformat(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--table", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    ARMS_DIR.mkdir(parents=True, exist_ok=True)
    for seed in [] if args.table else [int(s) for s in args.seeds.split(",")]:
        for dataset in args.sets.split(","):
            for arm in args.arms.split(","):
                path = ARMS_DIR / f"{dataset}-{arm}-seed{seed}.json"
                if path.exists():
                    continue
                record = run_arm(dataset, arm, seed, args.size)
                if record is None:
                    record = {"set": dataset, "arm": arm, "seed": seed, "skipped": "head only"}
                path.write_text(json.dumps(record, indent=1) + "\n")
                print(json.dumps({k: v for k, v in record.items() if k != "shift"}), flush=True)
    print(machine())
    print(render([json.loads(f.read_text()) for f in sorted(ARMS_DIR.glob("*.json"))]))
    return 0


def render(runs: list[dict]) -> str:
    """Per set and arm: validation accuracy and shift-suite mean, mean ± sd over seeds, and
    the paired difference from ``shipped``."""
    lines = [
        "| set | arm | n | clean val. accuracy | shift-suite mean | Δ clean vs shipped "
        "(paired) | Δ shift vs shipped (paired) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in SETS:
        base = {r["seed"]: r for r in runs if r["set"] == dataset and r["arm"] == "shipped"}
        for arm in ARMS:
            rs = [r for r in runs if r["set"] == dataset and r["arm"] == arm and "skipped" not in r]
            if not rs:
                continue
            paired = [r for r in rs if r["seed"] in base]
            cells = [
                _stat([r["val_accuracy"] for r in rs]),
                _stat([r["shift_mean"] for r in rs]),
                _stat([r["val_accuracy"] - base[r["seed"]]["val_accuracy"] for r in paired]),
                _stat([r["shift_mean"] - base[r["seed"]]["shift_mean"] for r in paired]),
            ]
            lines.append(f"| {dataset} | {arm} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stat(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
