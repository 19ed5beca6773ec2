"""Data at scale (issue 17): per-worker shards, the tf.data service, progress of long data work.

- :class:`~tfxfer.data.shard.Shard` against brute force: rows partition the split, every worker
  holds ``ceil(n / W)``, the all-gather puts rows back in order, for every ``n`` and ``W``.
- Workers simulated as threads with a real all-gather (a barrier): each decodes only its files;
  the union of their training rows and the assembled validation split equal a one-process
  decode, unreadable files included. (Two real workers are in test_distribute.py.)
- ``--set data_service=grpc://...``: a dispatcher and two workers started in this process on
  127.0.0.1 produce a training epoch of exactly the rows of an in-process epoch, in
  ``ceil(n / batch)`` batches (arrays and ``tfrecord:`` shards), and a whole recipe trains
  through it; a memmap or a bad address is a one-line error.
- Progress lines give count, rate and ETA; below the threshold they stay quiet.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_class_images
from support import ThreadCluster

from tfxfer import progress
from tfxfer.config import Config
from tfxfer.data import decoding, images, pipeline, sources
from tfxfer.data import shard as shard_lib
from tfxfer.data.shard import Shard
from tfxfer.errors import UserError


@pytest.mark.parametrize("n,workers", [(1, 1), (7, 3), (8, 2), (9, 4), (2, 3), (100, 7)])
def test_shard_rows_partition_the_split_and_assemble_restores_its_order(n, workers, monkeypatch):
    shards = [Shard(k, workers) for k in range(workers)]
    mine = [s.mine(n) for s in shards]
    assert sorted(np.concatenate(mine).tolist()) == list(range(n))  # a partition
    rows = [s.rows(n) for s in shards]
    assert {len(r) for r in rows} == {-(-n // workers)}  # the same count on every worker
    for r, m in zip(rows, mine):
        assert set(r.tolist()) <= set(m.tolist()) or len(m) == 0  # padding repeats its own rows
    data = np.random.default_rng(0).normal(size=(n, 3))
    parts = [data[r] for r in rows]
    monkeypatch.setattr(shard_lib, "GATHER_BYTES", 2 * 3 * 8)  # two rows a call: chunked
    for whole in ThreadCluster(workers).run(lambda s: s.assemble(parts[s.index], n)):
        np.testing.assert_array_equal(whole, data)


def test_each_worker_decodes_only_its_files_and_the_cluster_sees_the_one_process_data(
    tmp_path, monkeypatch
):
    root = tmp_path / "data"
    write_class_images(root / "train", {"a": 7, "b": 6})
    write_class_images(root / "val", {"a": 3, "b": 2}, seed=1)
    (root / "train" / "a" / "broken.jpg").write_bytes(b"not a jpeg")  # 14 train files, 1 bad
    (root / "val" / "b" / "broken.jpg").write_bytes(b"")
    whole = sources.load(str(root), 16)

    cluster = ThreadCluster(3)
    real_decode = images.decode

    def counting(path, size):
        cluster.decoded[threading.current_thread().name] += 1
        return real_decode(path, size)

    monkeypatch.setattr(images, "decode", counting)
    monkeypatch.setattr(decoding, "ThreadPoolExecutor", _InlinePool)  # decode on the worker
    parts = cluster.run(lambda shard: sources.load(str(root), 16, shard=shard))

    # every file decoded once in the cluster: 14 train + 6 val, split 7/7/6
    assert sorted(cluster.decoded.values()) == [6, 7, 7] and sum(cluster.decoded.values()) == 20
    m = max(len(p.train) for p in parts)
    assert all(len(p.train) == m for p in parts)  # the same number of steps on each worker
    union = Counter()
    for p in parts:
        union.update(_digest(x, y) for x, y in zip(p.train.images, p.train.labels))
    assert set(union) == {_digest(x, y) for x, y in zip(whole.train.images, whole.train.labels)}
    assert sum(union.values()) == 3 * m and 3 * m - len(whole.train) < 3  # padding: < 1 each
    for p in parts:  # validation: the whole split, in order, on every worker
        np.testing.assert_array_equal(p.val.images, whole.val.images)
        np.testing.assert_array_equal(p.val.labels, whole.val.labels)
        assert p.counts() == whole.counts()  # the report counts the whole training split
        assert p.report()["workers"] == 3
        assert [s["path"] for s in p.skipped] == [s["path"] for s in whole.skipped]
    assert len(whole.skipped) == 2


class _InlinePool:
    """ThreadPoolExecutor stand-in that runs on the calling thread (so counts name a worker)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return [fn(i) for i in items]


def _digest(image: np.ndarray, label: int) -> tuple:
    return (int(label), image.tobytes())


