"""The first epoch streams while the cache fills (:mod:`tfxfer.data.filling`).

- A streamed folder ends as the same data as one decoded up front: the same pixels, labels and
  skipped files, bit for bit, in both splits.
- The first batch comes while the rest of the folder is still undecoded: a gate holds every
  other file's decode until the first batch has been read.
- No row is read before it is written: each first-epoch batch equals the rows decoded up front,
  though every decode is slowed and the cache starts as a sentinel value.
- Every epoch is a permutation of the readable rows: the first is the seeded decode order, the
  later ones are fresh, differ from each other, and follow the seed.
- A class left without a readable image is a one-line error, also when it surfaces inside fit.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_class_images

from tfxfer import storage
from tfxfer.data import filling, pipeline, sources
from tfxfer.data import images as image_files
from tfxfer.data.filling import FillingSplit
from tfxfer.errors import UserError

SIZE = 16


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    write_class_images(root / "train", {"a": 20, "b": 17})
    write_class_images(root / "val", {"a": 4, "b": 5}, seed=1)
    (root / "train" / "a" / "a_broken.jpg").write_bytes(b"not a jpeg")
    (root / "val" / "b" / "b_empty.jpg").write_bytes(b"")
    return root


def _streamed(root, monkeypatch, seed=0):
    monkeypatch.setenv("TFXFER_STREAM_MIN_FILES", "0")
    data = sources.load(str(root), SIZE, seed=seed)
    assert isinstance(data.train, FillingSplit) and isinstance(data.val, FillingSplit)
    return data


def _epoch(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def test_a_streamed_folder_ends_as_the_same_data_as_one_decoded_up_front(folder, monkeypatch):
    eager = sources.load(str(folder), SIZE)
    assert not isinstance(eager.train, FillingSplit)  # 38 files: under the default threshold
    data = _streamed(folder, monkeypatch)
    for got, want in ((data.train, eager.train), (data.val, eager.val)):
        np.testing.assert_array_equal(got.images, want.images)
        np.testing.assert_array_equal(got.labels, want.labels)
    assert len(data.train) == 37
    assert data.skipped == eager.skipped and len(data.skipped) == 2
    assert data.report() == eager.report()


def test_the_first_batch_comes_before_the_rest_is_decoded(folder, monkeypatch):
    paths = [str(p) for p in sorted((folder / "train").rglob("*.jpg"))]
    first = {paths[i] for i in np.random.default_rng([0, 0]).permutation(len(paths))[:4]}
    gate, real = threading.Event(), image_files.decode

    def gated(path, size):  # every file but the first batch's waits for the gate
        if path not in first:
            gate.wait(60)
        return real(path, size)

    monkeypatch.setattr(image_files, "decode", gated)
    train, _ = filling.stream_splits((paths, np.zeros(len(paths))), ([], []), SIZE, 0, [])
    batches = iter(train.batches(4, seed=0))
    x, _ = next(batches)  # with the whole folder decoded first, this would wait for the gate
    assert len(x) == 4 - any("broken" in p for p in first)
    assert not train.complete and train.ready.sum() <= 4
    gate.set()
    assert len(x) + sum(len(x) for x, _ in batches) == len(paths) - 1  # the broken one left out
    assert train.complete and len(train) == len(paths) - 1


def test_no_row_is_read_before_it_is_written(folder, monkeypatch):
    eager = sources.load(str(folder), SIZE)
    real, allocate = image_files.decode, storage.allocate

    val_gate = threading.Event()

    def slow(path, size):
        time.sleep(0.01)
        if "/val/" in path:  # validation decodes wait until its dataset is made
            val_gate.wait(60)
        return real(path, size)

    def sentinel(shape, dtype, budget=None):
        array = allocate(shape, dtype, budget)
        array[...] = 77  # what a read of a row not yet written would return
        return array

    monkeypatch.setattr(image_files, "decode", slow)
    monkeypatch.setattr(filling.storage, "allocate", sentinel)
    data = _streamed(folder, monkeypatch)
    readable = [p for p in data.train.paths if "broken" not in p]  # the up-front decode's rows
    ds = pipeline.image_dataset(data.train, 2, SIZE, 5, shuffle=True, seed=0)
    val_ds = pipeline.image_dataset(data.val, 2, SIZE, 4)  # made before its rows are decoded
    assert not data.val.complete
    val_gate.set()
    images, labels = _epoch(ds)
    order = [i for i in data.train.order if "broken" not in data.train.paths[i]]
    assert len(images) == len(order) == 37  # the first epoch: the decode order
    want = eager.train.images[[readable.index(data.train.paths[i]) for i in order]]
    np.testing.assert_array_equal(images, want.astype(np.float32))
    np.testing.assert_array_equal(
        labels.argmax(1),
        np.asarray(data.train.labels)[[readable.index(data.train.paths[i]) for i in order]],
    )
    val_images, val_labels = _epoch(val_ds)  # in file order, the empty file left out
    np.testing.assert_array_equal(val_images, eager.val.images.astype(np.float32))
    np.testing.assert_array_equal(val_labels.argmax(1), eager.val.labels)


def test_every_epoch_is_a_permutation_of_the_readable_rows_reshuffled_by_seed(folder, monkeypatch):
    orders = []
    for seed in (0, 0, 1):
        data = _streamed(folder, monkeypatch, seed=seed)
        ds = pipeline.image_dataset(data.train, 2, SIZE, 8, shuffle=True, seed=seed)
        epochs = [_epoch(ds)[0].reshape(37, -1) for _ in range(3)]
        keys = [[row.tobytes() for row in e] for e in epochs]
        assert all(sorted(k) == sorted(keys[0]) for k in keys)  # the same rows, once each
        assert len({tuple(k) for k in keys}) == 3  # three different orders
        orders.append(keys)
    assert orders[0] == orders[1]  # the seed decides every epoch's order
    assert orders[0][0] != orders[2][0] and orders[0][1] != orders[2][1]


def test_a_class_without_readable_images_is_a_one_line_error(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_class_images(root / "train", {"a": 6})
    write_class_images(root / "val", {"a": 2, "b": 2})
    (root / "train" / "b").mkdir()
    (root / "train" / "b" / "x.jpg").write_bytes(b"")
    with pytest.raises(UserError) as exc:  # at load when the decode is done by then, else later
        _streamed(root, monkeypatch).train.finish()
    message = str(exc.value)
    assert "training split must hold readable images of every class" in message
    assert "missing: ['b']" in message and "\n" not in message
    paths = [str(p) for p in sorted((root / "train").rglob("*.jpg"))]
    train, val = filling.stream_splits((paths, [0] * 6 + [1]), (paths[:1], [0]), SIZE, 0, [])
    train.wait()
    data = type("Data", (), {"train": train, "val": val})()
    with pytest.raises(UserError, match="missing: \\[1\\]"):  # no class names given: indices
        filling.check(data)  # what fit's error handler calls: the same line
    # the image trainers (loop, adapt, distill) fit inside filling.surfaced: the line again
    op_error = tf.errors.InvalidArgumentError(None, None, "pyfunc failed")
    with pytest.raises(UserError, match="missing: \\[1\\]"):
        with filling.surfaced(data):
            raise op_error
    whole = type("Data", (), {"train": val, "val": val})()  # no streamed error: as it was
    with pytest.raises(tf.errors.InvalidArgumentError):
        with filling.surfaced(whole):
            raise op_error


def test_a_bad_threshold_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("TFXFER_STREAM_MIN_FILES", "many")
    with pytest.raises(UserError, match="TFXFER_STREAM_MIN_FILES must be a whole number"):
        filling.stream_min_files()
