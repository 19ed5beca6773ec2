"""Does GAN augmentation help on top of a pretrained backbone? Fashion-MNIST, 3 paired seeds.

For each training size (100 and 500 images per class, drawn by the seed) and seed, one
class-conditional GAN (``tfxfer.generative``, default settings: 2,000 steps, width 16, 28 px)
is trained on that seed's training split only, its KID measured against the validation split,
then the ``small_different`` recipe (ImageNet MobileNetV2 at 32 px: a 1-epoch head warm-up,
then blocks 4-5 at 1e-4 cosine; 3 epochs at 100 per class, 1 at 500; one cached feature view
for the warm-up) trains six ways on the same split and seed:

1. ``noaug``: real images, no augmentation (``augment=none``);
2. ``classic``: real images, the recipe's classic augmentation (``light``: horizontal flip);
3. ``syn0.5``/``syn1``/``syn2``: (2) plus ``r x N`` generated images per epoch
   (``augment.synthetic_ratio=r``, the same generator);
4. ``cas``: generated images only (as many as the real split, same classes), classic
   augmentation: the Classification Accuracy Score (Ravuri & Vinyals, 2019).

Every arm is evaluated on the same real validation images (300 per class of Fashion-MNIST's test
split). Epochs are fixed, so an arm with ``r x N`` more images also takes ``(1 + r)`` times the
optimiser steps; ``classic_long`` (classic at 3x the partial phase's epochs) separates "more
steps" from "more (synthetic) images" for ``syn2``.

Run: ``python bench/generative.py [--seeds 0,1,2] [--sizes 100,500] [--jobs 2]`` (needs the
kit; under an hour on 2 CPU cores). Each GAN trains alone (its time is reported); the
classifier arms of a seed then run ``--jobs`` at a time (a 32 px fine-tune keeps about one core
busy), so their seconds are not comparable to a lone run. Writes ``bench/results/generative.json``
after every arm, copies the seed-0 sample grids to ``bench/generative_samples_<size>.png``, and
prints the table that bench/README.md quotes. ``--table`` reprints it from the saved results.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import RESULTS, emit, machine, run_arm, save, table

BENCH = Path(__file__).resolve().parent
SIZES = (100, 500)
ARMS = ("noaug", "classic", "syn0.5", "syn1", "syn2", "cas", "classic_long")
DEFAULT_ARMS = ARMS[:-1]  # classic_long: an extra, outside the hour (--arms classic_long)
PARTIAL_EPOCHS = {100: 3, 500: 1}
VAL_PER_CLASS = 300
IMAGE_SIZE = 32


def base_config(size: int, seed: int, out: str):
    from tfxfer.recipes import small_different

    cfg = small_different.CONFIG.replace(
        train_per_class=size,
        val_per_class=VAL_PER_CLASS,
        image_size=IMAGE_SIZE,
        seed=seed,
        output=out,
        verbose=0,
        overwrite=True,
        feature_views=1,
    )
    head, partial = cfg.phases
    return cfg.replace(
        phases=[
            {**head.__dict__, "epochs": 1},
            {**partial.__dict__, "epochs": PARTIAL_EPOCHS[size]},
        ]
    )


def gan_arm(size: int, seed: int, folder: str) -> dict:
    from tfxfer.generative import synthetic
    from tfxfer.train import loop

    cfg = base_config(size, seed, folder)
    data = loop.load_data(cfg, IMAGE_SIZE)
    meta = synthetic.train_generator(cfg, data, folder, IMAGE_SIZE)
    return {
        k: meta[k]
        for k in (
            "seconds",
            "kid",
            "kid_std",
            "kid_real",
            "kid_real_std",
            "kid_images",
            "kid_features",
            "steps",
            "image_size",
        )
    }


def classifier_arm(size: int, seed: int, arm: str, generator: str) -> dict:
    import dataclasses

    import numpy as np

    from tfxfer.data.sources import Split
    from tfxfer.generative import sample
    from tfxfer.train import loop

    with tempfile.TemporaryDirectory() as out:
        cfg = base_config(size, seed, out)
        data = None
        if arm == "noaug":
            cfg = cfg.replace(augment="none")
        elif arm.startswith("syn"):
            cfg = cfg.replace(augment={"synthetic_ratio": float(arm[3:]), "generator": generator})
        elif arm == "classic_long":
            head, partial = cfg.phases
            cfg = cfg.replace(
                phases=[head.__dict__, {**partial.__dict__, "epochs": 3 * partial.epochs}]
            )
        elif arm == "cas":
            data = loop.load_data(cfg, IMAGE_SIZE)
            labels = np.asarray(data.train.labels)
            images = sample.synthesize(
                sample.load(generator), labels, seed=seed, shape=data.train.images.shape[1:]
            )
            data = dataclasses.replace(data, train=Split(images, labels), generated=len(labels))
        result = loop.run(cfg, data=data)
        epochs = sum(len(p["history"]["loss"]) for p in result.history)
        return {
            "val_accuracy": round(result.metrics["val_accuracy"], 4),
            "seconds": round(result.seconds, 1),
            "epochs": epochs,
            "train_images": len(result.data.train),
            "generated": result.data.generated,
        }


def mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def paired(runs: dict, seeds: list[str], arm: str, base: str) -> str:
    """Mean ± sd over seeds of ``arm - base`` in accuracy points, on the same seeds."""
    diffs = [
        100 * (runs[s][arm]["val_accuracy"] - runs[s][base]["val_accuracy"])
        for s in seeds
        if arm in runs[s] and base in runs[s]
    ]
    if not diffs:
        return ""
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return f"{statistics.mean(diffs):+.1f} ± {sd:.1f}"


def report(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", ""]
    rows = []
    for size in results["sizes"]:
        runs = results["runs"].get(str(size), {})
        seeds = sorted(runs)
        row = {"size": f"{size}/class", "seeds": len(seeds)}
        for arm in ARMS:
            row[arm] = mean_sd([runs[s][arm]["val_accuracy"] for s in seeds if arm in runs[s]])
            for base in ("classic", "noaug", "classic_long"):
                row[f"{arm}-{base}"] = paired(runs, seeds, arm, base)
        gans = [runs[s]["gan"] for s in seeds if "gan" in runs[s]]
        if gans:
            kid = [1000 * g["kid"] for g in gans]
            real = [1000 * g["kid_real"] for g in gans]
            row["kid"] = f"{statistics.mean(kid):.2f} ({', '.join(f'{k:.2f}' for k in kid)})"
            row["kid_real"] = f"{statistics.mean(real):.3f}"
            row["gan_s"] = ", ".join(f"{g['seconds']:.0f}" for g in gans)
        row["arm_s"] = ", ".join(
            f"{arm} {statistics.mean(runs[s][arm]['seconds'] for s in seeds if arm in runs[s]):.0f}"
            for arm in ARMS
            if any(arm in runs[s] for s in seeds)
        )
        rows.append(row)
    synthetic = [a for a in ARMS if a.startswith("syn")]
    lines.append("Validation accuracy, mean ± sd over seeds:")
    lines.append(table(rows, [("size", "train"), ("seeds", "seeds")] + [(a, a) for a in ARMS]))
    lines += ["", "Paired differences (accuracy points, mean ± sd over the same seeds):"]
    lines.append(
        table(
            rows,
            [("size", "train")]
            + [(f"{a}-classic", f"{a} − classic") for a in ARMS if a != "classic"]
            + [(f"{a}-noaug", f"{a} − noaug") for a in synthetic]
            + [("syn2-classic_long", "syn2 − classic_long (equal steps)")],
        )
    )
    lines += [
        "",
        "Generator: KID x 1000 against validation features (per seed), the same for "
        "real training images, training seconds per seed:",
    ]
    lines.append(
        table(
            rows,
            [
                ("size", "train"),
                ("kid", "KID x1000 generated"),
                ("kid_real", "KID x1000 real train"),
                ("gan_s", "GAN seconds"),
            ],
        )
    )
    lines += ["", "Mean seconds per arm (two arms at a time):"]
    lines += [f"- {r['size']}: {r['arm_s']}" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS))
    p.add_argument("--jobs", type=int, default=2, help="classifier arms run at once")
    p.add_argument("--table", action="store_true", help="reprint the saved table")
    p.add_argument("--arm", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--generator", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.arm == "gan":
        emit(gan_arm(args.size, args.seed, args.generator))
        return
    if args.arm:
        emit(classifier_arm(args.size, args.seed, args.arm, args.generator))
        return
    path = RESULTS / "generative.json"
    if args.table:
        print(report(json.loads(path.read_text())))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    results.update(machine=machine(), sizes=sorted(set(results.get("sizes", [])) | set(sizes)))
    gens = BENCH / "runs" / "generative"
    lock = threading.Lock()
    t0 = time.perf_counter()
    for size in sizes:
        for seed in (int(s) for s in args.seeds.split(",")):
            runs = results["runs"].setdefault(str(size), {}).setdefault(str(seed), {})
            folder = gens / f"{size}_{seed}"
            runs["gan"] = run_arm(
                __file__,
                [
                    "--arm",
                    "gan",
                    "--size",
                    str(size),
                    "--seed",
                    str(seed),
                    "--generator",
                    str(folder),
                ],
            )
            print(f"{size}/class seed {seed} gan: {runs['gan']}", flush=True)
            if seed == 0:
                shutil.copy(folder / "samples.png", BENCH / f"generative_samples_{size}.png")
            save("generative", results)

            def one(arm, size=size, seed=seed, folder=folder, runs=runs):
                result = run_arm(
                    __file__,
                    [
                        "--arm",
                        arm,
                        "--size",
                        str(size),
                        "--seed",
                        str(seed),
                        "--generator",
                        str(folder),
                    ],
                )
                with lock:  # the other arm's thread saves the same dict
                    runs[arm] = result
                    print(f"{size}/class seed {seed} {arm}: {result}", flush=True)
                    save("generative", results)

            with ThreadPoolExecutor(args.jobs) as pool:
                list(pool.map(one, args.arms.split(",")))
    results["wall_seconds_last_invocation"] = round(time.perf_counter() - t0, 1)
    save("generative", results)
    print(report(results))
    print(f"\nthis invocation: {results['wall_seconds_last_invocation'] / 60:.1f} min")


if __name__ == "__main__":
    main()
