"""Input-pipeline benchmark: does the model ever wait for data, and where should augmentation run?

One command, printing a table and writing ``bench/results/pipeline.json``::

    eval "$(../shared/kit/prepare.sh)"; .venv/bin/python bench/pipeline.py

Arms (each in its own process, MobileNetV2 at 224 px, cats_and_dogs_filtered training images):

- ``finetune_jpeg``: fine-tuning (whole backbone, BN frozen, augmentation in the model) on
  tfxfer's real pipeline: JPEGs decoded and resized once to a uint8 cache, then shuffled,
  gathered, cast and prefetched every epoch.
- ``finetune_tensors``: the same model on pre-decoded float32 tensors already in memory.
- ``aug_in_data``: fine-tuning with the same augmentation moved into ``tf.data`` (the model
  trains without random layers), tfxfer's default (``augment_in="data"``).
- ``aug_in_data_xla`` (only with ``--with-xla``): the same with ``jit_compile=True``. It is not
  in the default run because XLA compilation of the training step needs > 4 GB here.
- ``extract``: tfxfer's feature extraction for head-only phases (``features.extract``).
- ``forward_bare``: the backbone's bare forward pass on in-memory tensors, the physical limit of
  feature extraction.

Throughput is images/s in steady state (median epoch after the first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness

ARMS = ("finetune_jpeg", "finetune_tensors", "aug_in_data", "extract", "forward_bare")
XLA_ARM = "aug_in_data_xla"


class _EpochTimer:
    def __init__(self):
        import keras

        class T(keras.callbacks.Callback):
            def on_epoch_begin(s, epoch, logs=None):
                s.t = time.perf_counter()

            def on_epoch_end(s, epoch, logs=None):
                self.times.append(time.perf_counter() - s.t)

        self.times: list[float] = []
        self.callback = T()


def _arm(name: str, n_images: int, epochs: int, batch: int, extract_images: int) -> dict:
    import keras
    import tensorflow as tf

    from tfxfer.config import Phase
    from tfxfer.data import augment, features, pipeline
    from tfxfer.data import sources as data
    from tfxfer.models import freeze, model
    from tfxfer.train import optim

    keras.utils.set_random_seed(0)
    t0 = time.perf_counter()
    per_class = (extract_images if name in ("extract", "forward_bare") else n_images) // 2
    ds_data = data.load("cats_and_dogs_filtered", 224, train_per_class=per_class, val_per_class=8)
    decode_s = time.perf_counter() - t0
    split = ds_data.train
    n = len(split)
    aug_in_model = name in ("finetune_jpeg", "finetune_tensors")
    tm = model.build(
        "MobileNetV2", 2, 224, "imagenet", augment="standard" if aug_in_model else "none"
    )
    result = {"arm": name, "images": n, "decode_once_s": round(decode_s, 1)}

    if name in ("extract", "forward_bare"):
        if name == "extract":
            t = time.perf_counter()
            features.extract(tm, ds_data, views=1, image_size=224)
            elapsed = time.perf_counter() - t
            result["images_per_s"] = round((n + len(ds_data.val)) / elapsed, 1)
        else:
            x = tf.constant(split.images[:64].astype("float32"))
            fn = tf.function(
                lambda b: tm.feature_model(b, training=False),
                input_signature=[tf.TensorSpec((None, 224, 224, 3), tf.float32)],
            )
            fn(x)
            t, done = time.perf_counter(), 0
            while done < n + len(ds_data.val):  # as many images as the extract arm
                fn(x).numpy()
                done += 64
            result["images_per_s"] = round(done / (time.perf_counter() - t), 1)
        return result

    freeze.unfreeze_all(tm.backbone)
    jit = name == "aug_in_data_xla"
    target = tm.model if aug_in_model else tm.plain_model
    target.compile(
        optimizer=optim.make_optimizer(Phase(lr=1e-5), 1),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    if name == "finetune_tensors":
        x = split.images.astype("float32")
        y = keras.utils.to_categorical(split.labels, 2)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=0).batch(batch)
        ds = ds.prefetch(tf.data.AUTOTUNE)
    else:
        aug = None if aug_in_model else augment.build("standard", seed=0)
        ds = pipeline.image_dataset(split, 2, 224, batch, shuffle=True, seed=0, augmenter=aug)
    timer = _EpochTimer()
    target.fit(ds, epochs=epochs, callbacks=[timer.callback], verbose=0)
    steady = statistics.median(timer.times[1:]) if len(timer.times) > 1 else timer.times[0]
    result.update(
        images_per_s=round(n / steady, 1),
        first_epoch_s=round(timer.times[0], 1),
        jit_compile=jit,
        augmentation="model" if aug_in_model else "tf.data",
    )
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arm", choices=ARMS + (XLA_ARM,))
    p.add_argument("--images", type=int, default=128, help="training images used by each arm")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--extract-images",
        type=int,
        default=512,
        help="training images for the extract / forward_bare arms",
    )
    p.add_argument("--with-xla", action="store_true", help="also run the jit_compile arm")
    args = p.parse_args()
    if args.arm:
        _harness.emit(
            _arm(args.arm, args.images, args.epochs, args.batch_size, args.extract_images)
        )
        return
    common = [
        "--images",
        str(args.images),
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--extract-images",
        str(args.extract_images),
    ]
    rows = []
    for arm in ARMS + ((XLA_ARM,) if args.with_xla else ()):
        print(f"running {arm} ...", flush=True)
        rows.append(_harness.run_arm(__file__, ["--arm", arm, *common]))
    by = {r["arm"]: r for r in rows}
    ratios = {
        "finetune_jpeg / finetune_tensors": by["finetune_jpeg"]["images_per_s"]
        / by["finetune_tensors"]["images_per_s"],
        "extract / forward_bare": by["extract"]["images_per_s"]
        / by["forward_bare"]["images_per_s"],
        "aug_in_data / finetune_jpeg (aug in model)": by["aug_in_data"]["images_per_s"]
        / by["finetune_jpeg"]["images_per_s"],
    }
    if XLA_ARM in by:
        ratios["aug_in_data_xla / finetune_jpeg (aug in model)"] = (
            by[XLA_ARM]["images_per_s"] / by["finetune_jpeg"]["images_per_s"]
        )
    print(
        _harness.table(
            rows,
            [
                ("arm", "arm"),
                ("augmentation", "augmentation"),
                ("jit_compile", "jit"),
                ("images", "images"),
                ("images_per_s", "images/s"),
                ("first_epoch_s", "first epoch s"),
                ("decode_once_s", "decode once s"),
                ("peak_rss_mb", "peak RSS MB"),
            ],
        )
    )
    print()
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    path = _harness.save(
        "pipeline",
        {
            "machine": _harness.machine(),
            "args": vars(args),
            "rows": rows,
            "ratios": ratios,
            "date": time.strftime("%Y-%m-%d"),
        },
    )
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
