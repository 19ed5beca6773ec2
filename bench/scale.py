"""Data at scale: tfxfer's folder loader against Keras's, on phone photos and on 200,000 files.

Issue 17's check, extended by issue 31. Two sets of JPEGs, built from the kit's real photos
(cats_and_dogs_filtered and hymenoptera, 4 classes) and deleted at the end:

- ``phone``: ``--phone-count`` (default 20,000) training photos of 3-12 MP, as phones write
  them: a random crop (70-100% of the area) of a kit photo, upscaled to a random 3-12
  megapixels at 4:3 (portrait or landscape), saved at a random JPEG quality of 70-95, and a
  third of them stored sideways with an EXIF orientation tag (6), as a phone held upright does;
  plus :data:`PHONE_VAL` validation photos made the same way;
- ``small``: ``--count`` (default 200,000) training photos of 128-512 px (a random crop of
  50-100%, flipped at random, a random long side of 128-512 px, quality 60-95), plus
  :data:`VAL_COUNT` validation photos.

Each arm runs in its own process (its peak RSS is its own, ``bench/_harness.py``) and writes its
own JSON to ``bench/arms/scale/`` (tracked): a later invocation skips the arms already there, so
the bench resumes per arm across sessions (the folders are kept in ``--workdir`` until every arm
of their set is done). Arms, per set, all at 112 px and batch 64:

- ``tfxfer_epochs`` and ``keras_epochs``: the training split read twice, as two epochs of
  training would read it, without a model: tfxfer's streamed folder (:mod:`tfxfer.data.filling`:
  the first epoch is decoded as it goes and fills the cache; the second reads the cache) and
  ``keras.utils.image_dataset_from_directory`` (which decodes every epoch). Decode images/s is
  the first epoch's rate; "first batch" is from the start of the load;
- ``tfxfer_first_step`` and ``keras_first_step``: time from the start to the end of the first
  training step, as a user runs it: the ``large_similar`` recipe on the folder (on images,
  ``cache_features=False``, or its head phase would first featurise every image), and a
  MobileNetV2 on the Keras dataset with one ``fit`` step.
- with ``--tfds``: ``tfds:fashion_mnist`` and ``tfds:mnist``, each prepared by TFDS from the
  kit's IDX files through ``manual_dir`` (timed), then ``large_different`` at 32 px to its first
  step; with ``--tfrecord``: the small set written as 64 ``tfrecord:`` shards (timed), one
  streamed pass over them, and the recipe on them to its first step.

Run: ``python bench/scale.py`` (about 1.5 hours on 2 CPU cores; ~45 GB of free disk for the
phone photos, ~4 GB for the small set and ~8 GB under ``TFXFER_CACHE_DIR`` for its decoded
memmap). ``--sets small --count 20000`` for a quick look. ``--table`` prints the tables again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import emit, machine, run_arm, table

SIZE = 112
BATCH = 64
VAL_COUNT = 2000
PHONE_VAL = 500
KIT_PHOTOS = (("cats_and_dogs_filtered", ("cats", "dogs")), ("hymenoptera_data", ("ants", "bees")))
ARMS_DIR = Path(__file__).resolve().parent / "arms" / "scale"
SETS = ("phone", "small")
ARMS = ("tfxfer_epochs", "keras_epochs", "tfxfer_first_step", "keras_first_step")


# ---- the folders ------------------------------------------------------------------------------
def kit_photos() -> dict[str, list[str]]:
    """The kit's photos by class: {class: [paths]} (``$TFXFER_DATA_DIR``, unpacked)."""
    by_class: dict[str, list[str]] = {}
    for folder, classes in KIT_PHOTOS:
        for path in sorted((Path(os.environ["TFXFER_DATA_DIR"]) / folder).rglob("*.jp*g")):
            if path.parent.name in classes:
                by_class.setdefault(path.parent.name, []).append(str(path))
    return by_class


