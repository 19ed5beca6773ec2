"""Unsupervised domain adaptation on digits: five arms on three pairs, 3 seeds, resumable.

Pairs: MNIST -> MNIST-M (the DANN paper's), MNIST -> USPS and USPS -> MNIST. Every arm is the
``domain_adapt`` recipe on one code path; accuracy is on the target's test split (MNIST-M: all
9,001 test images; USPS: 2,007; MNIST: 10,000), whose labels never train anything.

Two protocols, one table each:

- ``digits`` (the recipe's defaults, the papers' protocol): the network is chosen from the data
  (``tfxfer.adapt.network``: LeNet from scratch at 28 px for MNIST <-> USPS, the DANN paper's
  network with its FC 100-100 label and FC 100 domain classifiers for MNIST -> MNIST-M), SGD
  momentum 0.9 at 0.01 with the paper's annealing, 64 source + 64 target images per step, about
  :data:`STEPS` steps per arm (whole epochs of the source), the whole training sets (MNIST-M's is
  the kit's 10,000-image subset). Arms: ``source_only``, ``dann``, ``cdan+e``, ``best`` (CDAN+E
  + MCC, then self-training on class-balanced pseudo-labels for about :data:`SELF_TRAIN_STEPS`
  steps) and ``target`` (train-on-target: the target's labelled training split as the source,
  ``source_only``: the ceiling).
- ``photos`` (the earlier defaults, "photos-style backbone on digits"): ImageNet MobileNet 0.25
  at 32 px, about 600 steps; arms ``source_only``, ``dann``, ``target``.

Every arm writes its own JSON to ``bench/arms/domain_adapt/`` (tracked, so the bench resumes
across sessions and machines): the arm's config essentials, steps, batch, network, input size,
accuracy per epoch, wall time and machine. Arms already written are skipped.

Published anchors: DANN paper, MNIST -> MNIST-M source-only 0.5225, DANN 0.7666 (its MNIST-M
train split is 59,001 images; the kit's is 10,000). Transfer-Learning-Library (TLlib) digits:
MNIST -> USPS source-only 0.821, DANN 0.917, CDAN 0.960; USPS -> MNIST 0.746 / 0.952 / 0.977
(on the LIBSVM copy of USPS; the kit's is the ESL copy).

Run: ``python bench/domain_adapt.py [--protocol digits] [--seeds 0,1,2] [--pairs
mnist:usps,...] [--arms dann,best,...] [--table]`` (needs the kit; up to 15 minutes per arm on 2
CPU cores; ``--table`` only prints the tables from the JSON files).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine

ARMS_DIR = Path(__file__).resolve().parent / "arms" / "domain_adapt"
PAIRS = (("mnist", "mnist_m"), ("mnist", "usps"), ("usps", "mnist"))
ARMS = {
    "digits": ("dann", "best", "cdan+e", "source_only", "target"),
    "photos": ("source_only", "dann", "target"),
}
METHOD = {"source_only": "source_only", "dann": "dann", "cdan+e": "cdan+e"}
BEST = "cdan+e+mcc"  # the best composition's method, before its self-training
STEPS = 15000  # digits: steps per arm, rounded up to whole source epochs
SELF_TRAIN_STEPS = 1500  # digits, best arm: self-training steps after the adaptation
BATCH = 64
TRAIN_IMAGES = {"mnist": 60000, "usps": 7291, "mnist_m": 10000}
PHOTOS_EPOCHS = {"mnist": 2, "usps": 5, "mnist_m": 4}  # about 600 steps of 64 each
PHOTOS_PER_CLASS = {"mnist": 2000}
PUBLISHED = {  # (source, target): (who, source-only, DANN, CDAN)
    ("mnist", "mnist_m"): ("DANN paper", 0.5225, 0.7666, None),
    ("mnist", "usps"): ("TLlib", 0.821, 0.917, 0.960),
    ("usps", "mnist"): ("TLlib", 0.746, 0.952, 0.977),
}
GOAL_BEST = {("mnist", "mnist_m"): 0.85, ("mnist", "usps"): 0.960, ("usps", "mnist"): 0.977}


def epochs_for(data: str, steps: int) -> int:
    """Whole epochs of ``data`` (batches of :data:`BATCH`) that reach ``steps``."""
    return math.ceil(steps / (TRAIN_IMAGES[data] // BATCH))


def arm_config(protocol: str, source: str, target: str, arm: str, seed: int, out: str):
    """The recipe config of one arm."""
    from tfxfer.recipes import domain_adapt

    train_on = target if arm == "target" else source
    method = BEST if arm == "best" else METHOD.get(arm, "source_only")
    cfg = domain_adapt.CONFIG.replace(
        data=train_on,
        seed=seed,
        output=out,
        verbose=0,
        overwrite=True,
        batch_size=BATCH,
        adapt={
            "target": target,
            "method": method,
            "self_train": epochs_for(train_on, SELF_TRAIN_STEPS) if arm == "best" else 0,
        },
    )
    if protocol == "photos":
        cfg = cfg.replace(
            backbone="MobileNet025",
            weights="imagenet",
            image_size=32,
            train_per_class=PHOTOS_PER_CLASS.get(train_on),
        )
        return cfg.with_epochs(PHOTOS_EPOCHS[train_on])
    return cfg.with_epochs(epochs_for(train_on, STEPS))


def arm_path(protocol: str, source: str, target: str, arm: str, seed: int) -> Path:
    return ARMS_DIR / f"{protocol}-{source}-{target}-{arm.replace('+', '_')}-seed{seed}.json"


def run_arm(protocol: str, source: str, target: str, arm: str, seed: int) -> dict:
    import keras

    from tfxfer.recipes import domain_adapt

    keras.backend.clear_session()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = arm_config(protocol, source, target, arm, seed, tmp + "/run")
        t0 = time.perf_counter()
        result = domain_adapt.run(cfg)
        seconds = time.perf_counter() - t0
        saved = json.loads((Path(tmp) / "run" / "config.json").read_text())  # the chosen network
    a = result.metrics["adapt"]
    steps = sum(len(h["history"]["loss"]) for h in result.history) * (
        len(result.data.train) // BATCH
    )
    return {
        "protocol": protocol,
        "source": source,
        "target": target,
        "arm": arm,
        "method": saved["adapt"]["method"],
        "self_train_epochs": saved["adapt"]["self_train"],
        "seed": seed,
        "network": saved["backbone"],
        "weights": saved["weights"],
        "image_size": saved["image_size"],
        "batch": BATCH,
        "epochs": [len(h["history"]["loss"]) for h in result.history],
        "steps": steps,
        "target_accuracy": a["target_accuracy"],
        "per_epoch": a["target_accuracy_per_epoch"],
        "val_domain_accuracy": a["val_domain_accuracy"],
        "source_val_accuracy": result.metrics["val_accuracy"],
        "seconds": round(seconds, 1),
        "machine": machine(),
        "date": date.today().isoformat(),
    }


def load_arms() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(ARMS_DIR.glob("*.json"))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default="digits", choices=sorted(ARMS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pairs", default=",".join(f"{s}:{t}" for s, t in PAIRS))
    p.add_argument("--arms", default=None, help="default: every arm of the protocol")
    p.add_argument("--table", action="store_true", help="print the tables only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    arms = args.arms.split(",") if args.arms else list(ARMS[args.protocol])
    unknown = sorted(set(arms) - set(ARMS[args.protocol]))
    if unknown:
        p.error(f"arms {unknown} are not arms of {args.protocol}: {list(ARMS[args.protocol])}")
    pairs = [tuple(x.split(":")) for x in args.pairs.split(",")]
    ARMS_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for seed in [] if args.table else [int(s) for s in args.seeds.split(",")]:
        for source, target in pairs:
            for arm in arms:
                path = arm_path(args.protocol, source, target, arm, seed)
                if path.exists():
                    continue
                record = run_arm(args.protocol, source, target, arm, seed)
                path.write_text(json.dumps(record, indent=1) + "\n")
                print(
                    f"{source}->{target} {arm} seed {seed}: {record['target_accuracy']:.4f} "
                    f"({record['network']}, {record['steps']} steps, {record['seconds']:.0f}s)",
                    flush=True,
                )
    print(f"\n{machine()}; this invocation {time.perf_counter() - t0:.0f}s")
    runs = load_arms()
    for protocol in ARMS:
        print(f"\n{protocol}:\n" + render([r for r in runs if r["protocol"] == protocol], protocol))
    digits = [r for r in runs if r["protocol"] == "digits"]
    print(
        "\ndigits, each arm's best epoch on the target test split (TLlib's model selection; "
        "a reference, not a result):\n" + render_best_epoch(digits)
    )
    return 0


def _stat(values) -> str:
    if not values:
        return "not run"
    if len(values) == 1:
        return f"{values[0]:.4f} (n=1)"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (n={len(values)})"


def render(runs: list[dict], protocol: str = "digits") -> str:
    """The markdown table of one protocol's arms: mean ± sd over seeds, per pair."""
    arms = ARMS[protocol]
    head = ["pair"] + list(arms) + ["published (source-only / DANN / CDAN)"]
    if protocol == "digits":
        head += ["DANN vs published", "best vs goal", "network, size, steps, s per arm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for source, target in PAIRS:
        pick = {
            arm: [r for r in runs if (r["source"], r["target"], r["arm"]) == (source, target, arm)]
            for arm in arms
        }
        acc = {arm: [r["target_accuracy"] for r in rs] for arm, rs in pick.items()}
        who, a_src, a_dann, a_cdan = PUBLISHED[(source, target)]
        row = [f"{source} → {target}"] + [_stat(acc[a]) for a in arms]
        row.append(f"{who}: {a_src} / {a_dann} / {a_cdan or '–'}")
        if protocol == "digits":
            for arm, goal in (("dann", a_dann), ("best", GOAL_BEST[(source, target)])):
                if acc[arm]:
                    gap = statistics.mean(acc[arm]) - goal
                    row.append(f"{gap:+.4f} (goal {goal})")
                else:
                    row.append(f"– (goal {goal})")
            every = [r for rs in pick.values() for r in rs]
            nets = sorted({f"{r['network']} {r['image_size']} px" for r in every})
            steps = sorted({r["steps"] for r in every})
            secs = statistics.mean(r["seconds"] for r in every) if every else 0
            row.append(f"{', '.join(nets)}; {steps} steps; {secs:.0f} s")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_best_epoch(runs: list[dict]) -> str:
    """Each arm's best per-epoch target accuracy, as TLlib reports digits: its validation loader
    is the target's test split, and the best of its 20 epochs is the number it prints. Choosing
    an epoch by target labels is not adaptation without them, so this is a reference for the
    published figures, not a result; the main table is each arm's last epoch."""
    arms = [a for a in ARMS["digits"] if a != "target"]
    head = ["pair", *(f"{a}: best epoch (last)" for a in arms), "published DANN / CDAN"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for source, target in PAIRS:
        row = [f"{source} → {target}"]
        for arm in arms:
            rs = [r for r in runs if (r["source"], r["target"], r["arm"]) == (source, target, arm)]
            best = [max(r["per_epoch"]) for r in rs if r.get("per_epoch")]
            last = [r["target_accuracy"] for r in rs if r.get("per_epoch")]
            row.append(
                f"{statistics.mean(best):.4f} ({statistics.mean(last):.4f}), n={len(best)}"
                if best
                else "not run"
            )
        _, _, a_dann, a_cdan = PUBLISHED[(source, target)]
        row.append(f"{a_dann} / {a_cdan or '–'}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
