"""Data at scale: 200,000 JPEGs and TFDS sets through tfxfer, against Keras's own loader.

Issue 17's first check. The script

1. builds a folder of ``--count`` JPEGs (default 200,000) from the kit's real photos
   (cats_and_dogs_filtered and hymenoptera, 4 classes): each file is a random crop (50-100% of
   the area) of a kit photo, flipped at random, resized to a random long side of 128-512 px
   and saved at a random JPEG quality of 60-95, so sizes, aspect ratios and compression vary as
   in a real collection; plus a 2,000-image validation folder made the same way. The folder is
   deleted at the end (``--keep`` keeps it);
2. runs each arm in its own process (its peak RSS is its own, ``bench/_harness.py``):

   - ``tfxfer``: the ``large_similar`` recipe on the folder, as a user runs it, up to the end of
     its first training step: the decode-once into ``storage.allocate`` (a disk memmap: the
     decoded set is ~7.5 GB at 112 px, over the 2 GB memory budget), the model build, the first
     step (on images: ``cache_features=False``, or the head phase would first featurise all
     200,000 images four times); the process stops there. Decode throughput counts only the
     decode; "first step" is from the start of the run;
   - ``keras``: ``keras.utils.image_dataset_from_directory`` on the same files at the same size,
     batch 64, a MobileNetV2 built and one ``fit`` step taken (its time to first step), then
     one full pass over the dataset, timed (what every epoch of that loader costs);
   - ``tfds:fashion_mnist`` and ``tfds:mnist``: each prepared by TFDS from the kit's IDX files
     through ``manual_dir`` (timed), then the ``large_different`` recipe at 32 px up to its
     first step, as above.

   - with ``--tfrecord``: the folder written as 64 ``tfrecord:`` shards (timed, as
     ``prepare``), one streamed pass over them (read, in-graph decode and resize: what every
     epoch costs), and the recipe on ``tfrecord:`` up to its first step.

Run: ``python bench/scale.py`` (about 9 minutes on 2 CPU cores; ~4 GB of free disk for the
JPEGs and ~8 GB under ``TFXFER_CACHE_DIR`` for the decoded memmap). ``--count 20000`` for a
quick look. Results go to bench/results/scale.json; ``--table`` prints them again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import emit, machine, run_arm, save, table

SIZE = 112
VAL_COUNT = 2000
KIT_PHOTOS = (("cats_and_dogs_filtered", ("cats", "dogs")), ("hymenoptera_data", ("ants", "bees")))


# ---- the folder -------------------------------------------------------------------------------
def kit_photos() -> dict[str, list[str]]:
    """The kit's photos by class: {class: [paths]} (``$TFXFER_DATA_DIR``, unpacked)."""
    by_class: dict[str, list[str]] = {}
    for folder, classes in KIT_PHOTOS:
        for path in sorted((Path(os.environ["TFXFER_DATA_DIR"]) / folder).rglob("*.jp*g")):
            if path.parent.name in classes:
                by_class.setdefault(path.parent.name, []).append(str(path))
    return by_class


def _variants(job) -> int:
    """Writes the variants of one kit photo (one task of the pool)."""
    from PIL import Image

    source, outputs, seed = job
    rng = np.random.default_rng(seed)
    with Image.open(source) as im:
        im = im.convert("RGB")
        im.load()
    w, h = im.size
    for out in outputs:
        area = rng.uniform(0.5, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(min(w, round(w * np.sqrt(area * aspect))))
        ch = int(min(h, round(h * np.sqrt(area / aspect))))
        x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        crop = im.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        side = int(rng.integers(128, 513))
        scale = side / max(cw, ch)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BILINEAR)
        crop.save(out, quality=int(rng.integers(60, 96)))
    return len(outputs)


