"""Fine-tuning methods compared on the kit's data: plain fine-tuning, discriminative learning
rates, gradual unfreezing and L2-SP; then multi-task heads against single-task models.

One command prints every table and writes ``bench/results/methods.json``::

    eval "$(../shared/kit/prepare.sh)"; .venv/bin/python bench/methods.py

Protocol (every arm goes through ``tfxfer.train.loop.run``, the recipes' own core):

- MobileNetV2 with its ImageNet weights (the kit's 224 px checkpoint, which Keras loads for any
  size not in its list) at ``--size`` px (default 112, to fit the 2-core machine), augmentation
  ``light``, batch 32, Adam, BatchNorm in inference mode.
- Every arm: the same head warm-up on cached features (3 epochs, lr 1e-3), then a fine-tuning
  phase of the same length and peak rate (cosine schedule) that differs only in the method:

  - ``plain``: the whole backbone at ``lr``;
  - ``discriminative``: ``lr_decay=0.5``, block i at ``lr * 0.5 ** (6 - i)``, head at ``lr``;
  - ``gradual``: ``trainable="gradual"``, one more block every epoch from the top down;
  - ``l2sp``: the whole backbone, ``regularization="l2sp"``, its alpha 0.1, beta 0.01 (the paper's).

- ``small_different``: Fashion-MNIST, 100 training images per class (drawn with the seed),
  8 fine-tuning epochs at lr 1e-4, accuracy on the 10,000 test images (500 of them, 50 per
  class, are the validation set monitored during training; nothing is selected on them).
- ``large_similar``: cats_and_dogs_filtered (2,000 train / 1,000 validation), 5 fine-tuning
  epochs at lr 1e-5 (the recipe's rate), accuracy on the 1,000 validation images.
- Multi-task: Fashion-MNIST as above, the ``small_different`` scope (blocks 4-5 and the heads
  train), one model with ``fine`` (10 classes) and ``coarse`` (tops / bottoms / footwear / bags,
  :data:`tfxfer.methods.tasks.FASHION_MNIST_COARSE`) heads against a ``fine``-only and a
  ``coarse``-only model, same phases and epochs.

Within a seed every arm shares the data subset and the initial weights; the seed changes both.
Each (dataset, seed) group runs in its own process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness

METHODS = ("plain", "discriminative", "gradual", "l2sp")
SETTINGS = {  # dataset, fine-tuning epochs, fine-tuning lr, val images per class in training
    "small_different": ("fashion_mnist", 8, 1e-4, 50),
    "large_similar": ("cats_and_dogs_filtered", 5, 1e-5, None),
}
MULTI = ("multi", "fine_only", "coarse_only")


def _config(scenario: str, method: str, seed: int, size: int, out: str):
    from tfxfer.config import Config, Phase, Task
    from tfxfer.methods.tasks import FASHION_MNIST_COARSE

    data, epochs, lr, val_per_class = SETTINGS[scenario]
    extra, fine = {}, dict(trainable="all", lr=lr)
    if method == "discriminative":
        fine["lr_decay"] = 0.5
    elif method == "gradual":
        fine.update(trainable="gradual", unfreeze_every=1)
    elif method == "l2sp":
        extra = dict(regularization=dict(method="l2sp", alpha=0.1, beta=0.01))
    elif method in MULTI:
        fine["trainable"] = "partial"
        tasks = {"multi": ("fine", "coarse"), "fine_only": ("fine",), "coarse_only": ("coarse",)}[
            method
        ]
        extra = dict(
            freeze_blocks=3,
            tasks=tuple(
                Task(t, groups=FASHION_MNIST_COARSE if t == "coarse" else {}) for t in tasks
            ),
        )
    return Config(
        recipe=f"bench_{scenario}_{method}",
        data=data,
        backbone="MobileNetV2",
        weights="imagenet",
        image_size=size,
        train_per_class=100 if data == "fashion_mnist" else None,
        val_per_class=val_per_class,
        augment="light",
        batch_size=32,
        seed=seed,
        verbose=0,
        output=os.path.join(out, method),
        overwrite=True,
        phases=(
            Phase(name="warmup", trainable="head", epochs=3, lr=1e-3),
            Phase(name="finetune", epochs=epochs, schedule="cosine", **fine),
        ),
        **extra,
    )


def _test_accuracy(result, test, specs) -> dict:
    """Accuracy of every head on the whole ``test`` split (Fashion-MNIST's 10,000 images)."""
    from tfxfer.data import pipeline
    from tfxfer.methods import tasks as tasks_lib

    ds = pipeline.image_dataset(test, 10, result.model.image_size, 64)
    outputs = result.model.model.predict(ds.map(lambda x, y: x), verbose=0)
    return {
        name: m["val_accuracy"]
        for name, m in tasks_lib.metrics(outputs, test.labels, specs).items()
    }


def _group(scenario: str, seed: int, size: int, methods: tuple[str, ...]) -> dict:
    import keras

    from tfxfer.data import sources as data_lib
    from tfxfer.methods import tasks as tasks_lib
    from tfxfer.train import loop as train

    test, names = None, []
    if SETTINGS[scenario][0] == "fashion_mnist":
        fashion = data_lib.load("fashion_mnist", size, train_per_class=1)
        test, names = fashion.val, fashion.class_names
    runs = {}
    with tempfile.TemporaryDirectory() as out:
        for method in methods:
            keras.backend.clear_session()
            cfg = _config(scenario, method, seed, size, out)
            result = train.run(cfg)
            specs = tasks_lib.resolve(cfg.tasks, names)
            if test is not None:
                acc = _test_accuracy(result, test, specs)
            else:
                acc = {specs[0].name: result.metrics["val_accuracy"]}
            runs[method] = {"accuracy": acc, "seconds": round(result.seconds, 1)}
            print(method, runs[method], flush=True)
    return {"scenario": scenario, "seed": seed, "runs": runs}


def _stats(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {sd:.4f}"


def _method_rows(groups: list[dict], scenario: str) -> list[dict]:
    mine = [g for g in groups if g["scenario"] == scenario]
    rows = []
    for method in METHODS:
        accs = [next(iter(g["runs"][method]["accuracy"].values())) for g in mine]
        base = [next(iter(g["runs"]["plain"]["accuracy"].values())) for g in mine]
        rows.append(
            {
                "method": method,
                "accuracy": _stats(accs),
                "min-max": f"{min(accs):.4f}-{max(accs):.4f}",
                "vs plain (paired)": _stats([a - b for a, b in zip(accs, base)]),
                "seconds": round(statistics.fmean(g["runs"][method]["seconds"] for g in mine)),
            }
        )
    return rows


def _multi_rows(groups: list[dict]) -> list[dict]:
    mine = [g for g in groups if g["scenario"] == "multitask"]
    rows = []
    for task, single in (("fine", "fine_only"), ("coarse", "coarse_only")):
        multi = [g["runs"]["multi"]["accuracy"][task] for g in mine]
        alone = [g["runs"][single]["accuracy"][task] for g in mine]
        rows.append(
            {
                "head": task,
                "multi-task model": _stats(multi),
                "single-task model": _stats(alone),
                "multi - single (paired)": _stats([a - b for a, b in zip(multi, alone)]),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--size", type=int, default=112)
    p.add_argument(
        "--scenarios", nargs="+", default=["small_different", "large_similar", "multitask"]
    )
    p.add_argument("--group", nargs=2, metavar=("SCENARIO", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.group:
        scenario, seed = args.group[0], int(args.group[1])
        if scenario == "multitask":
            result = _group("small_different", seed, args.size, MULTI)
            result["scenario"] = "multitask"
        else:
            result = _group(scenario, seed, args.size, METHODS)
        _harness.emit(result)
        return
    groups = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            groups.append(
                _harness.run_arm(
                    __file__, ["--group", scenario, str(seed), "--size", str(args.size)]
                )
            )
            print(f"done {scenario} seed {seed}: {groups[-1]['runs']}", flush=True)
    print(
        f"\nmachine: {_harness.machine()}; MobileNetV2 ImageNet at {args.size} px; "
        f"seeds {args.seeds}; mean ± sample standard deviation over seeds"
    )
    cols = [
        ("method", "method"),
        ("accuracy", "accuracy"),
        ("min-max", "min-max"),
        ("vs plain (paired)", "vs plain (paired)"),
        ("seconds", "seconds"),
    ]
    for scenario in ("small_different", "large_similar"):
        if scenario in args.scenarios:
            print(f"\n### {scenario}\n\n" + _harness.table(_method_rows(groups, scenario), cols))
    if "multitask" in args.scenarios:
        cols = [
            (k, k)
            for k in ("head", "multi-task model", "single-task model", "multi - single (paired)")
        ]
        print(
            "\n### multi-task (Fashion-MNIST, 100 per class)\n\n"
            + _harness.table(_multi_rows(groups), cols)
        )
    path = _harness.save(
        "methods",
        {"machine": _harness.machine(), "size": args.size, "seeds": args.seeds, "groups": groups},
    )
    print(f"\nraw results: {path}")


if __name__ == "__main__":
    main()
