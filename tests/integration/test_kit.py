"""Real data and real ImageNet weights from ../shared, through the code paths a user takes."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.kit


def test_main_job_small_similar_on_hymenoptera_reaches_092_and_the_savedmodel_agrees(tmp_path):
    """README command 1: the default recipe, ImageNet MobileNetV2, real hymenoptera."""
    from tfxfer.recipes import small_similar

    cfg = small_similar.CONFIG.replace(output=str(tmp_path / "run"), verbose=0)
    result = small_similar.run(cfg)
    assert result.metrics["val_accuracy"] >= 0.92, result.metrics
    assert result.metrics["num_val"] == 153
    # Documented rule: the GIF placeholder train/ants/imageNotFound.gif is decoded as its first
    # frame and kept (as keras.utils.image_dataset_from_directory does): 124 ants, none skipped.
    report = json.loads(Path(result.paths["data_report"]).read_text())
    assert report["counts"]["train"] == {"ants": 124, "bees": 121}
    assert report["skipped_unreadable"] == []
    # A fresh process that never imports tfxfer sends every validation FILE (JPEGs of their
    # own sizes, e.g. 500x375) to serve_bytes and gets class names and probabilities back.
    script = textwrap.dedent(f"""
        import glob, json, os, sys, tensorflow as tf
        served = tf.saved_model.load({result.paths["saved_model"]!r})
        root = os.path.join(os.environ["TFXFER_DATA_DIR"], "hymenoptera_data", "val")
        out = {{}}
        for f in sorted(glob.glob(os.path.join(root, "*", "*"))):
            r = served.serve_bytes(tf.constant([open(f, "rb").read()]))
            out[f] = {{"top1": r["top_k_classes"].numpy()[0, 0].decode(),
                      "probabilities": r["probabilities"].numpy()[0].tolist()}}
        assert not any(m.startswith("tfxfer") for m in sys.modules), "tfxfer was imported"
        print(json.dumps(out))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(served) == 153
    # Parity with the training pipeline: Pillow decode (tfxfer.data.images) -> Keras model.
    import numpy as np
    import tensorflow as tf

    from tfxfer.data.images import decode

    files = sorted(served)
    images = np.stack([decode(f, 224) for f in files]).astype("float32")
    trained = tf.nn.softmax(result.model.plain_model.predict(images, verbose=0)).numpy()
    got = np.array([served[f]["probabilities"] for f in files])
    agree = float((got.argmax(1) == trained.argmax(1)).mean())
    max_diff = float(np.abs(got - trained).max())
    print(f"served vs trained on 153 files: argmax agreement {agree:.4f}, max |dp| {max_diff:.4f}")
    # The bar is 99.5% and 0.02; the in-graph decode is bit-exact, so only float
    # summation order (a batch against one image) is left.
    assert agree == 1.0 and max_diff < 1e-4, (agree, max_diff)
    names = ["ants", "bees"]
    assert all(served[f]["top1"] == names[int(p.argmax())] for f, p in zip(files, got))
    correct = sum(served[f]["top1"] == Path(f).parent.name for f in files)
    assert abs(correct - result.metrics["correct"]) <= 1, (correct, result.metrics["correct"])


def test_fashion_mnist_stays_uint8_at_28px_and_is_resized_per_batch():
    """60,000 images are never materialised as float32 at backbone resolution."""
    from tfxfer.data import pipeline
    from tfxfer.data import sources as data

    ds = data.load("fashion_mnist", 224)
    assert ds.train.images.shape == (60000, 28, 28, 1) and ds.train.images.dtype == "uint8"
    assert ds.val.images.shape == (10000, 28, 28, 1)
    assert ds.counts()["train"]["Sandal"] == 6000
    x, y = next(iter(pipeline.image_dataset(ds.train, 10, 224, batch_size=8)))
    assert x.shape == (8, 224, 224, 3) and x.dtype == "float32" and y.shape == (8, 10)
    assert float(x.numpy().max()) <= 255.0