def _crop(im, rng, smallest: float):
    w, h = im.size
    area = rng.uniform(smallest, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(min(w, round(w * np.sqrt(area * aspect))))
    ch = int(min(h, round(h * np.sqrt(area / aspect))))
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    return im.crop((x0, y0, x0 + cw, y0 + ch))


def _small(im, rng, out: str) -> None:
    from PIL import Image

    crop = _crop(im, rng, 0.5)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    cw, ch = crop.size
    scale = int(rng.integers(128, 513)) / max(cw, ch)
    crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BILINEAR)
    crop.save(out, quality=int(rng.integers(60, 96)))


def _phone(im, rng, out: str) -> None:
    from PIL import Image

    crop = _crop(im, rng, 0.7)
    pixels = rng.uniform(3e6, 12e6)
    long, short = int(round(np.sqrt(pixels * 4 / 3))), int(round(np.sqrt(pixels * 3 / 4)))
    w, h = (long, short) if crop.size[0] >= crop.size[1] else (short, long)
    photo = crop.resize((w, h), Image.BILINEAR)
    exif = Image.Exif()
    if rng.random() < 1 / 3:  # stored sideways, upright once the EXIF orientation is applied
        photo = photo.transpose(Image.ROTATE_90)
        exif[0x0112] = 6
    photo.save(out, quality=int(rng.integers(70, 96)), exif=exif.tobytes())


def _variants(job) -> int:
    """Writes the variants of one kit photo (one task of the pool)."""
    from PIL import Image

    kind, source, outputs, seed = job
    rng = np.random.default_rng(seed)
    with Image.open(source) as im:
        im = im.convert("RGB")
        im.load()
    for out in outputs:
        (_phone if kind == "phone" else _small)(im, rng, out)
    return len(outputs)


def build_folder(root: Path, kind: str, count: int, val: int) -> dict:
    """``root/train/<class>/*.jpg`` (``count`` files) and ``root/val/<class>/*.jpg``; reused
    when ``root/folder.json`` says it was built complete with the same counts."""
    marker = root / "folder.json"
    if marker.is_file():
        built = json.loads(marker.read_text())
        if (built["kind"], built["train"], built["val"]) == (kind, count, val):
            return built
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    photos = kit_photos()
    jobs = []
    for split, n in (("train", count), ("val", val)):
        per_class = n // len(photos)
        for c, (name, paths) in enumerate(sorted(photos.items())):
            folder = root / split / name
            folder.mkdir(parents=True)
            outs: dict[int, list[str]] = {}
            for i in range(per_class + (c < n % len(photos))):
                outs.setdefault(i % len(paths), []).append(str(folder / f"{split}_{i:06d}.jpg"))
            jobs += [(kind, paths[j], o, hash((split, name, j)) % 2**32) for j, o in outs.items()]
    with Pool(os.cpu_count()) as pool:
        written = sum(pool.imap_unordered(_variants, jobs, chunksize=4))
    built = {
        "kind": kind,
        "train": count,
        "val": val,
        "files": written,
        "bytes": sum(f.stat().st_size for f in root.rglob("*.jpg")),
        "seconds": round(time.perf_counter() - t0, 1),
        "kit_photos": sum(map(len, photos.values())),
    }
    marker.write_text(json.dumps(built))
    return built


# ---- arms (each in its own process) -----------------------------------------------------------
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


def arm_tfxfer_first_step(data: str, recipe: str, size: int, out: str, manual_dir) -> None:
    import importlib

    from tfxfer.train import loop

    t0 = time.perf_counter()
    result: dict = {"arm": "tfxfer_first_step", "size": size}
    load = loop.load_data

    def timed_load(cfg, size, shard=None):
        start = time.perf_counter()
        data_ = load(cfg, size) if shard is None else load(cfg, size, shard)
        result.update(images=len(data_.train) + len(data_.val))
        result.update(load_s=round(time.perf_counter() - start, 1))
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


