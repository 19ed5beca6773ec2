"""Distillation into a phone-size student: teacher, student on labels alone, distilled student.

Protocol (cats_and_dogs_filtered: 2,000 training / 1,000 validation images):

- ``teacher``: the ``small_similar`` recipe as shipped (ImageNet MobileNetV2 at 224 px, frozen
  backbone, head trained);
- ``labels``: the ``distill`` recipe's student (ImageNet MobileNet 0.25 at 224 px, head 2 epochs
  then everything 15) with ``distill.alpha=1``: the labels alone, the teacher never run;
- ``distilled``: the same student and schedule with the recipe's defaults (``alpha`` 0.1,
  temperature 2), taught by ``teacher``;
- ``distilled_t4``: the same, temperature 4;
- ``distilled_e30``: ``distilled`` with 30 epochs of fine-tuning instead of 15 (distillation
  gains from long schedules: Beyer et al. 2022);
- ``labels_144``, ``distilled_144``: the ``labels`` and ``distilled`` students at 144 px (about
  0.4 of the multiply-adds at 224; the teacher still sees each view at its own 224 px). 144 is
  not one of the sizes Keras has separate MobileNet weights for, so the kit's 224 px ImageNet
  weights load, offline.

Every arm is exported to int8 LiteRT (calibrated on training images, as every run is) and
reports: the float model's validation accuracy, the int8 file's (run by the LiteRT interpreter
on the validation images), the file's size and gzipped size, and its single-image latency (the
median of 50 calls on one 224 px image after a warm-up, the interpreter's default threads, on
this machine's CPU).

Run: ``python bench/distill.py [--arms teacher,labels,distilled,distilled_t4] [--seed 0]
[--table]``; writes ``bench/arms/distill/<arm>-seed<k>.json`` per arm (the teacher's run stays
in ``bench/runs/distill`` for the students), skips arms already written, and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import machine, median_ms, table

HERE = Path(__file__).resolve().parent
ARMS_DIR = HERE / "arms" / "distill"
RUNS = HERE / "runs" / "distill"
DATA = "cats_and_dogs_filtered"
ARMS = (
    "teacher",
    "labels",
    "distilled",
    "distilled_t4",
    "distilled_e30",
    "labels_144",
    "distilled_144",
)
LATENCY_CALLS = 50


def run_arm(arm: str, seed: int) -> dict:
    import numpy as np

    from tfxfer.deploy import litert
    from tfxfer.recipes import distill, small_similar

    out = RUNS / f"{arm}-seed{seed}"
    common = dict(output=str(out), overwrite=True, verbose=0, seed=seed, export=("litert-int8",))
    if arm == "teacher":
        result = small_similar.run(small_similar.CONFIG.replace(data=DATA, **common))
    else:
        teacher = RUNS / f"teacher-seed{seed}"
        if not (teacher / "model.keras").is_file():
            raise SystemExit(f"arm {arm} needs the teacher: run --arms teacher first")
        section = {"teacher": str(teacher)}
        if arm.startswith("labels"):
            section["alpha"] = 1.0
        if arm == "distilled_t4":
            section["temperature"] = 4.0
        if arm.endswith("_144"):
            common["image_size"] = 144
        if arm == "distilled_e30":
            common["phases"] = [
                {**dataclasses.asdict(p), "epochs": 30 if p.trainable == "all" else p.epochs}
                for p in distill.CONFIG.phases
            ]
        # the teacher's seed is the student's (distill copies the split keys, seed included)
        common.pop("seed")
        result = distill.run(distill.CONFIG.replace(distill=section, **common))
    m = result.metrics
    int8 = m["litert"]["int8"]
    runner = litert.Runner(Path(int8["file"]).read_bytes())
    image = np.zeros((result.model.image_size,) * 2 + (3,), np.uint8)
    return {
        "arm": arm,
        "seed": seed,
        "backbone": result.model.family,
        "image_size": result.model.image_size,
        "val_accuracy": m["val_accuracy"],
        "int8_val_accuracy": int8["val_accuracy"],
        "int8_mb": round(int8["bytes"] / 1e6, 3),
        "int8_gzip_mb": round(int8["gzip_bytes"] / 1e6, 3),
        "int8_latency_ms": median_ms(lambda: runner(image), LATENCY_CALLS),
        "interpreter": int8["interpreter"],
        "distill": m.get("distill"),
        "seconds": m["seconds"],
        "machine": machine(),
        "date": date.today().isoformat(),
    }


def remeasure_latency(seed: int, rounds: int = 5) -> None:
    """Measures every written arm's int8 file again in this one process, the arms interleaved
    over ``rounds`` rounds (each the median of :data:`LATENCY_CALLS` calls), and writes the
    median of the rounds as ``int8_latency_ms``: arms run at different times share the machine
    with different loads, and a ratio of latencies is only fair measured side by side."""
    import numpy as np

    from tfxfer.deploy import litert

    arms = {r["arm"]: r for r in rows(seed)}
    runners = {
        arm: litert.Runner((RUNS / f"{arm}-seed{seed}" / "model_int8.tflite").read_bytes())
        for arm in arms
    }
    images = {
        arm: np.zeros((r.input["shape"][1],) * 2 + (3,), np.uint8) for arm, r in runners.items()
    }
    found = {arm: [] for arm in arms}
    for _ in range(rounds):
        for arm, runner in runners.items():
            found[arm].append(median_ms(lambda r=runner, x=images[arm]: r(x), LATENCY_CALLS))
    for arm, record in arms.items():
        record["int8_latency_ms"] = sorted(found[arm])[rounds // 2]
        record["int8_latency_rounds"] = found[arm]
        (ARMS_DIR / f"{arm}-seed{seed}.json").write_text(json.dumps(record, indent=2) + "\n")


def rows(seed: int) -> list[dict]:
    found = []
    for arm in ARMS:
        path = ARMS_DIR / f"{arm}-seed{seed}.json"
        if path.is_file():
            found.append(json.loads(path.read_text()))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true", help="print the table of written arms")
    parser.add_argument(
        "--latency", action="store_true", help="measure the written arms' latency again, together"
    )
    args = parser.parse_args(argv)
    ARMS_DIR.mkdir(parents=True, exist_ok=True)
    if args.latency:
        remeasure_latency(args.seed)
    elif not args.table:
        for arm in args.arms.split(","):
            if arm not in ARMS:
                raise SystemExit(f"--arms: {arm!r} is not one of {', '.join(ARMS)}")
            path = ARMS_DIR / f"{arm}-seed{args.seed}.json"
            if path.is_file():
                print(f"{arm}: already written ({path.name})")
                continue
            result = run_arm(arm, args.seed)
            path.write_text(json.dumps(result, indent=2) + "\n")
            print(f"{arm}: {result['val_accuracy']:.4f} ({result['seconds']:.0f} s)", flush=True)
    print(
        table(
            rows(args.seed),
            [
                ("arm", "arm"),
                ("backbone", "network"),
                ("image_size", "px"),
                ("val_accuracy", "float val accuracy"),
                ("int8_val_accuracy", "int8 val accuracy"),
                ("int8_mb", "int8 MB"),
                ("int8_gzip_mb", "int8 gzip MB"),
                ("int8_latency_ms", "int8 1-image ms"),
                ("seconds", "train s"),
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
