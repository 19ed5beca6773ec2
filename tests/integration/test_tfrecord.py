"""``--data tfrecord:DIR`` (issue 17): shards written from a folder, the training split streamed.

- The writer keeps each file's bytes, leaves an unreadable file out and lists it, deals the
  shuffled training records round-robin to the shards.
- Read back, the streamed training split holds exactly the folder loader's images (bit for bit:
  the in-graph decode reproduces Pillow's for JPEG), every pass, shuffled or not; validation is
  the folder's, in order.
- Two workers (threads with a real all-gather) each stream only their own shards, take the same
  number of records per epoch, and see the whole validation split.
- A whole run trains on the stream (head on cached features, then fine-tuning on images).
- Bad input: one-line errors.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import write_class_images
from PIL import Image
from support import ThreadCluster

from tfxfer.config import Config, Phase
from tfxfer.data import sources, tfrecord
from tfxfer.data.tfrecord import Stream
from tfxfer.errors import UserError


@pytest.fixture
def shards(tmp_path):
    root = tmp_path / "data"
    write_class_images(root / "train", {"a": 9, "b": 7}, size=20)
    write_class_images(root / "val", {"a": 3, "b": 4}, size=20, seed=1)
    (root / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    # Pillow reads a TIFF, the in-graph decoder the stream uses does not: left out too
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "train" / "a" / "grey.tif")
    report = tfrecord.write(str(root), str(tmp_path / "shards"), shards=3)
    return root, tmp_path / "shards", report


def _rows(images, labels) -> Counter:
    return Counter((int(y), x.tobytes()) for x, y in zip(images, labels))


def test_shards_hold_every_readable_file_and_stream_the_folders_pixels(shards):
    root, out, report = shards
    assert report["classes"] == ["a", "b"] and report["train"] == {"records": 16, "shards": 3}
    assert report["val"] == {"records": 7, "shards": 1}
    assert sorted(s["path"].rsplit("/", 1)[1] for s in report["skipped"]) == [
        "broken.jpg",
        "grey.tif",
    ]
    assert (out / "classes.txt").read_text() == "a\nb\n"

    (root / "train" / "a" / "grey.tif").unlink()  # the folder loader would read it
    folder = sources.load(str(root), 16)
    data = sources.load(f"tfrecord:{out}", 16)
    assert isinstance(data.train, Stream) and len(data.train) == 16
    assert data.counts() == folder.counts() and "streamed" in data.source
    np.testing.assert_array_equal(data.val.images, folder.val.images)  # in order, bit for bit
    np.testing.assert_array_equal(data.val.labels, folder.val.labels)
    expected = _rows(folder.train.images, folder.train.labels)
    for shuffle in (False, True, True):
        got = [(x.numpy(), int(y)) for x, y in data.train.records(shuffle, seed=3)]
        assert _rows([x for x, _ in got], [y for _, y in got]) == expected
    ordered = [int(y) for _, y in data.train.records(False)]
    assert ordered == data.train.labels.tolist()  # the scanned labels are the stream's order
    picked = data.train.rows([5, 0, 5])
    firsts = [x.numpy() for x, _ in data.train.records(False)]
    np.testing.assert_array_equal(picked, np.stack([firsts[5], firsts[0], firsts[5]]))


def test_two_workers_stream_only_their_shards_and_see_the_whole_validation(shards):
    _, out, _ = shards
    whole = sources.load(f"tfrecord:{out}", 16)
    parts = ThreadCluster(2).run(lambda shard: sources.load(f"tfrecord:{out}", 16, shard=shard))
    files = [p.train.files for p in parts]
    assert len(files[0]) == 2 and len(files[1]) == 1 and not set(files[0]) & set(files[1])
    assert len(parts[0].train) == len(parts[1].train)  # the same records per epoch: 6 and 5 -> 6
    union = Counter()
    for p in parts:
        assert p.counts() == whole.counts()
        np.testing.assert_array_equal(p.val.images, whole.val.images)
        stream = list(p.train.records(False))
        union.update(_rows([x.numpy() for x, _ in stream], [int(y) for _, y in stream]))
    all_rows = _rows([x.numpy() for x, _ in whole.train.records(False)], whole.train.labels)
    assert set(union) == set(all_rows) and sum(union.values()) == 2 * len(parts[0].train)


def test_a_run_trains_on_streamed_shards(shards, tmp_path):
    from tfxfer.train import loop

    _, out, _ = shards
    cfg = Config(
        data=f"tfrecord:{out}",
        backbone="MobileNet025",  # the smallest family: the data path is tested
        weights=None,
        image_size=32,
        batch_size=8,
        feature_views=2,
        output=str(tmp_path / "run"),
        verbose=0,
        phases=(
            Phase(name="head", trainable="head", epochs=1),
            Phase(name="all", trainable="all", epochs=1, lr=1e-4),
        ),
    )
    result = loop.run(cfg)
    assert result.metrics["num_val"] == 7
    assert [h["cached_features"] for h in result.history] == [True, False]
    assert all(np.isfinite(h["history"]["loss"]).all() for h in result.history)


def test_bad_tfrecord_input_is_a_one_line_error(shards, tmp_path):
    root, out, _ = shards
    cases = [
        (lambda: sources.load(f"tfrecord:{root}", 16), "classes.txt"),
        (lambda: sources.load(f"tfrecord:{out}", 16, train_per_class=2), "streams"),
        (lambda: tfrecord.write(str(tmp_path / "missing"), str(tmp_path / "x")), "folder"),
        (lambda: tfrecord.write(str(root), str(tmp_path / "x"), shards=0), "at least 1"),
        (lambda: sources.load(f"tfrecord:{out}", 16).train.images, "streams its training"),
    ]

    def no_val_shards():
        (out / "val-00000-of-00001.tfrecord").rename(out / "elsewhere.bin")
        try:
            sources.load(f"tfrecord:{out}", 16)
        finally:
            (out / "elsewhere.bin").rename(out / "val-00000-of-00001.tfrecord")

    cases.append((no_val_shards, "val-"))
    for call, words in cases:
        with pytest.raises(UserError, match=words) as err:
            call()
        assert "\n" not in str(err.value)
    from tfxfer.data.shard import Shard

    with pytest.raises(UserError, match="training shard of its own"):
        tfrecord.read(str(out), 16, Shard(0, 4, lambda x: x))
    tiny = write_class_images(tmp_path / "tiny", {"a": 2, "b": 2}, size=8)  # 2 train, 2 val
    tfrecord.write(str(tiny), str(tmp_path / "tiny-shards"), shards=3)  # one shard empty
    with pytest.raises(UserError, match="workers with none: \\[2\\]") as err:
        tfrecord.read(str(tmp_path / "tiny-shards"), 8, Shard(2, 3, lambda x: np.array([1, 1, 0])))
    assert "\n" not in str(err.value)


def test_the_writer_command_prints_what_it_wrote(tmp_path, capsys):
    root = write_class_images(tmp_path / "flat", {"a": 5, "b": 5}, size=12)
    assert (
        tfrecord.main(["--data", str(root), "--output", str(tmp_path / "s"), "--shards", "2"]) == 0
    )
    printed = capsys.readouterr().out
    assert "8 training records in 2 shards, 2 validation in 1" in printed
    assert f"--data tfrecord:{tmp_path / 's'}" in printed
    assert (
        tfrecord.main(["--data", str(root), "--output", str(tmp_path / "t"), "--shards", "0"]) == 2
    )
    assert capsys.readouterr().err.count("\n") == 1
