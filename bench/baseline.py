"""The recipe lines every other benchmark depends on, measured for one source tree, and compared.

Four lines, each in its own process (``_harness.run_arm``):

- ``small_similar`` on hymenoptera and on cats_and_dogs_filtered (recipe defaults: cached
  features, 4 views, 15 head epochs), validation accuracy;
- ``large_similar`` on cats_and_dogs_filtered (5 cached warm-up epochs, then 1 fine-tuning
  epoch instead of 5, as in bench/README.md's tutorial comparison);
- the ``plain`` row of ``bench/methods.py``'s ``small_different`` table (Fashion-MNIST, 100 per
  class, 112 px, 3 + 8 epochs, seeds 0 1 2), accuracy on the 10,000 test images;
- ``small_similar`` on hymenoptera with ``augment=standard`` (flip, rotation, zoom, translation,
  contrast), seeds 0 1 2: the preset with the most random layers, so the one where layers
  sharing a seed changes most.

Run it once per tree with a label, then print both side by side::

    eval "$(../shared/kit/prepare.sh)"
    PYTHONPATH=/path/to/old/checkout .venv/bin/python bench/baseline.py --label before
    .venv/bin/python bench/baseline.py --label after
    .venv/bin/python bench/baseline.py --compare before after

``PYTHONPATH`` decides which ``tfxfer`` the arms import (it takes precedence over the editable
install); each arm records the file it imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness

LINES = (
    "hymenoptera_small_similar",
    "cats_small_similar",
    "cats_large_similar",
    "fashion_small_different_plain",
    "hymenoptera_small_similar_standard",
)
SEEDS = (0, 1, 2)


def _recipe(recipe: str, data: str, finetune_epochs: int | None, out: str) -> dict:
    import importlib

    module = importlib.import_module(f"tfxfer.recipes.{recipe}")
    cfg = module.CONFIG.replace(data=data, output=out, overwrite=True, verbose=0)
    if finetune_epochs is not None:
        cfg = cfg.override([f"phases.{len(cfg.phases) - 1}.epochs={finetune_epochs}"])
    t0 = time.perf_counter()
    result = module.run(cfg)
    return {"accuracy": [result.metrics["val_accuracy"]], "seconds": [time.perf_counter() - t0]}


def _fashion_plain(out: str) -> dict:
    import keras
    import methods

    from tfxfer.data import sources as data_lib
    from tfxfer.methods import tasks as tasks_lib
    from tfxfer.train import loop as train

    fashion = data_lib.load("fashion_mnist", 112, train_per_class=1)
    accs, secs = [], []
    for seed in SEEDS:
        keras.backend.clear_session()
        cfg = methods._config("small_different", "plain", seed, 112, out)
        t0 = time.perf_counter()
        result = train.run(cfg)
        secs.append(time.perf_counter() - t0)
        specs = tasks_lib.resolve(cfg.tasks, fashion.class_names)
        accs.append(next(iter(methods._test_accuracy(result, fashion.val, specs).values())))
    return {"accuracy": accs, "seconds": secs}


def _standard_seeds(out: str) -> dict:
    from tfxfer.recipes import small_similar

    accs, secs = [], []
    for seed in SEEDS:
        cfg = small_similar.CONFIG.replace(
            augment="standard", seed=seed, overwrite=True, verbose=0, output=f"{out}_{seed}"
        )
        t0 = time.perf_counter()
        accs.append(small_similar.run(cfg).metrics["val_accuracy"])
        secs.append(time.perf_counter() - t0)
    return {"accuracy": accs, "seconds": secs}


def _arm(line: str, out: str) -> dict:
    if line == "hymenoptera_small_similar_standard":
        return _standard_seeds(out)
    if line == "hymenoptera_small_similar":
        return _recipe("small_similar", "hymenoptera", None, out)
    if line == "cats_small_similar":
        return _recipe("small_similar", "cats_and_dogs_filtered", None, out)
    if line == "cats_large_similar":
        return _recipe("large_similar", "cats_and_dogs_filtered", 1, out)
    return _fashion_plain(out)


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", help="name of this measurement (e.g. before, after)")
    p.add_argument("--lines", nargs="+", choices=LINES, default=list(LINES))
    p.add_argument("--arm", choices=LINES, help=argparse.SUPPRESS)
    p.add_argument("--out", default="runs/bench_baseline")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="print two labels' tables")
    args = p.parse_args()
    if args.arm:
        import tfxfer

        res = _arm(args.arm, os.path.join(args.out, args.arm))
        _harness.emit({"line": args.arm, "tfxfer": tfxfer.__file__, **res})
        return
    if args.compare:
        old, new = (
            json.loads((_harness.RESULTS / f"baseline_{x}.json").read_text()) for x in args.compare
        )
        rows = []
        for line in LINES:
            a = next((r for r in old["rows"] if r["line"] == line), None)
            b = next((r for r in new["rows"] if r["line"] == line), None)
            if a and b:
                diff = [y - x for x, y in zip(a["accuracy"], b["accuracy"])]
                rows.append(
                    {
                        "line": line,
                        args.compare[0]: _cell(a["accuracy"]),
                        args.compare[1]: _cell(b["accuracy"]),
                        "difference": _cell(diff),
                        f"s {args.compare[0]}": round(statistics.fmean(a["seconds"]), 1),
                        f"s {args.compare[1]}": round(statistics.fmean(b["seconds"]), 1),
                    }
                )
        print(_harness.table(rows, [(k, k) for k in rows[0]]) if rows else "no common lines")
        return
    if not args.label:
        p.error("--label is required to measure (or use --compare)")
    rows = []
    for line in args.lines:
        print(f"running {line} ...", flush=True)
        rows.append(_harness.run_arm(__file__, ["--arm", line, "--out", args.out]))
        print("  ", rows[-1], flush=True)
    print(
        _harness.table(
            [{**r, "accuracy": _cell(r["accuracy"])} for r in rows],
            [
                ("line", "line"),
                ("accuracy", "accuracy"),
                ("process_seconds", "process s"),
                ("peak_rss_mb", "peak RSS MB"),
            ],
        )
    )
    previous = _harness.RESULTS / f"baseline_{args.label}.json"
    if previous.is_file():  # measuring more lines under a label keeps the others
        done = {r["line"] for r in rows}
        rows = [r for r in json.loads(previous.read_text())["rows"] if r["line"] not in done] + rows
    path = _harness.save(
        f"baseline_{args.label}",
        {"machine": _harness.machine(), "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")},
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
