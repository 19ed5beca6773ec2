"""Unsupervised domain adaptation on digits: source-only, DANN and train-on-target, 3 seeds.

Pairs: MNIST -> MNIST-M (the DANN paper's), MNIST -> USPS and USPS -> MNIST. Every arm is the
``domain_adapt`` recipe (``tfxfer.recipes.domain_adapt.CONFIG``: ImageNet MobileNet 0.25 at
32 px, whole network trained, SGD momentum 0.9 at 0.01 with the paper's annealing, BatchNorm
trained, 64 source + 64 target images per step), on the same code path:

- **source-only**: ``--method source_only`` (the backbone trains on source images alone);
- **DANN**: ``--method dann``;
- **train-on-target** (the ceiling): the target's labelled training split as the source, with
  ``source_only``.

Accuracy is on the target's test split (MNIST-M: all 9,001 test images; USPS: 2,007; MNIST:
10,000), whose labels are never used for training. Each arm trains about 600 steps: MNIST as the
source is subsampled to 2,000 images per class (2 epochs of 312 steps), USPS trains 5 epochs of
113 steps, MNIST-M (train-on-target) 4 epochs of 156 steps. The DANN paper trained far longer,
on all of MNIST and a LeNet-style network at 28 px; see bench/README.md for what that changes.

Published anchors (as quoted in the issue): DANN paper, MNIST -> MNIST-M: source-only 0.5225,
DANN 0.7666. Transfer-Learning-Library benchmark docs: MNIST -> USPS 0.821 / 0.917; USPS -> MNIST
0.746 / 0.952 (source-only / DANN); ADDA reports MNIST -> USPS source-only 0.752. The kit's USPS
is the ESL copy, not the LIBSVM copy those libraries use.

Run: ``python bench/domain_adapt.py [--seeds 0,1,2] [--pairs mnist:mnist_m,...] [--arms
source_only,dann,target]`` (about 30 minutes on 2 CPU cores; needs the kit). Writes
``bench/results/domain_adapt.json`` after every arm and prints the table bench/README.md quotes.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import RESULTS, machine, save

PAIRS = (("mnist", "mnist_m"), ("mnist", "usps"), ("usps", "mnist"))
ARMS = ("source_only", "dann", "target")
EPOCHS = {"mnist": 2, "usps": 5, "mnist_m": 4}  # about 600 steps of 64 each
PER_CLASS = {"mnist": 2000}
ANCHORS = {
    ("mnist", "mnist_m"): ("DANN paper", 0.5225, 0.7666),
    ("mnist", "usps"): ("TLlib", 0.821, 0.917),
    ("usps", "mnist"): ("TLlib", 0.746, 0.952),
}


def arm_config(source: str, target: str, arm: str, seed: int, out: str):
    from tfxfer.recipes import domain_adapt

    train_on = target if arm == "target" else source
    cfg = domain_adapt.CONFIG.replace(
        data=train_on,
        train_per_class=PER_CLASS.get(train_on),
        seed=seed,
        output=out,
        verbose=0,
        overwrite=True,
        adapt={"target": target, "method": "source_only" if arm == "target" else arm},
    )
    return cfg.with_epochs(EPOCHS[train_on])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pairs", default=",".join(f"{s}:{t}" for s, t in PAIRS))
    p.add_argument("--arms", default=",".join(ARMS), help="some of " + ",".join(ARMS))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import keras

    from tfxfer.recipes import domain_adapt

    seeds = [int(s) for s in args.seeds.split(",")]
    pairs = [tuple(x.split(":")) for x in args.pairs.split(",")]
    path = RESULTS / "domain_adapt.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    done = {(r["source"], r["target"], r["arm"], r["seed"]) for r in runs}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for source, target in pairs:
            for seed in seeds:
                for arm in args.arms.split(","):
                    if (source, target, arm, seed) in done:
                        continue
                    keras.backend.clear_session()
                    result = domain_adapt.run(arm_config(source, target, arm, seed, tmp + "/r"))
                    a = result.metrics["adapt"]
                    runs.append(
                        {
                            "source": source,
                            "target": target,
                            "arm": arm,
                            "seed": seed,
                            "target_accuracy": a["target_accuracy"],
                            "per_epoch": a["target_accuracy_per_epoch"],
                            "val_domain_accuracy": a["val_domain_accuracy"],
                            "source_val_accuracy": result.metrics["val_accuracy"],
                            "seconds": round(result.seconds, 1),
                        }
                    )
                    print(
                        f"{source}->{target} {arm} seed {seed}: {a['target_accuracy']:.4f} "
                        f"({result.seconds:.0f}s)",
                        flush=True,
                    )
                    save("domain_adapt", {"machine": machine(), "runs": runs})
    print(f"\n{machine()}; this invocation {time.perf_counter() - t0:.0f}s")
    print(render(runs, pairs))
    return 0


def _stat(values):
    if not values:
        return ""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def render(runs, pairs=PAIRS) -> str:
    lines = [
        "| pair | source-only | DANN | train-on-target | DANN - source-only | domain clf. "
        "(held out): source-only / DANN | anchor: source-only / DANN | time per arm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source, target in pairs:
        pick = {
            arm: [r for r in runs if (r["source"], r["target"], r["arm"]) == (source, target, arm)]
            for arm in ARMS
        }
        acc = {arm: [r["target_accuracy"] for r in rs] for arm, rs in pick.items()}
        gain = [d - s for d, s in zip(acc["dann"], acc["source_only"])]
        dom = " / ".join(
            _stat([r["val_domain_accuracy"] for r in pick[a]]) for a in ("source_only", "dann")
        )
        name, a_src, a_dann = ANCHORS[(source, target)]
        secs = [r["seconds"] for rs in pick.values() for r in rs]
        lines.append(
            f"| {source} → {target} (n={len(acc['dann'])}) | {_stat(acc['source_only'])} "
            f"| {_stat(acc['dann'])} | {_stat(acc['target'])} | {_stat(gain)} | {dom} "
            f"| {name}: {a_src} / {a_dann} | "
            f"{statistics.mean(secs) if secs else 0:.0f}s |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