def test_array_sources_keep_a_shard_of_training_rows_and_the_whole_validation():
    from tfxfer.data.sources import ImageData, Split, _finish  # noqa: F401 - the array path

    rng = np.random.default_rng(0)
    train = Split(rng.integers(0, 255, (11, 4, 4, 1), dtype=np.uint8), np.arange(11) % 2)
    val = Split(rng.integers(0, 255, (5, 4, 4, 1), dtype=np.uint8), np.arange(5) % 2)
    parts = [
        _finish(["a", "b"], train, val, "arrays", shard=Shard(k, 2, lambda x: x)) for k in range(2)
    ]
    assert [len(p.train) for p in parts] == [6, 6]
    np.testing.assert_array_equal(parts[1].train.images[:5], train.images[1::2])
    assert all(p.val is val and p.counts()["train"] == {"a": 6, "b": 5} for p in parts)


# ---- tf.data service --------------------------------------------------------------------------

_SERVERS: list = []


@pytest.fixture(scope="module")
def data_service():
    """A dispatcher and two workers, in this process, on 127.0.0.1 (two, so that each epoch's
    rows are split between workers and batch counts are checked across them)."""
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0, protocol="grpc"))
    address = dispatcher.target.split("://")[1]
    workers = [
        service.WorkerServer(
            service.WorkerConfig(
                dispatcher_address=address, worker_address="127.0.0.1:%port%", port=0
            )
        )
        for _ in range(2)
    ]
    # Kept alive to the end of the test process: stopping them (explicitly, or when the fixture
    # drops them) waited 40-70 s in the suite for their tasks to time out.
    _SERVERS.extend([dispatcher, *workers])
    return dispatcher.target.replace("localhost", "127.0.0.1"), workers


def test_an_epoch_through_the_data_service_holds_exactly_the_in_process_rows(data_service):
    data_service = data_service[0]
    rng = np.random.default_rng(0)
    split = sources.Split(rng.integers(0, 255, (37, 8, 8, 3), dtype=np.uint8), np.arange(37) % 3)
    local = pipeline.image_dataset(split, 3, 8, 5, shuffle=True, seed=1)
    remote = pipeline.image_dataset(split, 3, 8, 5, shuffle=True, seed=1, service=data_service)

    def rows(ds):
        return sorted(
            map(
                bytes,
                np.concatenate(
                    [
                        np.concatenate(
                            [
                                x.numpy().astype(np.uint8).reshape(len(x), -1),
                                np.argmax(y.numpy(), 1)[:, None].astype(np.uint8),
                            ],
                            1,
                        )
                        for x, y in ds
                    ]
                ),
            )
        )

    assert len(rows(remote)) == 37 and rows(remote) == rows(local)
    assert rows(remote) == rows(remote)  # a second epoch: a new job, the same rows
    assert len(list(remote)) == remote.cardinality() == 8  # ceil(37 / 5), batched here


def test_a_recipe_trains_through_the_data_service(data_service, image_folder, tmp_path, caplog):
    data_service = data_service[0]
    from tfxfer.train import loop

    cfg = Config(
        data=str(image_folder),
        backbone="MobileNet025",  # the smallest family: the data path is tested
        weights=None,
        image_size=32,
        batch_size=8,
        data_service=data_service,
        output=str(tmp_path / "out"),
        verbose=0,
        cache_features=False,
        feature_views=1,
    ).with_epochs(1)
    seen = []
    real = pipeline.via_service
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            pipeline, "via_service", lambda ds, address: seen.append(address) or real(ds, address)
        )
        result = loop.run(cfg)
    assert seen == [data_service]
    assert (
        result.metrics["num_val"] == 12 and np.isfinite(result.history[0]["history"]["loss"]).all()
    )


def test_streamed_shards_go_through_the_data_service(data_service, tmp_path):
    data_service = data_service[0]
    from tfxfer.data import tfrecord

    write_class_images(tmp_path / "src" / "train", {"a": 5, "b": 4}, size=12)
    write_class_images(tmp_path / "src" / "val", {"a": 1, "b": 1}, size=12)
    tfrecord.write(str(tmp_path / "src"), str(tmp_path / "shards"), shards=2)
    stream = sources.load(f"tfrecord:{tmp_path / 'shards'}", 12).train

    def rows(ds):
        return sorted(x.numpy().astype(np.uint8).tobytes() for batch, _ in ds for x in batch)

    local = pipeline.image_dataset(stream, 2, 12, 4, shuffle=True, seed=0)
    remote = pipeline.image_dataset(stream, 2, 12, 4, shuffle=True, seed=0, service=data_service)
    assert len(rows(remote)) == 9 and rows(remote) == rows(local)


@pytest.fixture(scope="module")
def one_worker_service():
    """A dispatcher with one worker: row order is then the dataset's own, not the workers'."""
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0, protocol="grpc"))
    worker = service.WorkerServer(
        service.WorkerConfig(
            dispatcher_address=dispatcher.target.split("://")[1],
            worker_address="127.0.0.1:%port%",
            port=0,
        )
    )
    _SERVERS.extend([dispatcher, worker])
    return dispatcher.target.replace("localhost", "127.0.0.1")