def build_folder(root: Path, count: int) -> dict:
    """``root/train/<class>/*.jpg`` (``count`` files) and ``root/val/<class>/*.jpg``."""
    t0 = time.perf_counter()
    photos = kit_photos()
    jobs = []
    for split, n in (("train", count), ("val", VAL_COUNT)):
        per_class = n // len(photos)
        for c, (name, paths) in enumerate(sorted(photos.items())):
            folder = root / split / name
            folder.mkdir(parents=True)
            outs: dict[int, list[str]] = {}
            for i in range(per_class + (c < n % len(photos))):
                outs.setdefault(i % len(paths), []).append(str(folder / f"{split}_{i:06d}.jpg"))
            jobs += [(paths[j], o, hash((split, name, j)) % 2**32) for j, o in outs.items()]
    with Pool(os.cpu_count()) as pool:
        written = sum(pool.imap_unordered(_variants, jobs, chunksize=8))
    size = sum(f.stat().st_size for f in root.rglob("*.jpg"))
    return {
        "files": written,
        "bytes": size,
        "seconds": round(time.perf_counter() - t0, 1),
        "kit_photos": sum(map(len, photos.values())),
    }


# ---- arms -------------------------------------------------------------------------------------
def _stop_at_first_step(t0: float, result: dict) -> None:
    """Makes the next ``fit`` end the process after its first batch, emitting ``result``."""
    import keras

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            result["first_step_s"] = round(time.perf_counter() - t0, 1)
            emit(result)
            os._exit(0)

    fit = keras.Model.fit

    def fit_once(self, *args, callbacks=None, **kwargs):
        return fit(self, *args, callbacks=[*(callbacks or []), FirstStep()], **kwargs)

    keras.Model.fit = fit_once


def arm_tfxfer(data: str, recipe: str, size: int, out: str, manual_dir: str | None) -> None:
    import importlib

    from tfxfer.train import loop

    t0 = time.perf_counter()
    result: dict = {
        "arm": data if data.startswith(("tfds:", "tfrecord:")) else "tfxfer",
        "size": size,
    }
    load = loop.load_data

    def timed_load(cfg, size, shard=None):
        start = time.perf_counter()
        data_ = load(cfg, size) if shard is None else load(cfg, size, shard)
        seconds = time.perf_counter() - start
        n = len(data_.train) + len(data_.val)
        if data.startswith("tfrecord:"):  # labels read, validation decoded; training streams
            result.update(images=n, load_s=round(seconds, 1))
        else:
            result.update(images=n, decode_s=round(seconds, 1), images_per_s=round(n / seconds, 1))
        return data_

    loop.load_data = timed_load
    _stop_at_first_step(t0, result)
    module = importlib.import_module(f"tfxfer.recipes.{recipe}")
    cfg = module.CONFIG.replace(
        data=data,
        image_size=size,
        output=out,
        overwrite=True,
        verbose=0,
        manual_dir=manual_dir,
        cache_features=False,
    )
    loop.run(cfg)
    raise SystemExit("the run ended without a training step")


