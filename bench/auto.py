"""Calibrating ``recipes.auto``: the four recipes at one budget, the signals, leave-one-out choice.

For each kit dataset below, in separate processes:

- the signals of :func:`tfxfer.auto.plan.measure` with ImageNet weights (the plan, timed) and
  LogME with random-init weights (``weights=None``, same backbone and probe);
- each of the four scenario recipes at a fixed, equal budget of ``E`` epochs over the training
  data: a one-phase recipe trains ``E`` epochs, a two-phase recipe 1 warm-up epoch of the head
  then ``E - 1`` epochs of its second phase; everything else is the recipe's default
  (MobileNetV2 ImageNet, its augmentation, optimiser, rates, frozen blocks);
- with ``--lr-find``: the recipe again with every phase at ``lr=auto`` (the finder), for the
  datasets of :data:`LR_FIND`; and LogME with ImageNet and random-init weights at 224 px, the
  backbone's own size, next to the run size's.

``--table`` then fits the thresholds (``large_per_class``, ``similar_distance``) to minimise the
summed regret over the datasets (equal regrets: the cheaper choices), and reports every dataset
judged by thresholds fitted on the other five (leave-one-out): its LogME, the recipe chosen, the
best recipe and the regret (best accuracy minus chosen), and the plan's seconds against the chosen
run's.

Run (about 50 minutes on 2 CPU cores; needs the kit; resumable, each arm's JSON is kept in
``bench/results/auto/``): ``python bench/auto.py``, then ``python bench/auto.py --lr-find``,
then ``python bench/auto.py --table``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import RESULTS, emit, machine, run_arm, table

RECIPES = ("small_similar", "small_different", "large_similar", "large_different")
SMALL_IMAGES = dict(image_size=32, val_per_class=200)  # 28 px sources: a 2-core size
DATASETS = {
    "hymenoptera": (dict(data="hymenoptera"), 6),
    "cats_and_dogs_filtered": (dict(data="cats_and_dogs_filtered", image_size=112), 2),
    "fashion_mnist_100": (dict(data="fashion_mnist", train_per_class=100, **SMALL_IMAGES), 6),
    "fashion_mnist_1000": (dict(data="fashion_mnist", train_per_class=1000, **SMALL_IMAGES), 3),
    "fashion_mnist_full": (dict(data="fashion_mnist", **SMALL_IMAGES), 1),
    "mnist_m": (dict(data="mnist_m", **SMALL_IMAGES), 3),
}
LR_FIND = {"hymenoptera": "small_similar", "fashion_mnist_1000": "large_different"}
LR_FIND_SEEDS = {"hymenoptera": (1, 2)}  # 153 validation images: one image is 0.65 points
OUT = RESULTS / "auto"


def budget(cfg, epochs: int):
    """Every recipe at ``epochs`` passes: 1 head warm-up epoch in two-phase recipes."""
    if len(cfg.phases) == 1:
        phases = (dataclasses.replace(cfg.phases[0], epochs=epochs),)
    else:
        phases = (
            dataclasses.replace(cfg.phases[0], epochs=1),
            dataclasses.replace(cfg.phases[1], epochs=max(1, epochs - 1)),
        )
    return cfg.replace(phases=phases)


def arm_signals(name: str, weights: str, size: int | None) -> dict:
    from tfxfer.auto import plan as auto
    from tfxfer.config import Config
    from tfxfer.models import backbones
    from tfxfer.train import loop

    keys, _ = DATASETS[name]
    keys = {**keys, "image_size": size} if size else keys
    cfg = Config(**keys, weights=None if weights == "none" else weights)
    size = backbones.resolve_size(cfg.backbone, cfg.image_size)
    t0 = time.perf_counter()
    data = loop.load_data(cfg, size)
    load_s = time.perf_counter() - t0
    net = None
    if cfg.weights is None:
        net = random_backbone(cfg, data, size)
    s = auto.measure(cfg, data, size, net)
    return {**dataclasses.asdict(s), "load_seconds": round(load_s, 2)}


def random_backbone(cfg, data, size: int):
    """The random-init baseline: seeded weights, and BatchNorm statistics set from one
    training-mode pass over 64 training images (momentum 0), as training from scratch would
    have them. With Keras's init statistics (mean 0, variance 1) the activations saturate and
    the pooled features are constant: measured, LogME then only sees the class balance."""
    import keras
    import tensorflow as tf

    from tfxfer.auto import bn_distance
    from tfxfer.data import pipeline
    from tfxfer.models import backbones
    from tfxfer.models.model import Preprocess

    keras.utils.set_random_seed(cfg.seed)
    net = backbones.build(cfg.backbone, size, None)
    rows = np.random.default_rng(cfg.seed).permutation(len(data.train))[:64]
    x = Preprocess(backbones.get(cfg.backbone).preprocess)(
        pipeline.to_model_input(tf.constant(data.train.images[rows]), size)
    )
    layers = bn_distance.bn_layers(net)
    for layer in layers:
        layer.momentum = 0.0
    net(x, training=True)
    for layer in layers:
        layer.momentum = 0.99
    return net


def arm_recipe(name: str, recipe: str, lr_auto: bool, seed: int = 0) -> dict:
    import importlib

    from tfxfer.auto import plan as auto
    from tfxfer.config import Config

    keys, epochs = DATASETS[name]
    module = importlib.import_module(f"tfxfer.recipes.{recipe}")
    with tempfile.TemporaryDirectory() as tmp:
        user = Config(**keys, output=tmp, verbose=0, seed=seed)
        if lr_auto:
            user = user.replace(auto=dataclasses.replace(user.auto, lr_find=True))
        cfg = budget(auto.chosen_config(user, module.CONFIG), epochs)
        t0 = time.perf_counter()
        result = module.run(cfg)
        wall = time.perf_counter() - t0
        lrs = [h.get("lr_found") for h in result.history]
    return {
        "val_accuracy": result.metrics["val_accuracy"],
        "seconds": round(result.seconds, 1),
        "wall_seconds": round(wall, 1),
        "epochs": epochs,
        "lr_found": lrs,
    }


def measure_all(lr_find: bool) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    jobs = (
        [
            (n, "lr_auto", ["--arm", "recipe", "--dataset", n, "--recipe", r, "--lr-auto"])
            for n, r in LR_FIND.items()
        ]
        + [
            (
                n,
                f"signals224_{w}",
                ["--arm", "signals", "--dataset", n, "--weights", w, "--size", "224"],
            )
            for n in DATASETS
            for w in ("imagenet", "none")
        ]
        + [
            (
                n,
                f"{tag}_seed{seed}",
                [
                    "--arm",
                    "recipe",
                    "--dataset",
                    n,
                    "--recipe",
                    LR_FIND[n],
                    "--seed",
                    str(seed),
                    *extra,
                ],
            )
            for n, seeds in LR_FIND_SEEDS.items()
            for seed in seeds
            for tag, extra in ((LR_FIND[n], []), ("lr_auto", ["--lr-auto"]))
        ]
        if lr_find
        else [
            (n, f"signals_{w}", ["--arm", "signals", "--dataset", n, "--weights", w])
            for n in DATASETS
            for w in ("imagenet", "none")
        ]
        + [
            (n, r, ["--arm", "recipe", "--dataset", n, "--recipe", r])
            for n in DATASETS
            for r in RECIPES
        ]
    )
    for name, tag, args in jobs:
        path = OUT / f"{name}.{tag}.json"
        if path.exists():
            continue
        result = run_arm(__file__, args)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{name} {tag}: {json.dumps(result)}", flush=True)


def load() -> dict:
    rows = {}
    for name in DATASETS:
        arms = {
            p.name[len(name) + 1 : -5]: json.loads(p.read_text())
            for p in OUT.glob(f"{name}.*.json")
        }
        rows[name] = arms
    return rows


def choose(sig: dict, large: float, similar: float) -> str:
    """The recipe the shipped rule (:func:`tfxfer.auto.plan.decide`) picks at these thresholds."""
    from tfxfer.auto import plan as auto
    from tfxfer.config import Auto

    signals = auto.Signals(**{f.name: sig[f.name] for f in dataclasses.fields(auto.Signals)})
    rules = Auto(large_per_class=large, similar_distance=similar)
    return auto.decide(signals, rules, "MobileNetV2")[0]


def regret(arms: dict, recipe: str) -> float:
    best = max(arms[r]["val_accuracy"] for r in RECIPES)
    return best - arms[recipe]["val_accuracy"]


def _cuts(values: list[float]) -> list[float]:
    """Candidate thresholds: geometric midpoints between neighbours, and beyond both ends."""
    v = sorted(set(values))
    return [v[0] / 2] + [(a * b) ** 0.5 for a, b in zip(v, v[1:])] + [v[-1] * 2]


def fit(rows: dict, names: list[str]) -> tuple[float, float]:
    """Thresholds minimising the summed regret over ``names``; among equal regrets, the ones
    whose choices cost the least run time (an accuracy tie goes to the cheaper recipe), then
    the first candidate (the smaller threshold)."""
    sig = {n: rows[n]["signals_imagenet"] for n in names}
    best, best_key = None, None
    for large, similar in itertools.product(
        _cuts([s["per_class"] for s in sig.values()]), _cuts([s["distance"] for s in sig.values()])
    ):
        chosen = {n: choose(sig[n], large, similar) for n in names}
        key = (
            round(sum(regret(rows[n], chosen[n]) for n in names), 6),
            sum(rows[n][chosen[n]]["seconds"] for n in names),
        )
        if best_key is None or key < best_key:
            best, best_key = (large, similar), key
    return best


def report() -> int:
    rows = load()
    missing = [
        n
        for n, arms in rows.items()
        if not all(r in arms for r in RECIPES + ("signals_imagenet", "signals_none"))
    ]
    if missing:
        print(f"missing arms for {missing}: run python bench/auto.py first", file=sys.stderr)
        return 1
    names = list(DATASETS)
    table_rows = []
    for n in names:
        arms, sig = rows[n], rows[n]["signals_imagenet"]
        large, similar = fit(rows, [m for m in names if m != n])
        chosen = choose(sig, large, similar)
        best = max(RECIPES, key=lambda r: arms[r]["val_accuracy"])
        row = {
            "dataset": n,
            "per_class": sig["per_class"],
            "distance": sig["distance"],
            "logme": sig["logme"],
            "logme_random": arms["signals_none"]["logme"],
            "thresholds": f"{large:.0f} / {similar:.3f}",
            "chosen": chosen,
            "best": best,
            "regret_pts": f"{100 * regret(arms, chosen):.2f}",
            "plan_s": sig["seconds"],
            "run_s": arms[chosen]["seconds"],
            "plan_pct": round(100 * sig["seconds"] / arms[chosen]["seconds"], 1),
        }
        row.update({r: arms[r]["val_accuracy"] for r in RECIPES})
        if "signals224_imagenet" in arms and "signals224_none" in arms:
            row["logme224"] = arms["signals224_imagenet"]["logme"]
            row["logme224_random"] = arms["signals224_none"]["logme"]
        table_rows.append(row)
    large, similar = fit(rows, names)
    print(f"auto calibration ({machine()})\n")
    print(
        table(
            table_rows,
            [
                ("dataset", "dataset"),
                ("logme", "LogME ImageNet (run size)"),
                ("logme_random", "LogME random init (run size)"),
                ("logme224", "LogME ImageNet (224 px)"),
                ("logme224_random", "LogME random init (224 px)"),
            ],
        )
        + "\n"
    )
    print(
        table(
            table_rows,
            [
                ("dataset", "dataset"),
                ("per_class", "img/class"),
                ("distance", "BN distance"),
                ("logme", "LogME"),
                *[(r, r) for r in RECIPES],
                ("thresholds", "LOO thresholds (size / distance)"),
                ("chosen", "chosen"),
                ("best", "best"),
                ("regret_pts", "regret (pts)"),
                ("plan_s", "plan s"),
                ("run_s", "chosen run s"),
                ("plan_pct", "plan % of run"),
            ],
        )
    )
    print(
        f"\nthresholds fitted on all six: large_per_class={large:.0f}, "
        f"similar_distance={similar:.3f}"
    )
    lr_rows = []
    for n, recipe in LR_FIND.items():
        for seed in (0,) + LR_FIND_SEEDS.get(n, ()):
            suffix = f"_seed{seed}" if seed else ""
            if f"lr_auto{suffix}" not in rows[n] or f"{recipe}{suffix}" not in rows[n]:
                continue
            a, h = rows[n][f"lr_auto{suffix}"], rows[n][f"{recipe}{suffix}"]
            lr_rows.append(
                {
                    "dataset": n,
                    "recipe": recipe,
                    "seed": seed,
                    "hand": h["val_accuracy"],
                    "found": a["val_accuracy"],
                    "delta_pts": f"{100 * (a['val_accuracy'] - h['val_accuracy']):+.2f}",
                    "lr": ", ".join(f"{x:.2g}" for x in a["lr_found"] if x),
                }
            )
    if lr_rows:
        print("\nLR finder vs hand-set rate, same budget\n")
        print(
            table(
                lr_rows,
                [
                    ("dataset", "dataset"),
                    ("recipe", "recipe"),
                    ("seed", "seed"),
                    ("hand", "hand-set rate"),
                    ("lr", "rate found"),
                    ("found", "found rate"),
                    ("delta_pts", "found - hand (pts)"),
                ],
            )
        )
    (RESULTS / "auto.json").write_text(json.dumps({"rows": table_rows, "lr": lr_rows}, indent=2))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arm", choices=("signals", "recipe"))
    p.add_argument("--dataset", choices=tuple(DATASETS))
    p.add_argument("--recipe", choices=RECIPES)
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--size", type=int, help="measure the signals at this input size instead")
    p.add_argument("--lr-auto", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lr-find",
        action="store_true",
        help="run the LR-finder arms and LogME at 224 px (after the calibration)",
    )
    p.add_argument("--table", action="store_true", help="print the tables from saved arms")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.arm == "signals":
        emit(arm_signals(args.dataset, args.weights, args.size))
    elif args.arm == "recipe":
        emit(arm_recipe(args.dataset, args.recipe, args.lr_auto, args.seed))
    elif args.table:
        return report()
    else:
        measure_all(args.lr_find)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