def _epoch_orders(ds, epochs: int = 3) -> list[list[int]]:
    """Each epoch's row ids, in order (the id is a row's first pixel)."""
    return [[int(v) for x, _ in ds for v in x.numpy()[:, 0, 0, 0]] for _ in range(epochs)]


def test_the_data_service_reshuffles_every_epoch_and_follows_the_seed(one_worker_service):
    n = 16
    images = np.zeros((n, 4, 4, 3), np.uint8) + np.arange(n, dtype=np.uint8)[:, None, None, None]
    split = sources.Split(images, np.arange(n) % 2)

    def build(seed):
        return pipeline.image_dataset(
            split, 2, 4, 4, shuffle=True, seed=seed, service=one_worker_service
        )

    orders = _epoch_orders(build(3))
    assert all(sorted(o) == list(range(n)) for o in orders)  # each epoch: every row once
    assert len({tuple(o) for o in orders}) == 3, orders  # three different orders
    assert _epoch_orders(build(3)) == orders  # the same seed: the same orders, epoch by epoch
    assert _epoch_orders(build(4))[0] != orders[0]
    assert len(list(build(3))) == build(3).cardinality() == 4


def test_a_streamed_source_reshuffles_every_epoch_through_the_data_service(
    one_worker_service, tmp_path
):
    from tfxfer.data import tfrecord

    write_class_images(tmp_path / "src" / "train", {"a": 9, "b": 9}, size=8)
    write_class_images(tmp_path / "src" / "val", {"a": 1, "b": 1}, size=8)
    tfrecord.write(str(tmp_path / "src"), str(tmp_path / "shards"), shards=3)
    stream = sources.load(f"tfrecord:{tmp_path / 'shards'}", 8).train
    ds = pipeline.image_dataset(stream, 2, 8, 6, shuffle=True, seed=0, service=one_worker_service)
    epochs = [
        [x.numpy().astype(np.uint8).tobytes() for batch, _ in ds for x in batch] for _ in range(3)
    ]
    assert all(sorted(e) == sorted(epochs[0]) and len(e) == 18 for e in epochs)
    assert len(set(epochs[0])) == 18  # distinct images: an order is a permutation
    assert len({tuple(e) for e in epochs}) == 3  # three different orders


def test_data_service_refusals_are_one_line():
    with pytest.raises(UserError, match="grpc://host:port") as err:
        Config(data_service="localhost:5000")
    assert "\n" not in str(err.value)
    memmap = np.memmap(_tmpfile(), dtype=np.uint8, mode="w+", shape=(4, 8, 8, 3))
    with pytest.raises(UserError, match="in memory") as err:
        pipeline.graph_rows(memmap)
    assert "\n" not in str(err.value)


def _tmpfile() -> str:
    import tempfile

    return tempfile.mkstemp(suffix=".mmap")[1]


# ---- progress ---------------------------------------------------------------------------------


class _Tty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_shows_count_rate_and_eta_and_small_work_stays_quiet(monkeypatch, caplog):
    monkeypatch.setattr(progress, "MIN_ITEMS", 10)
    monkeypatch.setattr(progress, "REFRESH_S", 0.0)
    tty = _Tty()
    bar = progress.Progress("decoding", 200, "images", stream=tty)
    bar.start -= 10.0  # 10 s ago
    bar.add(50)
    assert "decoding: 50/200 images (25%)" in tty.text and "ETA 0:3" in tty.text, tty.text
    rate = float(tty.text.split("images/s")[0].rsplit(", ", 1)[1])
    assert 4.9 < rate < 5.1  # 50 images in ~10 s
    with caplog.at_level(logging.INFO, logger="tfxfer.progress"):
        bar.add(150)
        bar.done()
    assert "200/200 images (100%)" in caplog.text and "elapsed" in caplog.text
    quiet = _Tty()
    small = progress.Progress("decoding", 5, "images", stream=quiet)
    small.add(5)
    small.done()
    assert quiet.text == ""


def test_progress_writes_to_the_stderr_of_the_moment_not_of_the_import(monkeypatch):
    """A notebook or a harness replaces sys.stderr, and may close the old one, after tfxfer is
    imported: a bar made then writes to the new stream and never touches the closed one."""
    import io
    import sys

    monkeypatch.setattr(progress, "MIN_ITEMS", 1)
    monkeypatch.setattr(progress, "REFRESH_S", 0.0)
    old = io.StringIO()
    monkeypatch.setattr(sys, "stderr", old)
    old.close()
    now = _Tty()
    monkeypatch.setattr(sys, "stderr", now)
    bar = progress.Progress("decoding", 4, "images")
    bar.add(4)
    bar.done()
    assert "decoding: 4/4 images" in now.text, now.text