def arm_keras(root: str, size: int) -> None:
    import keras
    import tensorflow as tf

    t0 = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(
        os.path.join(root, "train"),
        image_size=(size, size),
        batch_size=64,
        seed=0,
        label_mode="categorical",
    )
    classes = len(ds.class_names)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    base = keras.applications.MobileNetV2(
        include_top=False, weights="imagenet", input_shape=(size, size, 3), pooling="avg"
    )
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    model = keras.Model(inputs, keras.layers.Dense(classes)(base(x, training=False)))
    model.compile("adam", keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(ds.take(1), verbose=0)
    first = time.perf_counter() - t0
    start, n = time.perf_counter(), 0
    for x, _ in ds:
        n += int(x.shape[0])
    seconds = time.perf_counter() - start
    emit(
        {
            "arm": "keras",
            "size": size,
            "images": n,
            "decode_s": round(seconds, 1),
            "images_per_s": round(n / seconds, 1),
            "first_step_s": round(first, 1),
        }
    )


def arm_stream_pass(shards: str, size: int) -> None:
    """One pass over a ``tfrecord:`` training split: read, decode in the graph, resize."""
    from tfxfer.data import sources

    data = sources.load(f"tfrecord:{shards}", size)
    start, n = time.perf_counter(), 0
    for x, _ in data.train.records(shuffle=True, seed=0).batch(64).prefetch(8):
        n += int(x.shape[0])
    seconds = time.perf_counter() - start
    emit(
        {
            "arm": "tfrecord pass",
            "size": size,
            "images": n,
            "decode_s": round(seconds, 1),
            "images_per_s": round(n / seconds, 1),
        }
    )


def prepare_tfds(name: str, manual_dir: str) -> float:
    import tensorflow_datasets as tfds

    t0 = time.perf_counter()
    builder = tfds.builder(name, data_dir=os.environ["TFDS_DATA_DIR"])
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return time.perf_counter() - t0


# ---- driver -----------------------------------------------------------------------------------
COLUMNS = [
    ("arm", "loader"),
    ("images", "images"),
    ("size", "px"),
    ("prepare_s", "prepare s"),
    ("load_s", "load s"),
    ("decode_s", "decode s"),
    ("images_per_s", "decode images/s"),
    ("first_step_s", "to first step s"),
    ("peak_rss_mb", "peak RSS MB"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--workdir", default=None, help="where the JPEGs go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the JPEG folder")
    p.add_argument(
        "--tfrecord",
        action="store_true",
        help="also write the folder as 64 TFRecord shards (timed) and stream them: "
        "one pass, and the recipe to its first step",
    )
    p.add_argument("--table", action="store_true", help="print the saved results")
    p.add_argument("--arm", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--recipe", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--manual-dir", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.arm == "tfxfer":
        return arm_tfxfer(a.data, a.recipe, a.size, a.out, a.manual_dir)
    if a.arm == "keras":
        return arm_keras(a.data, a.size)
    if a.arm == "stream":
        return arm_stream_pass(a.data, a.size)
    results = Path(__file__).resolve().parent / "results" / "scale.json"
    if a.table:
        payload = json.loads(results.read_text())
        print(payload["machine"], "|", payload["folder"])
        print(table(payload["rows"], COLUMNS))
        return None
    work = Path(a.workdir or tempfile.mkdtemp(prefix="tfxfer-scale-"))
    root = work / "jpegs"
    rows = []
    try:
        folder = build_folder(root, a.count)
        print(
            f"built {folder['files']:,} JPEGs, {folder['bytes'] / 2**30:.2f} GiB, in "
            f"{folder['seconds']:.0f}s",
            flush=True,
        )
        rows.append(
            run_arm(
                __file__,
                [
                    "--arm",
                    "tfxfer",
                    "--data",
                    str(root),
                    "--recipe",
                    "large_similar",
                    "--size",
                    str(SIZE),
                    "--out",
                    str(work / "run"),
                ],
            )
        )
        rows.append(run_arm(__file__, ["--arm", "keras", "--data", str(root), "--size", str(SIZE)]))
        if a.tfrecord:
            from tfxfer.data import tfrecord

            start = time.perf_counter()
            tfrecord.write(str(root), str(work / "shards"), shards=64)
            written = round(time.perf_counter() - start, 1)
            rows.append(
                {
                    **run_arm(
                        __file__,
                        ["--arm", "stream", "--data", str(work / "shards"), "--size", str(SIZE)],
                    ),
                    "prepare_s": written,
                }
            )
            rows.append(
                run_arm(
                    __file__,
                    [
                        "--arm",
                        "tfxfer",
                        "--data",
                        f"tfrecord:{work / 'shards'}",
                        "--recipe",
                        "large_similar",
                        "--size",
                        str(SIZE),
                        "--out",
                        str(work / "run-tfrecord"),
                    ],
                )
            )
        os.environ.setdefault("TFDS_DATA_DIR", str(work / "tfds"))
        kit = os.environ["TFXFER_DATA_DIR"]
        for name, folder_name in (("fashion_mnist", "fashion-mnist"), ("mnist", "mnist")):
            prepare = prepare_tfds(name, os.path.join(kit, folder_name))
            row = run_arm(
                __file__,
                [
                    "--arm",
                    "tfxfer",
                    "--data",
                    f"tfds:{name}",
                    "--recipe",
                    "large_different",
                    "--size",
                    "32",
                    "--out",
                    str(work / f"run-{name}"),
                    "--manual-dir",
                    os.path.join(kit, folder_name),
                ],
            )
            rows.append({**row, "prepare_s": round(prepare, 1)})
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    for row in rows:
        print(json.dumps(row), flush=True)
    save(
        "scale",
        {"machine": machine(), "folder": folder, "rows": rows, "date": time.strftime("%Y-%m-%d")},
    )
    print(table(rows, COLUMNS))
    return None


if __name__ == "__main__":
    main()
