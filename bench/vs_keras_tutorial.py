"""tfxfer's recipes against an independent plain-Keras implementation of the TensorFlow
"Transfer learning and fine-tuning" tutorial protocol, on the same data and machine, in one run.

One command, printing a table and writing ``bench/results/vs_keras_tutorial.json``::

    eval "$(../shared/kit/prepare.sh)"; .venv/bin/python bench/vs_keras_tutorial.py

The plain-Keras protocol (written here from the tutorial's description, not copied): MobileNetV2
ImageNet at 224 px (the kit has the 224 weights), ``image_dataset_from_directory`` with JPEG
decode and resize every epoch, RandomFlip + RandomRotation(0.2) in the model,
``preprocess_input``, GAP, Dropout(0.2), Dense(1) logits; Adam 1e-4 for 10 frozen epochs, then
``base.layers[100:]`` unfrozen with RMSprop 1e-5 for 10 more. Validation accuracy is measured
on the dataset's whole validation split for every arm (the tutorial's test carve-out is not
made). tfxfer arms run the ``small_similar`` and ``large_similar`` recipes with their defaults.
Each arm runs in its own process; wall time counts everything from data on disk to a trained
(and, for tfxfer, exported) model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness

DATASETS = {"cats_and_dogs_filtered": ("train", "validation"), "hymenoptera": ("train", "val")}
FOLDERS = {"cats_and_dogs_filtered": "cats_and_dogs_filtered", "hymenoptera": "hymenoptera_data"}
ARMS = ("keras_tutorial", "tfxfer_small_similar", "tfxfer_large_similar")


def _keras_tutorial(dataset: str, frozen_epochs: int, finetune_epochs: int, size: int) -> dict:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    root = os.path.join(os.environ["TFXFER_DATA_DIR"], FOLDERS[dataset])
    train_dir, val_dir = (os.path.join(root, s) for s in DATASETS[dataset])
    t0 = time.perf_counter()
    train_ds = keras.utils.image_dataset_from_directory(
        train_dir, shuffle=True, batch_size=32, image_size=(size, size), seed=0
    )
    val_ds = keras.utils.image_dataset_from_directory(
        val_dir, shuffle=False, batch_size=32, image_size=(size, size)
    )
    n_train = sum(int(b[1].shape[0]) for b in train_ds)
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.prefetch(tf.data.AUTOTUNE)
    flip_rotate = keras.Sequential(
        [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)]
    )
    base = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), include_top=False, weights="imagenet"
    )
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(flip_rotate(inputs))
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1)(keras.layers.Dropout(0.2)(x))
    model = keras.Model(inputs, outputs)
    loss = keras.losses.BinaryCrossentropy(from_logits=True)
    acc = keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, metrics=[acc])
    model.fit(train_ds, epochs=frozen_epochs, validation_data=val_ds, verbose=2)
    frozen_s = time.perf_counter() - t0
    frozen_acc = float(model.evaluate(val_ds, verbose=0)[1])
    base.trainable = True
    for layer in base.layers[:100]:
        layer.trainable = False
    model.compile(optimizer=keras.optimizers.RMSprop(1e-5), loss=loss, metrics=[acc])
    t1 = time.perf_counter()
    if finetune_epochs:
        model.fit(
            train_ds,
            epochs=frozen_epochs + finetune_epochs,
            initial_epoch=frozen_epochs,
            validation_data=val_ds,
            verbose=2,
        )
    finetune_s = time.perf_counter() - t1
    final_acc = float(model.evaluate(val_ds, verbose=0)[1])
    return {
        "frozen_val_accuracy": round(frozen_acc, 4),
        "frozen_s": round(frozen_s, 1),
        "val_accuracy": round(final_acc, 4),
        "finetune_s": round(finetune_s, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        "train_images": n_train,
        "frozen_images_per_s": round(n_train * frozen_epochs / frozen_s, 1),
        "epochs": f"{frozen_epochs}+{finetune_epochs}",
    }


def _tfxfer(recipe: str, dataset: str, finetune_epochs: int | None, out: str) -> dict:
    import importlib

    module = importlib.import_module(f"tfxfer.recipes.{recipe}")
    cfg = module.CONFIG.replace(data=dataset, output=out, overwrite=True, verbose=0)
    if finetune_epochs is not None and len(cfg.phases) > 1:
        cfg = cfg.override([f"phases.{len(cfg.phases) - 1}.epochs={finetune_epochs}"])
    t0 = time.perf_counter()
    result = module.run(cfg)
    wall = time.perf_counter() - t0
    history = result.history
    n_train = sum(result.data_report["counts"]["train"].values())
    images = sum(n_train * len(h["history"].get("loss", [])) for h in history)
    return {
        "val_accuracy": result.metrics["val_accuracy"],
        "wall_s": round(wall, 1),
        "train_images": n_train,
        "images_per_s": round(images / wall, 1),
        "epochs": "+".join(str(p.epochs) for p in cfg.phases),
        "phase_seconds": [h["seconds"] for h in history],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arm", choices=ARMS)
    p.add_argument(
        "--dataset", choices=list(DATASETS), action="append", help="repeatable; default: both"
    )
    p.add_argument("--frozen-epochs", type=int, default=10)
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=10,
        help="plain-Keras fine-tuning epochs (the tutorial's 10)",
    )
    p.add_argument(
        "--tfxfer-finetune-epochs",
        type=int,
        default=None,
        help="override large_similar's fine-tuning epochs (default: the recipe's)",
    )
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--out", default="runs/bench")
    args = p.parse_args()
    datasets = args.dataset or list(DATASETS)
    if args.arm:
        ds = datasets[0]
        if args.arm == "keras_tutorial":
            res = _keras_tutorial(ds, args.frozen_epochs, args.finetune_epochs, args.image_size)
        else:
            recipe = args.arm.replace("tfxfer_", "")
            res = _tfxfer(
                recipe, ds, args.tfxfer_finetune_epochs, os.path.join(args.out, f"{recipe}_{ds}")
            )
        _harness.emit({"arm": args.arm, "dataset": ds, **res})
        return
    rows = []
    for ds in datasets:
        for arm in ARMS:
            extra = [
                "--frozen-epochs",
                str(args.frozen_epochs),
                "--finetune-epochs",
                str(args.finetune_epochs),
                "--image-size",
                str(args.image_size),
                "--out",
                args.out,
            ]
            if args.tfxfer_finetune_epochs is not None:
                extra += ["--tfxfer-finetune-epochs", str(args.tfxfer_finetune_epochs)]
            print(f"running {arm} on {ds} ...", flush=True)
            rows.append(_harness.run_arm(__file__, ["--arm", arm, "--dataset", ds, *extra]))
            print("  ", rows[-1], flush=True)
    print(
        _harness.table(
            rows,
            [
                ("dataset", "dataset"),
                ("arm", "arm"),
                ("epochs", "epochs"),
                ("frozen_val_accuracy", "val acc after frozen phase"),
                ("frozen_s", "frozen phase s"),
                ("val_accuracy", "final val acc"),
                ("wall_s", "wall s"),
                ("frozen_images_per_s", "frozen images/s"),
                ("images_per_s", "images/s (end to end)"),
                ("peak_rss_mb", "peak RSS MB"),
            ],
        )
    )
    for ds in datasets:
        by = {r["arm"]: r for r in rows if r["dataset"] == ds}
        tut, ss = by["keras_tutorial"], by["tfxfer_small_similar"]
        print(
            f"{ds}: small_similar {ss['val_accuracy']:.4f} in {ss['wall_s']:.0f}s vs tutorial "
            f"frozen phase {tut['frozen_val_accuracy']:.4f} in {tut['frozen_s']:.0f}s "
            f"(time ratio {ss['wall_s'] / tut['frozen_s']:.3f})"
        )
    name = "vs_keras_tutorial" + (f"_{datasets[0]}" if len(datasets) == 1 else "")
    path = _harness.save(
        name,
        {
            "machine": _harness.machine(),
            "args": vars(args),
            "rows": rows,
            "date": time.strftime("%Y-%m-%d"),
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
