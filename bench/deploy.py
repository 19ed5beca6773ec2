"""What shipping costs: float SavedModel vs LiteRT fp32/fp16/dynamic/int8, pruning, and TTA.

Three tables, every number measured by running the exported files on the validation images:

1. **Formats** (hymenoptera, cats_and_dogs_filtered): the ``small_similar`` recipe (ImageNet
   MobileNetV2 at 224, frozen backbone, head trained) exported with every LiteRT variant. The
   float row is the SavedModel served through ``serve_bytes`` on the validation *files* (the
   in-graph decode included); LiteRT rows run each ``.tflite`` with the interpreter named. Size
   is the file (SavedModel: its directory); latency is the median of single-image calls on CPU.
2. **Sparsity** (hymenoptera): ``large_similar`` (head warm-up 5 epochs, then the whole network
   8 epochs at Adam 1e-4) with ``prune.sparsity`` 0, 0.5, 0.75, 0.9 and the same protocol
   otherwise; accuracy of the float model and of its int8 file, and the gzipped file sizes.
3. **TTA** (both datasets): the served model through ``tfxfer predict``'s path with ``--tta``
   none, flip and crops.

Run: ``python bench/deploy.py`` (about 40 minutes on 2 CPU cores; needs the kit). Writes
``bench/results/deploy.json`` and prints the tables that bench/README.md quotes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import emit, machine, median_ms, run_arm, save, table

DATASETS = ("hymenoptera", "cats_and_dogs_filtered")
SPARSITIES = (0.0, 0.5, 0.75, 0.9)
LATENCY_CALLS = 50


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _val_files(data_name: str, class_names: list[str]) -> list[tuple[str, int]]:
    """``(file, label)`` of a built-in dataset's validation folder, in class order."""
    from tfxfer.data import sources

    root = Path(sources.builtin_path(data_name))
    val = next(root / d for d in sources.VAL_DIRS if (root / d).is_dir())
    return [
        (str(f), i)
        for i, c in enumerate(class_names)
        for f in sorted((val / c).iterdir())
        if f.is_file()
    ]


def arm_formats(data_name: str, out: Path) -> dict:
    import numpy as np
    import tensorflow as tf

    from tfxfer.deploy import litert
    from tfxfer.predict import Predictor
    from tfxfer.recipes import small_similar

    cfg = small_similar.CONFIG.replace(
        data=data_name,
        output=str(out),
        overwrite=True,
        verbose=0,
        export=("litert-fp32", "litert-fp16", "litert-dynamic", "litert-int8"),
    )
    result = small_similar.run(cfg)
    m = result.metrics
    files = _val_files(data_name, m["class_names"])
    rows = []
    served = tf.saved_model.load(result.paths["saved_model"])
    blobs = [Path(f).read_bytes() for f, _ in files]
    labels = np.array([y for _, y in files])
    pred = np.concatenate(
        [
            served.serve_bytes(tf.constant(blobs[i : i + 64]))["probabilities"].numpy().argmax(1)
            for i in range(0, len(blobs), 64)
        ]
    )
    float_acc = float((pred == labels).mean())
    one = tf.constant(blobs[:1])
    rows.append(
        {
            "format": "SavedModel float32 (serve_bytes, files)",
            "val_accuracy": round(float_acc, 4),
            "delta": 0.0,
            "mb": round(_dir_bytes(Path(result.paths["saved_model"])) / 1e6, 2),
            "latency_ms": median_ms(lambda: served.serve_bytes(one), LATENCY_CALLS),
            "interpreter": "TensorFlow",
        }
    )
    image = np.zeros((224, 224, 3), np.uint8)
    for variant, e in m["litert"].items():
        run = litert.Runner(Path(e["file"]).read_bytes())
        rows.append(
            {
                "format": f"LiteRT {variant}",
                "val_accuracy": e["val_accuracy"],
                "delta": round(e["val_accuracy"] - float_acc, 4),
                "mb": round(e["bytes"] / 1e6, 2),
                "gzip_mb": round(e["gzip_bytes"] / 1e6, 2),
                "latency_ms": median_ms(lambda r=run: r(image), LATENCY_CALLS),
                "interpreter": e["interpreter"],
            }
        )
    tta = {}
    for mode in ("none", "flip", "crops"):
        predictor = Predictor(result.paths["saved_model"], tta=mode)
        probs = np.concatenate(
            [predictor.probabilities(blobs[i : i + 32])["head"] for i in range(0, len(blobs), 32)]
        )
        tta[mode] = round(float((probs.argmax(1) == labels).mean()), 4)
    return {
        "data": data_name,
        "num_val": len(files),
        "training_val_accuracy": m["val_accuracy"],
        "rows": rows,
        "tta": tta,
    }


