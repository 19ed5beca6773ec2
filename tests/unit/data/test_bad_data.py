"""Messy image folders: unreadable files, odd formats, bad layouts and imbalance.

Every test builds its own small folder under ``tmp_path``; only the ``kit`` test reads the real
datasets (``$TFXFER_DATA_DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfxfer.data import images
from tfxfer.data import sources as data_lib
from tfxfer.data.images import UnreadableImage, decode
from tfxfer.data.sources import load_directory
from tfxfer.errors import UserError

SIZE = 32  # decode size used by the folder tests
RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)
CLASS_COLOURS = {"ants": RED, "bees": BLUE}


# ---- helpers -------------------------------------------------------------------------------------
def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _good_images(folder: Path, colour: tuple[int, int, int], n: int, prefix: str = "img") -> None:
    """``n`` plain-colour 40x40 JPEGs (slightly different shades) in ``folder``."""
    for i in range(n):
        shade = tuple(max(0, c - 3 * i) for c in colour)
        _save(folder / f"{prefix}{i}.jpg", Image.new("RGB", (40, 40), shade), quality=95)


def _write_bytes(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def _split_layout(root: Path, train: dict[str, int], val: dict[str, int]) -> None:
    for split, per_class in (("train", train), ("val", val)):
        for name, n in per_class.items():
            _good_images(root / split / name, CLASS_COLOURS.get(name, GREEN), n)


def _truncated_jpeg(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    _save(path, Image.fromarray(noise), quality=95)
    payload = path.read_bytes()
    return _write_bytes(path, payload[: len(payload) // 2])


def _zero_byte(path: Path) -> Path:
    return _write_bytes(path, b"")


def _text_as_jpg(path: Path) -> Path:
    return _write_bytes(path, b"this is a text file, not a JPEG\n")


def _no_decode(*args, **kwargs):
    raise AssertionError("decode() ran: the layout error must be raised before reading images")


def _assert_colour(pixels: np.ndarray, expected, tol: int = 4) -> None:
    diff = np.abs(pixels.astype(int) - np.asarray(expected, int))
    assert diff.max() <= tol, f"expected ~{expected}, got {pixels.reshape(-1, 3)[:3].tolist()}..."


# ---- unreadable files are skipped, counted and named --------------------------------------------
@pytest.mark.parametrize(
    "make_bad",
    [_truncated_jpeg, _zero_byte, _text_as_jpg],
    ids=["truncated_jpeg", "zero_byte_file", "text_file_named_jpg"],
)
def test_unreadable_file_is_skipped_counted_and_named(tmp_path, make_bad):
    root = tmp_path / "data"
    _split_layout(root, train={"ants": 3, "bees": 3}, val={"ants": 1, "bees": 1})
    bad = make_bad(root / "train" / "ants" / "broken.jpg")

    with pytest.raises(UnreadableImage) as exc:
        decode(str(bad), SIZE)
    assert str(exc.value).strip(), "the reason must not be empty"

    d = load_directory(str(root), SIZE)
    assert d.class_names == ["ants", "bees"]
    assert [s["path"] for s in d.skipped] == [str(bad)]
    assert d.skipped[0]["reason"] == str(exc.value)
    assert d.ignored == []
    # the training data still loads: 3 + 3 good images, the bad one left out
    assert d.train.images.shape == (6, SIZE, SIZE, 3) and d.train.images.dtype == np.uint8
    assert d.counts() == {"train": {"ants": 3, "bees": 3}, "val": {"ants": 1, "bees": 1}}
    for label, colour in enumerate((RED, BLUE)):
        _assert_colour(d.train.images[d.train.labels == label].mean(axis=(0, 1, 2)), colour, 8)
    report = d.report()
    assert report["skipped_unreadable"] == d.skipped
    text = d.describe()
    assert "skipped as unreadable: 1" in text
    assert f"{bad}: {exc.value}" in text


def test_several_unreadable_files_are_all_listed(tmp_path):
    root = tmp_path / "data"
    _split_layout(root, train={"ants": 2, "bees": 2}, val={"ants": 1, "bees": 1})
    bad = sorted(
        [
            str(_truncated_jpeg(root / "train" / "ants" / "a_trunc.jpg")),
            str(_zero_byte(root / "train" / "bees" / "b_empty.jpg")),
            str(_text_as_jpg(root / "val" / "bees" / "c_text.jpg")),
        ]
    )
    d = load_directory(str(root), SIZE)
    assert sorted(s["path"] for s in d.skipped) == bad
    assert len(d.train) == 4 and len(d.val) == 2
    assert "skipped as unreadable: 3" in d.describe()


# ---- stray non-image files ----------------------------------------------------------------------
def test_stray_non_image_files_are_ignored_not_errors(tmp_path):
    root = tmp_path / "data"  # label/image layout, as a user's own folder usually is
    _good_images(root / "ants", RED, 4)
    _good_images(root / "bees", BLUE, 4)
    strays = [
        _write_bytes(root / "notes.txt", b"where these came from\n"),
        _write_bytes(root / "ants" / ".DS_Store", b"\x00\x00\x00\x01Bud1"),
        _write_bytes(root / "ants" / "._img0.jpg", b"\x00\x05\x16\x07AppleDouble"),
        _write_bytes(root / "bees" / "notes.txt", b"bees\n"),
    ]
    _write_bytes(root / ".DS_Store", b"\x00\x00\x00\x01Bud1")  # hidden, at the top level

    d = load_directory(str(root), SIZE, val_split=0.25)
    assert d.class_names == ["ants", "bees"]  # neither .DS_Store nor notes.txt became a class
    assert sorted(d.ignored) == sorted(str(p) for p in strays)
    assert d.skipped == []  # ignored files are not decode failures
    assert d.counts() == {"train": {"ants": 3, "bees": 3}, "val": {"ants": 1, "bees": 1}}
    assert d.report()["ignored_non_images"] == d.ignored
    assert "ignored non-image files: 4" in d.describe()


# ---- odd but valid formats ----------------------------------------------------------------------
def test_greyscale_jpeg_decodes_to_three_equal_channels(tmp_path):
    grey = np.tile(np.linspace(20, 220, 40).astype(np.uint8), (40, 1))  # left dark, right light
    path = _save(tmp_path / "grey.jpg", Image.fromarray(grey, "L"), quality=95)
    assert Image.open(path).mode == "L"

    out = decode(str(path), 40)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert abs(int(out[20, 2, 0]) - 25) <= 6 and abs(int(out[20, 37, 0]) - 215) <= 6


def test_rgba_png_is_composited_over_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)  # cols 0-13: fully transparent *black*
    rgba[:, 14:27] = (255, 0, 0, 255)  # cols 14-26: opaque red
    rgba[:, 27:] = (0, 0, 255, 128)  # cols 27-39: half-transparent blue
    path = _save(tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA"))

    out = decode(str(path), 40)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    _assert_colour(out[:, :12], (255, 255, 255), 1)  # transparent -> white, not black
    _assert_colour(out[:, 16:25], RED, 1)
    _assert_colour(out[:, 29:], (127, 127, 255), 2)  # 50% blue over white


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))  # red
    cmyk.paste((255, 0, 0, 0), (0, 20, 40, 40))  # bottom half cyan
    path = _save(tmp_path / "cmyk.jpg", cmyk, quality=95)
    assert Image.open(path).mode == "CMYK"

    out = decode(str(path), 40)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    _assert_colour(out[2:16], RED, 6)
    _assert_colour(out[24:38], (0, 255, 255), 6)


def test_16bit_greyscale_png_keeps_top_8_bits(tmp_path):
    def decode16(name, value):
        path = _save(tmp_path / name, Image.fromarray(np.full((40, 40), value, np.uint16)))
        assert Image.open(path).mode.startswith("I"), "PIL must read it as a 16-bit image"
        out = decode(str(path), 40)
        assert out.shape == (40, 40, 3) and out.dtype == np.uint8
        assert len(np.unique(out)) == 1
        return int(out[0, 0, 0])

    assert abs(decode16("mid.png", 32768) - 128) <= 1  # mid-grey, not saturated 255
    assert decode16("white.png", 65535) == 255
    assert abs(decode16("quarter.png", 16384) - 64) <= 1
    # a very dark 16-bit image stays very dark (its top 8 bits are 0), not read as 8-bit data
    assert decode16("dark.png", 200) <= 1
    assert decode16("dark2.png", 250) == decode16("dark3.png", 260)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 40), c) for c in (RED, GREEN, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3

    out = decode(str(path), 40)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    _assert_colour(out, RED, 2)


def test_very_large_jpeg_decodes_to_requested_size(tmp_path):
    colour = (0, 128, 255)
    path = _save(tmp_path / "huge.jpg", Image.new("RGB", (8000, 8000), colour), quality=90)
    assert Image.open(path).size == (8000, 8000)

    for size in (40, 224):
        out = decode(str(path), size)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
        _assert_colour(out, colour, 3)


@pytest.mark.parametrize(
    "orientation, top, bottom",
    [(6, RED, BLUE), (8, BLUE, RED)],
    ids=["orientation6_rotate_cw", "orientation8_rotate_ccw"],
)
def test_exif_rotated_jpeg_is_upright(tmp_path, orientation, top, bottom):
    # stored 40 wide x 20 high: left half red, right half blue. Displayed upright (rotated a
    # quarter turn) it is 20x40 with the colours one above the other; without the rotation the
    # square decode would be red-left / blue-right instead.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20], stored[:, 20:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(
        tmp_path / f"exif{orientation}.jpg", Image.fromarray(stored), exif=exif, quality=95
    )
    with Image.open(path) as raw:
        assert raw.size == (40, 20) and raw.getexif()[0x0112] == orientation

    out = decode(str(path), 40)
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8
    _assert_colour(out[:14], top, 8)
    _assert_colour(out[26:], bottom, 8)
    # left and right columns agree (no left/right colour split remains)
    assert np.abs(out[:, :5].astype(int) - out[:, 35:].astype(int)).max() <= 8


# ---- layout errors: UserError before any training -----------------------------------------------
def test_nothing_readable_raises_user_error(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        for name in ("ants", "bees"):
            _text_as_jpg(root / split / name / "a.jpg")
            _zero_byte(root / split / name / "b.jpg")
    message = _load_error(root)
    assert "no training image could be read" in message
    assert str(root) in message
    assert "Fix: check the files are images" in message


def _load_error(root) -> str:
    """The message of the UserError that loading ``root`` must raise."""
    with pytest.raises(UserError) as exc:
        load_directory(str(root), SIZE)
    return str(exc.value)


def test_class_with_only_unreadable_images_raises_user_error(tmp_path):
    root = tmp_path / "data"
    _split_layout(root, train={"ants": 2}, val={"ants": 1, "bees": 1})
    _truncated_jpeg(root / "train" / "bees" / "x.jpg")
    _zero_byte(root / "train" / "bees" / "y.jpg")
    message = _load_error(root)
    assert "training split must hold readable images of every class" in message
    assert "['bees']" in message and "Fix: add readable images" in message


def test_empty_class_folder_raises_user_error(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _good_images(root / "ants", RED, 4)
    (root / "bees").mkdir()
    monkeypatch.setattr(images, "decode", _no_decode)
    message = _load_error(root)
    assert "every class folder must hold at least one image" in message
    assert "['bees']" in message and "Fix: add images to those folders" in message


def test_single_class_raises_user_error(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _good_images(root / "ants", RED, 4)
    _write_bytes(root / "notes.txt", b"only ants so far\n")  # a stray file is not a class
    monkeypatch.setattr(images, "decode", _no_decode)
    message = _load_error(root)
    assert "at least 2 classes" in message and "['ants']" in message
    assert "Fix: put each class's images in its own folder" in message


def test_validation_split_missing_a_class_raises_user_error(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _split_layout(root, train={"ants": 3, "bees": 3}, val={"ants": 2})
    monkeypatch.setattr(images, "decode", _no_decode)
    message = _load_error(root)
    assert "validation split must hold every class" in message and "['bees']" in message
    assert "Fix: add validation images for those classes" in message


# ---- class imbalance ----------------------------------------------------------------------------
def test_heavy_class_imbalance_is_reported(tmp_path):
    root = tmp_path / "data"
    _split_layout(root, train={"ants": 12, "bees": 2}, val={"ants": 2, "bees": 2})
    d = load_directory(str(root), SIZE)
    assert d.counts()["train"] == {"ants": 12, "bees": 2}
    assert d.imbalance() == pytest.approx(6.0) and d.imbalance() >= 3
    assert d.report()["imbalance_ratio"] == pytest.approx(6.0)
    warnings = [line for line in d.describe().splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert "class imbalance 6.0:1" in warnings[0] and "class_weight=balanced" in warnings[0]


def test_balanced_classes_give_no_imbalance_warning(tmp_path):
    root = tmp_path / "data"
    _split_layout(root, train={"ants": 3, "bees": 3}, val={"ants": 1, "bees": 1})
    d = load_directory(str(root), SIZE)
    assert d.imbalance() == pytest.approx(1.0)
    assert "WARNING" not in d.describe()


def test_small_class_in_unsplit_folder_still_gets_a_validation_image(tmp_path):
    # label/image layout, 12 vs 2: 20% of 2 rounds to 0, yet every class needs a validation image
    root = tmp_path / "data"
    _good_images(root / "ants", RED, 12)
    _good_images(root / "bees", BLUE, 2)
    d = load_directory(str(root), SIZE, val_split=0.2, seed=0)
    assert d.counts() == {"train": {"ants": 10, "bees": 1}, "val": {"ants": 2, "bees": 1}}
    assert d.imbalance() >= 3
    assert any(
        line.lstrip().startswith("WARNING: class imbalance") for line in d.describe().splitlines()
    )


# ---- the real kit -------------------------------------------------------------------------------
@pytest.mark.kit
def test_kit_image_not_found_gif_decodes_as_first_frame():
    root = os.environ.get("TFXFER_DATA_DIR")
    if not root:
        pytest.skip('TFXFER_DATA_DIR is unset: run eval "$(../shared/kit/prepare.sh)" first')
    path = os.path.join(root, "hymenoptera_data", "train", "ants", "imageNotFound.gif")
    assert os.path.isfile(path), f"the kit should contain {path}"
    with Image.open(path) as im:
        assert im.format == "GIF" and im.size == (300, 300)
        im.seek(0)
        first = np.asarray(im.convert("RGB"))

    out = decode(path, 300)  # native size: exactly the first frame
    assert out.shape == (300, 300, 3) and out.dtype == np.uint8
    assert np.array_equal(out, first)
    small = decode(path, 64)
    assert small.shape == (64, 64, 3) and small.dtype == np.uint8
    assert abs(float(small.mean()) - float(first.mean())) < 2  # a light-grey placeholder


def test_an_unexpected_decoder_exception_skips_that_file_only(image_folder, monkeypatch):
    """Pillow raises more than the five types images.decode turns into UnreadableImage (a
    corrupt TIFF or ICO header gives struct.error, some plugins IndexError or TypeError)."""
    import struct

    bad = sorted((image_folder / "train" / "a").iterdir())[3]
    real = images.decode

    def flaky(path, size):
        if path == str(bad):
            raise struct.error("unpack requires a buffer of 4 bytes")
        return real(path, size)

    monkeypatch.setattr(images, "decode", flaky)
    data = load_directory(str(image_folder), 24)
    assert len(data.train) == 23 and len(data.val) == 12
    assert data.skipped == [
        {"path": str(bad), "reason": "error: unpack requires a buffer of 4 bytes"}
    ]


@pytest.mark.parametrize("name", ["hymenoptera", "fashion_mnist", "mnist", "mnist_m", "usps"])
def test_a_builtin_dataset_without_network_or_mirror_is_a_one_line_error(
    name, monkeypatch, tmp_path
):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setenv("TFXFER_DATA_DIR", str(tmp_path))  # a mirror that lacks the dataset
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    # mnist_m and usps have no download: the reason says so instead of a network error
    reason = "no public download" if name in ("mnist_m", "usps") else "Name or service not known"
    with pytest.raises(
        UserError,
        match=rf"built-in dataset {name} is neither in "
        rf"\$TFXFER_DATA_DIR.*{reason}.*"
        r"Fix: connect once",
    ) as exc:
        data_lib.load(name, 32)
    assert "\n" not in str(exc.value)


def test_folder_listing_keeps_the_order_and_rules_of_a_sorted_rglob(tmp_path):
    """``files_under`` (os.scandir) lists what ``sorted(Path.rglob("*"))`` listed, in its
    order: names that sort between a folder and its files, hidden files and folders, nested
    folders; a symlinked folder is not followed (as rglob did not)."""
    from tfxfer.data.folders import files_under

    root = tmp_path / "c"
    for name in (
        "b.jpg",
        "b-c.jpg",
        "b/x.jpg",
        "b/y/z.png",
        "a.jpg",
        ".hidden.jpg",
        ".dir/in.jpg",
        "B.jpg",
        "b0.jpg",
        "b/.DS_Store",
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    (root / "link").symlink_to(root / "b", target_is_directory=True)
    rglob = [str(f) for f in sorted(root.rglob("*")) if not f.is_dir()]
    assert files_under(str(root)) == rglob and len(rglob) == 10