def _passes(ds, epochs: int, t0: float) -> dict:
    """Times ``epochs`` passes over ``ds``: the first batch (from ``t0``) and each pass."""
    result: dict = {}
    for epoch in range(epochs):
        start, n = time.perf_counter(), 0
        for x, _ in ds:
            if "first_batch_s" not in result:
                result["first_batch_s"] = round(time.perf_counter() - t0, 2)
            n += int(x.shape[0])
        seconds = time.perf_counter() - (t0 if epoch == 0 else start)
        result[f"epoch{epoch + 1}_s"] = round(seconds, 2)
        if epoch == 0:
            result.update(images=n, images_per_s=round(n / seconds, 1))
    return result


def arm_tfxfer_epochs(root: str, size: int) -> None:
    """Two passes over the streamed training split (the first decodes, the second reads the
    cache); the validation split is decoded between them, timed apart."""
    from tfxfer.data import pipeline, sources

    t0 = time.perf_counter()
    data = sources.load(root, size)
    ds = pipeline.image_dataset(
        data.train, len(data.class_names), size, BATCH, shuffle=True, seed=0
    )
    first = _passes(ds, 1, t0)  # the load, and the first epoch as it is decoded
    start = time.perf_counter()
    data.val.finish()
    val_s = round(time.perf_counter() - start, 1)
    second = _passes(ds, 1, time.perf_counter())  # from the cache
    emit(
        {
            **first,
            "epoch2_s": second["epoch1_s"],
            "val_decode_s": val_s,
            "arm": "tfxfer_epochs",
            "size": size,
            "streamed": type(data.train).__name__ == "FillingSplit",
        }
    )


def arm_keras_epochs(root: str, size: int) -> None:
    import keras

    t0 = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(
        os.path.join(root, "train"), image_size=(size, size), batch_size=BATCH, seed=0
    )
    emit({**_passes(ds, 2, t0), "arm": "keras_epochs", "size": size})


def arm_keras_first_step(root: str, size: int) -> None:
    import keras
    import tensorflow as tf

    t0 = time.perf_counter()
    ds = keras.utils.image_dataset_from_directory(
        os.path.join(root, "train"),
        image_size=(size, size),
        batch_size=BATCH,
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
    emit(
        {
            "arm": "keras_first_step",
            "size": size,
            "first_step_s": round(time.perf_counter() - t0, 1),
        }
    )


def arm_stream_pass(shards: str, size: int) -> None:
    """One pass over a ``tfrecord:`` training split: read, decode in the graph, resize."""
    from tfxfer.data import sources

    data = sources.load(f"tfrecord:{shards}", size)
    t0 = time.perf_counter()
    result = _passes(data.train.records(shuffle=True, seed=0).batch(BATCH).prefetch(8), 1, t0)
    emit({**result, "arm": "tfrecord_pass", "size": size})


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
    ("set", "set"),
    ("loader", "loader"),
    ("images", "images"),
    ("images_per_s", "decode images/s (epoch 1)"),
    ("first_batch_s", "first batch s"),
    ("epoch1_s", "epoch 1 s"),
    ("epoch2_s", "epoch 2 s"),
    ("two_epochs_s", "two epochs s"),
    ("first_step_s", "to first step s"),
    ("peak_rss_mb", "peak RSS MB (epochs / first step)"),
]


def arm_path(set_name: str, arm: str) -> Path:
    return ARMS_DIR / f"{set_name}-{arm}.json"


def run_set(set_name: str, root: Path, work: Path, arms) -> None:
    """Runs the arms of one set that have no JSON yet."""
    for arm in arms:
        path = arm_path(set_name, arm)
        if path.exists():
            continue
        if arm == "tfxfer_first_step":
            args = ["--data", str(root), "--recipe", "large_similar", "--out", str(work / "run")]
        else:
            args = ["--data", str(root)]
        result = run_arm(__file__, ["--arm", arm, *args, "--size", str(SIZE)])
        result.update(set=set_name, machine=machine(), date=time.strftime("%Y-%m-%d"))
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(set_name, json.dumps(result), flush=True)