def arm_sparsity(sparsity: float, out: Path) -> dict:
    from tfxfer.config import Phase
    from tfxfer.recipes import large_similar

    phases = (
        Phase(name="warmup", trainable="head", epochs=5, optimizer="adam", lr=1e-3),
        Phase(name="finetune", trainable="all", epochs=8, optimizer="adam", lr=1e-4),
    )
    cfg = large_similar.CONFIG.replace(
        data="hymenoptera",
        output=str(out),
        overwrite=True,
        verbose=0,
        phases=phases,
        export=("litert-fp32", "litert-int8"),
    ).override([f"prune.sparsity={sparsity}"])
    result = large_similar.run(cfg)
    m = result.metrics
    prune = m.get("prune", {})
    return {
        "sparsity_target": sparsity,
        "sparsity_measured": prune.get("sparsity", 0.0),
        "val_accuracy": m["val_accuracy"],
        "int8_val_accuracy": m["litert"]["int8"]["val_accuracy"],
        "fp32_gzip_mb": round(m["litert"]["fp32"]["gzip_bytes"] / 1e6, 2),
        "int8_gzip_mb": round(m["litert"]["int8"]["gzip_bytes"] / 1e6, 2),
        "seconds": round(result.seconds, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arm", choices=("formats", "sparsity"))
    p.add_argument("--data")
    p.add_argument("--sparsity", type=float)
    p.add_argument("--out", default="bench/runs/deploy")
    p.add_argument("--part", choices=("all", "formats", "sparsity"), default="all")
    args = p.parse_args()
    if args.arm == "formats":
        emit(arm_formats(args.data, Path(args.out) / args.data))
        return
    if args.arm == "sparsity":
        emit(arm_sparsity(args.sparsity, Path(args.out) / f"sparsity_{args.sparsity}"))
        return
    results = {"machine": machine(), "formats": [], "sparsity": []}
    if args.part in ("all", "formats"):
        for name in DATASETS:
            results["formats"].append(
                run_arm(__file__, ["--arm", "formats", "--data", name, "--out", args.out])
            )
    if args.part in ("all", "sparsity"):
        for s in SPARSITIES:
            results["sparsity"].append(
                run_arm(__file__, ["--arm", "sparsity", "--sparsity", str(s), "--out", args.out])
            )
    save(f"deploy_{args.part}", results)
    print(f"machine: {results['machine']}\n")
    for r in results["formats"]:
        print(f"### {r['data']} ({r['num_val']} validation files)\n")
        print(
            table(
                r["rows"],
                [
                    ("format", "format"),
                    ("val_accuracy", "val accuracy"),
                    ("delta", "delta vs float"),
                    ("mb", "size MB"),
                    ("gzip_mb", "gzip MB"),
                    ("latency_ms", "1-image latency ms"),
                    ("interpreter", "run by"),
                ],
            )
        )
        print(
            f"\nTTA (served model, validation files): none {r['tta']['none']:.4f}, "
            f"flip {r['tta']['flip']:.4f}, crops {r['tta']['crops']:.4f}\n"
        )
    if results["sparsity"]:
        print("### Sparsity (hymenoptera, large_similar, 8 fine-tuning epochs)\n")
        print(
            table(
                results["sparsity"],
                [
                    ("sparsity_target", "target"),
                    ("sparsity_measured", "measured"),
                    ("val_accuracy", "float val acc"),
                    ("int8_val_accuracy", "int8 val acc"),
                    ("fp32_gzip_mb", "fp32 .tflite gzip MB"),
                    ("int8_gzip_mb", "int8 .tflite gzip MB"),
                    ("seconds", "train s"),
                ],
            )
        )


if __name__ == "__main__":
    main()