@pytest.mark.slow
def test_tfds_source_reads_fashion_mnist_from_the_kit_as_manual_dir(tmp_path, monkeypatch):
    """``--data tfds:fashion_mnist`` with the kit's IDX files as TFDS manual_dir (no network)."""
    import os

    pytest.importorskip("tensorflow_datasets", reason="the tfds extra is not installed")
    from tfxfer.data import sources as data

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    manual = os.path.join(os.environ["TFXFER_DATA_DIR"], "fashion-mnist")
    ds = data.load("tfds:fashion_mnist", 32, manual_dir=manual, train_per_class=20, val_per_class=5)
    assert ds.class_names[:2] == ["T-shirt/top", "Trouser"] and ds.num_classes == 10
    assert ds.train.images.shape == (200, 28, 28, 1) and ds.val.images.shape == (50, 28, 28, 1)
    assert set(ds.counts()["val"].values()) == {5}
    # the whole splits stream into storage.allocate: a disk memmap above the budget (10 MB here)
    import keras
    import numpy as np
    import tensorflow as tf

    from tfxfer.data.tfds_source import load_tfds

    monkeypatch.setenv("TFXFER_MEMORY_BUDGET_GB", "0.01")
    monkeypatch.setenv("TFXFER_CACHE_DIR", str(tmp_path / "cache"))
    train, val, _, _ = load_tfds("fashion_mnist", 32, manual_dir=manual)
    assert isinstance(train.images, np.memmap) and not isinstance(val.images, np.memmap)
    (x_train, y_train), (x_val, y_val) = keras.datasets.fashion_mnist.load_data()  # the IDX files

    def rows(images, labels):  # order-free: TFDS shuffles examples when it prepares them
        flat = np.asarray(images).reshape(len(labels), -1)
        return sorted(zip(map(bytes, flat), np.asarray(labels).tolist()))

    assert rows(train.images, train.labels) == rows(x_train, y_train)
    assert rows(val.images, val.labels) == rows(x_val, y_val)
    # above the model input (16 px here) every image is resized once, to RGB, while streaming
    _, small, _, _ = load_tfds("fashion_mnist", 16, manual_dir=manual)
    expected = tf.image.resize(
        tf.image.grayscale_to_rgb(tf.cast(x_val[..., None], tf.float32)), (16, 16), antialias=True
    )
    expected = tf.cast(tf.clip_by_value(expected + 0.5, 0, 255), tf.uint8).numpy()
    assert small.images.shape == (10000, 16, 16, 3)
    assert rows(small.images, small.labels) == rows(expected, y_val)


def test_digit_domains_read_from_the_kit_match_the_manifest_and_share_one_label_set():
    """MNIST (IDX), USPS (HDF5) and MNIST-M (folders) against independent reads of the files."""
    import gzip
    import os

    import h5py
    import numpy as np

    from tfxfer.data import sources

    root = os.environ["TFXFER_DATA_DIR"]
    mnist = sources.load("mnist", 28)
    assert mnist.train.images.shape == (60000, 28, 28, 1) and len(mnist.val) == 10000
    assert np.bincount(mnist.train.labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    with gzip.open(os.path.join(root, "mnist", "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    assert np.array_equal(
        mnist.val.images[-1, ..., 0], np.frombuffer(raw[-784:], np.uint8).reshape(28, 28)
    )
    usps = sources.load("usps", 16)
    assert np.bincount(usps.train.labels).tolist() == [
        1194,
        1005,
        731,
        658,
        652,
        556,
        664,
        645,
        542,
        644,
    ]
    assert len(usps.val) == 2007
    with h5py.File(os.path.join(root, "usps.h5")) as f:
        first = f["train/data"][0]
    assert (
        np.abs(usps.train.images[0, ..., 0].astype(float) / 255 - first.reshape(16, 16)).max()
        <= 0.5 / 255 + 1e-6
    )
    mnist_m = sources.load("mnist_m", 32, train_per_class=2, val_per_class=2)
    counts = {
        s: sum(len(files) for _, _, files in os.walk(os.path.join(root, "mnist_m", s)))
        for s in ("train", "test")
    }
    assert counts == {"train": 10000, "test": 9001}
    digits = [str(d) for d in range(10)]
    assert mnist.class_names == usps.class_names == mnist_m.class_names == digits