def rows() -> list[dict]:
    """One row per set and loader, from the arm JSONs."""
    out = []
    for set_name in SETS:
        for loader in ("tfxfer", "keras"):
            row: dict = {"set": set_name, "loader": loader}
            rss = []
            for kind in ("epochs", "first_step"):
                path = arm_path(set_name, f"{loader}_{kind}")
                if path.exists():
                    arm = json.loads(path.read_text())
                    skip = ("arm", "peak_rss_mb") + (("images",) if kind == "first_step" else ())
                    row.update({k: v for k, v in arm.items() if k not in skip})
                    rss.append(f"{arm['peak_rss_mb']:,.0f}")
            if "epoch2_s" in row:
                row["two_epochs_s"] = round(row["epoch1_s"] + row["epoch2_s"], 1)
            row["peak_rss_mb"] = " / ".join(rss)
            if len(row) > 3:
                out.append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--count", type=int, default=200_000, help="small set: training files")
    p.add_argument("--phone-count", type=int, default=20_000, help="phone set: training files")
    p.add_argument("--workdir", default=None, help="where the JPEGs go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the JPEG folders")
    p.add_argument("--tfds", action="store_true", help="also the two tfds: arms")
    p.add_argument(
        "--tfrecord",
        action="store_true",
        help="also write the small set as 64 TFRecord shards (timed) and stream them: "
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
    if a.arm == "tfxfer_first_step":
        return arm_tfxfer_first_step(a.data, a.recipe, a.size, a.out, a.manual_dir)
    if a.arm:
        return {
            "tfxfer_epochs": arm_tfxfer_epochs,
            "keras_epochs": arm_keras_epochs,
            "keras_first_step": arm_keras_first_step,
            "tfrecord_pass": arm_stream_pass,
        }[a.arm](a.data, a.size)
    if a.table:
        print(table(rows(), COLUMNS))
        return None
    ARMS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(a.workdir or os.path.join(os.environ.get("TMPDIR", "/tmp"), "tfxfer-scale"))
    for set_name in a.sets.split(","):
        if set_name not in SETS:
            p.error(f"--sets takes {list(SETS)}; got {set_name!r}")
        if all(arm_path(set_name, arm).exists() for arm in ARMS):
            continue
        root = work / set_name
        count, val = (a.phone_count, PHONE_VAL) if set_name == "phone" else (a.count, VAL_COUNT)
        folder = build_folder(root, set_name, count, val)
        print(f"{set_name}: {json.dumps(folder)}", flush=True)
        (ARMS_DIR / f"{set_name}-folder.json").write_text(json.dumps(folder, indent=1) + "\n")
        run_set(set_name, root, work, ARMS)
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    if a.tfrecord or a.tfds:
        extras(a, work)
    print(machine())
    print(table(rows(), COLUMNS))
    return None


def extras(a, work: Path) -> None:
    """The ``--tfrecord`` and ``--tfds`` arms (printed, saved in ``bench/arms/scale/``)."""
    if a.tfrecord:
        from tfxfer.data import tfrecord

        root = work / "small"
        build_folder(root, "small", a.count, VAL_COUNT)
        start = time.perf_counter()
        tfrecord.write(str(root), str(work / "shards"), shards=64)
        written = round(time.perf_counter() - start, 1)
        row = run_arm(
            __file__,
            ["--arm", "tfrecord_pass", "--data", str(work / "shards"), "--size", str(SIZE)],
        )
        step = run_arm(
            __file__,
            [
                "--arm",
                "tfxfer_first_step",
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
        result = {**row, "prepare_s": written, "first_step_s": step["first_step_s"]}
        arm_path("small", "tfrecord").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    if a.tfds:
        os.environ.setdefault("TFDS_DATA_DIR", str(work / "tfds"))
        kit = os.environ["TFXFER_DATA_DIR"]
        for name, folder_name in (("fashion_mnist", "fashion-mnist"), ("mnist", "mnist")):
            prepare = prepare_tfds(name, os.path.join(kit, folder_name))
            row = run_arm(
                __file__,
                [
                    "--arm",
                    "tfxfer_first_step",
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
            result = {**row, "prepare_s": round(prepare, 1)}
            arm_path("tfds", name).write_text(json.dumps(result, indent=1) + "\n")
            print(json.dumps(result))


if __name__ == "__main__":
    main()
