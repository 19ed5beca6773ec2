"""Deployment: in-graph decoding against Pillow, serving signatures, `tfxfer predict`, TTA,
pruning and LiteRT, each checked against an independent computation."""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfxfer.data import graph_decode as decode
from tfxfer.data.images import decode as pillow_decode
from tfxfer.deploy import serving
from tfxfer.methods import prune, tta
from tfxfer.models import model as model_lib

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric RGB image (JPEG-friendly, so codecs barely disagree)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 255, yy / h * 255, (xx + 2 * yy) / (w + 2 * h) * 255], -1)
    return np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def _jpeg(array: np.ndarray, orientation: int | None = None, quality: int = 95) -> bytes:
    im = Image.fromarray(array)
    buf = io.BytesIO()
    if orientation is None:
        im.save(buf, "JPEG", quality=quality)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def _compare(tmp_path, data: bytes, size: int, name: str = "x.img") -> np.ndarray:
    """|in-graph decode - training's Pillow decode| for one encoded file."""
    path = tmp_path / name
    path.write_bytes(data)
    graph = decode.decode_image(tf.constant(data), size).numpy()
    assert graph.shape == (size, size, 3) and np.all(graph == np.round(graph))
    return np.abs(graph - pillow_decode(str(path), size).astype(np.float32))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_read_and_applied_as_pillow_does(tmp_path, orientation):
    data = _jpeg(_photo(48, 80), orientation)
    assert int(decode.exif_orientation(tf.constant(data))) == orientation
    assert _compare(tmp_path, data, 32).max() == 0  # bit-identical to the training loader


@pytest.mark.parametrize(
    "h,w,size", [(120, 200, 48), (500, 640, 96), (1000, 760, 96), (2000, 1600, 224), (30, 50, 64)]
)
def test_jpeg_at_every_libjpeg_scale_matches_pillow_draft_decode(tmp_path, h, w, size):
    assert _compare(tmp_path, _jpeg(_photo(h, w, seed=h)), size).max() == 0


@pytest.mark.parametrize("seed", range(6))
def test_resize_is_pillows_bilinear_bit_for_bit_on_any_shape(seed):
    rng = np.random.default_rng(seed)
    for _ in range(5):
        h, w = (int(v) for v in rng.integers(8, 700, 2))
        size = int(rng.choice([32, 96, 224]))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        got = decode.resize(tf.constant(image), size).numpy()
        np.testing.assert_array_equal(got, expected.astype(np.float32), err_msg=f"{h}x{w}->{size}")


@pytest.mark.parametrize(
    "h,w,size", [(1, 900, 32), (900, 1, 32), (2400, 1800, 32), (5, 7, 224), (224, 224, 224)]
)
def test_resize_is_pillows_at_the_extremes_of_its_window(h, w, size):
    """A one-pixel row or column, a 75x downscale (151 taps a pixel), a 45x upscale and the
    identity: the taps-only weights are Pillow's wherever the window is clipped or widest."""
    image = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    got = decode.resize(tf.constant(image), size).numpy()
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def _encoded(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "kind", ["png_rgba", "png_grey", "png_grey_alpha", "jpeg_grey", "bmp", "gif", "png_rgb"]
)
def test_other_formats_decode_like_the_training_loader(tmp_path, kind):
    rgb = _photo(40, 60, seed=3)
    alpha = np.tile(np.linspace(0, 255, 60, dtype=np.uint8), (40, 1))
    grey = rgb[..., 0]
    data = {
        "png_rgba": lambda: _encoded(np.dstack([rgb, alpha]), "PNG"),
        "png_grey": lambda: _encoded(grey, "PNG"),
        "png_grey_alpha": lambda: _encoded(np.dstack([grey, alpha]), "PNG", "LA"),
        "jpeg_grey": lambda: _encoded(grey, "JPEG"),
        "bmp": lambda: _encoded(rgb, "BMP"),
        "gif": lambda: _encoded(rgb, "GIF"),
        "png_rgb": lambda: _encoded(rgb, "PNG"),
    }[kind]()
    diff = _compare(tmp_path, data, 24)
    assert diff.mean() < 0.6 and diff.max() <= 3, (kind, diff.mean(), diff.max())


def test_a_phone_mpo_jpeg_is_decoded_at_the_same_reduced_scale_in_training_and_serving(tmp_path):
    """Pillow names a phone's multi-picture JPEG "MPO"; training must draft-decode it too."""
    path = tmp_path / "phone.jpg"
    first, second = Image.fromarray(_photo(900, 1200, seed=4)), Image.fromarray(_photo(90, 120))
    first.save(path, "MPO", save_all=True, append_images=[second], quality=92)
    assert Image.open(path).format == "MPO"
    assert _compare(tmp_path, path.read_bytes(), 224, "phone2.jpg").max() == 0


def _bmp32(rgb: np.ndarray) -> bytes:
    """A 32-bit BI_RGB BMP whose fourth byte is zero padding (what many writers produce)."""
    h, w, _ = rgb.shape
    pixels = np.zeros((h, w, 4), np.uint8)
    pixels[..., :3] = rgb[..., ::-1]  # BGR
    body = pixels[::-1].tobytes()  # bottom-up rows
    header = b"BM" + (54 + len(body)).to_bytes(4, "little") + bytes(4) + (54).to_bytes(4, "little")
    info = (
        (40).to_bytes(4, "little")
        + w.to_bytes(4, "little")
        + h.to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (32).to_bytes(2, "little")
        + bytes(4)
        + len(body).to_bytes(4, "little")
        + bytes(16)
    )
    return header + info + body


def test_a_32_bit_bmp_is_read_as_rgb_not_as_a_transparent_image(tmp_path):
    rgb = _photo(40, 60, seed=5)
    diff = _compare(tmp_path, _bmp32(rgb), 24, "x.bmp")
    assert diff.max() == 0, diff.max()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, start_weights):
    """A small random backbone (BN calibrated) with a 3-class head, exported with k=2."""
    from conftest import START_FAMILY

    tm = model_lib.build(
        START_FAMILY, num_classes=3, image_size=32, weights=start_weights[0], seed=1
    )
    # spread the logits so that the classes' order is decided, not a tie
    kernel = tm.head.get_layer("logits").kernel
    kernel.assign(np.random.default_rng(0).normal(0, 0.02, kernel.shape).astype("float32"))
    path = tmp_path_factory.mktemp("export") / "saved_model"
    serving.export(tm.model, {"head": ["ant", "bee", "wasp"]}, path, top_k=2)
    return tm, str(path)


@pytest.mark.integration
def test_serving_signatures_return_named_sorted_top_k_that_match_the_keras_model(exported):
    tm, path = exported
    served = tf.saved_model.load(path)
    assert {"serve_bytes", "serve_images", "decode", "metadata", "serving_default"} <= set(
        served.signatures
    )
    blobs = [_jpeg(_photo(50, 90, seed=s)) for s in range(3)] + [_encoded(_photo(32, 32), "PNG")]
    out = {k: v.numpy() for k, v in served.serve_bytes(tf.constant(blobs)).items()}
    images = np.stack([decode.decode_image(tf.constant(b), 32).numpy() for b in blobs])
    expected = tf.nn.softmax(tm.plain_model(images)).numpy()
    np.testing.assert_allclose(
        out["probabilities"], expected, atol=1e-4
    )  # graph vs eager float order
    np.testing.assert_allclose(out["probabilities"].sum(1), 1.0, atol=1e-5)
    assert expected.std(axis=1).min() > 1e-3  # not a tie: the order is decided by the model
    order = np.argsort(-expected, axis=1)[:, :2]
    names = np.array(["ant", "bee", "wasp"])
    assert (out["top_k_classes"].astype(str) == names[order]).all()
    np.testing.assert_allclose(
        out["top_k_scores"], np.take_along_axis(out["probabilities"], order, 1)
    )
    default = served.signatures["serving_default"](image_bytes=tf.constant(blobs))
    np.testing.assert_allclose(default["probabilities"].numpy(), out["probabilities"])
    meta = {k: v.numpy() for k, v in served.metadata().items()}
    assert list(meta["class_names"].astype(str)) == ["ant", "bee", "wasp"]
    assert int(meta["top_k"]) == 2 and int(meta["image_size"]) == 32


def test_the_savedmodel_stores_each_weight_once(exported):
    """keras#23553: a tracked ExportArchive writes every variable twice."""
    tm, path = exported
    stored = sum(
        int(np.prod(shape))
        for name, shape in tf.train.list_variables(os.path.join(path, "variables", "variables"))
        if shape
    )
    weights = tm.plain_model.count_params()  # backbone and head, no augmenter
    assert weights <= stored <= weights + 16, (stored, weights)
    listed = tf.saved_model.load(path).variables  # the loaded model lists what is stored
    assert sum(int(np.prod(v.shape)) for v in listed) == stored


def test_each_endpoint_and_the_shared_decoding_are_traced_once_per_export(
    tmp_path, monkeypatch, start_weights
):
    """Tracing is most of an export's time: the in-graph decoding (used by serve_bytes and
    decode) is traced once per size and process, and each prediction endpoint once per export
    (keras's ExportArchive traced every endpoint twice, outside and inside the save)."""
    for cached in ("_decoder", "_resizer"):  # as in a fresh process
        monkeypatch.setattr(serving, cached, functools.cache(getattr(serving, cached).__wrapped__))
    calls = {"decode_image": 0, "resize": 0, "predictions": 0}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(decode, "decode_image")
    counted(decode, "resize")
    counted(serving, "predictions")
    # the recalibrated start weights: a random init's logits are all about 1e-17
    tm = model_lib.build("MobileNet025", num_classes=2, image_size=32, weights=start_weights[0])
    serving.export(tm.model, {"head": ["a", "b"]}, tmp_path / "sm")
    assert calls == {"decode_image": 1, "resize": 2, "predictions": 2}, calls
    served = tf.saved_model.load(str(tmp_path / "sm"))
    assert sorted(served.signatures) == [
        "decode",
        "metadata",
        "serve_bytes",
        "serve_images",
        "serving_default",
    ]
    # A second model of the same size reuses the decoding's trace, and serves its own weights
    other = model_lib.build("MobileNet025", num_classes=3, image_size=32, weights=start_weights[0])
    serving.export(other.model, {"head": ["x", "y", "z"]}, tmp_path / "other")
    assert calls == {"decode_image": 1, "resize": 2, "predictions": 4}, calls
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    encoded = tf.io.encode_png(image)
    for net, path in ((tm, "sm"), (other, "other")):
        served = tf.saved_model.load(str(tmp_path / path))
        pixels = served.decode(tf.stack([encoded]))["images"]
        want = net.plain_model(tf.cast(pixels, tf.float32), training=False).numpy()
        assert np.abs(want).max() > 1e-2, want
        for got in (served.serve_bytes(tf.stack([encoded])), served.serve_images(pixels)):
            np.testing.assert_allclose(got["logits"].numpy(), want, rtol=1e-4, atol=1e-4)


def test_serve_images_takes_any_one_size_and_equals_the_model_at_its_own_size(exported):
    tm, path = exported
    served = tf.saved_model.load(path)
    x = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    got = served.serve_images(tf.constant(x))["logits"].numpy()
    np.testing.assert_allclose(
        got, tm.plain_model(x.astype("float32")).numpy(), rtol=1e-4, atol=1e-4
    )
    big = served.serve_images(tf.constant(np.zeros((1, 70, 45, 3), np.uint8)))
    assert big["probabilities"].shape == (1, 3)


@pytest.mark.integration
def test_multi_task_export_names_every_head_and_its_classes(tmp_path):
    tm = model_lib.build(
        "MobileNet025", num_classes=0, image_size=32, weights=None, heads={"fine": 4, "coarse": 2}
    )
    serving.export(tm.model, {"fine": list("abcd"), "coarse": ["x", "y"]}, tmp_path / "m")
    served = tf.saved_model.load(str(tmp_path / "m"))
    out = served.serve_bytes(tf.constant([_jpeg(_photo(40, 40))]))
    assert {"fine/top_k_classes", "coarse/top_k_classes", "fine/probabilities"} <= set(out)
    assert out["fine/top_k_classes"].shape == (1, 4) and out["coarse/top_k_classes"].shape == (1, 2)
    meta = served.metadata()
    assert list(meta["coarse/class_names"].numpy().astype(str)) == ["x", "y"]


def test_a_corrupt_file_fails_its_request_with_a_decode_error(exported):
    served = tf.saved_model.load(exported[1])
    with pytest.raises(tf.errors.InvalidArgumentError):
        served.serve_bytes(tf.constant([b"\xff\xd8\xff\xe0 not really a jpeg"]))


# ---- tfxfer predict ---------------------------------------------------------------------------


def _mixed_folder(root, sources: list[str]):
    """20 real files: JPEGs, one PNG, one greyscale JPEG, one corrupt file."""
    root.mkdir()
    for i, src in enumerate(sources[:17]):
        (root / f"img{i:02d}.jpg").write_bytes(Path(src).read_bytes())
    Image.open(sources[17]).convert("RGB").save(root / "as_png.png")
    Image.open(sources[18]).convert("L").save(root / "grey.jpg")
    (root / "corrupt.jpg").write_bytes(Path(sources[19]).read_bytes()[:300])
    return root


def _real_images(n: int) -> list[str]:
    base = os.path.join(
        os.environ.get("TFXFER_DATA_DIR", "/nonexistent"), "hymenoptera_data", "val"
    )
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(base) for f in fs)
    return files[:: max(1, len(files) // n)][:n]


@pytest.mark.kit
def test_predict_on_20_mixed_real_files_writes_csv_reports_the_corrupt_one_and_needs_only_tf(
    exported, tmp_path
):
    folder = _mixed_folder(tmp_path / "imgs", _real_images(20))
    out = tmp_path / "pred.csv"
    # PIL and matplotlib are made unimportable: predict must need TensorFlow only.
    script = textwrap.dedent("""
        import sys
        sys.modules["PIL"] = None
        sys.modules["matplotlib"] = None
        from tfxfer.predict import main
        sys.exit(main(sys.argv[1:]))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script, exported[1], str(folder), "--output", str(out)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "corrupt.jpg" in proc.stderr and "19 of 20 images classified" in proc.stderr
    assert "20/20 images" in proc.stderr  # the progress bar reached the end
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 20
    bad = [r for r in rows if r["error"]]
    assert [os.path.basename(r["file"]) for r in bad] == ["corrupt.jpg"]
    served = tf.saved_model.load(exported[1])
    for r in rows:
        if r["error"]:
            continue
        ref = served.serve_bytes(tf.constant([Path(r["file"]).read_bytes()]))
        assert r["class_1"] == ref["top_k_classes"].numpy()[0, 0].decode()
        assert float(r["score_1"]) == pytest.approx(float(ref["top_k_scores"][0, 0]), abs=1e-5)
        assert float(r["score_1"]) >= float(r["score_2"])


def test_predict_tta_flip_is_the_mean_of_the_image_and_its_mirror(exported, tmp_path):
    from tfxfer.predict import Predictor

    blobs = [_jpeg(_photo(60, 40, seed=s)) for s in range(2)]
    got = Predictor(exported[1], tta="flip").probabilities(blobs)["head"]
    served = tf.saved_model.load(exported[1])
    images = served.decode(tf.constant(blobs))["images"]
    a = served.serve_images(images)["probabilities"].numpy()
    b = served.serve_images(images[:, :, ::-1])["probabilities"].numpy()
    np.testing.assert_allclose(got, (a + b) / 2, atol=1e-5)
    assert not np.allclose(a, b, atol=1e-4)  # the mirror is a different view


def test_predict_refuses_bad_input_in_one_line(exported, tmp_path, capsys):
    from tfxfer.predict import main

    assert main([str(tmp_path), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "saved_model.pb" in err and "Fix:" in err
    assert main([exported[1], str(tmp_path / "nothing*.jpg")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no image files matched" in err
    with pytest.raises(SystemExit) as stop:
        main([exported[1], str(tmp_path), "--tta", "rotate"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and "invalid choice" in err


# ---- LiteRT int8 input -------------------------------------------------------------------------


@pytest.mark.integration
def test_int8_input_quantization_is_raw_pixels_whatever_the_calibration_spanned(monkeypatch):
    """Calibration images that peak at 180 gave the input scale 0.7059, so the raw uint8 pixels
    of docs/serving.md's LiteRT example were misread by 1/0.7059. The file now declares scale 1,
    zero point 0: raw pixels, fed as that example feeds them, give what the converter's own file
    gave with its input quantised by hand, and the float model's probabilities within int8
    error."""
    import keras

    from tfxfer.deploy import litert

    keras.utils.set_random_seed(0)
    tm = model_lib.build("MobileNet025", 3, 32, weights=None, augment="none", dropout=0.0, seed=0)
    dim = np.random.default_rng(0).uniform(0, 180, (40, 32, 32, 3)).round().astype(np.float32)
    converted = litert.convert(tm.model, "int8", dim)
    with monkeypatch.context() as m:  # the converter's own file, input range from calibration
        m.setattr(litert, "pixels_in", lambda content: content)
        own = litert.Runner(litert.convert(tm.model, "int8", dim))
    assert own.input["quantization"][0] == pytest.approx(180 / 255, rel=1e-3)
    interpreter, _ = litert.interpreter(converted)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)
    images = dim[:8].astype(np.uint8)
    raw = []
    for image in images:  # exactly docs/serving.md's way: raw uint8 pixels in
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        raw.append(interpreter.get_tensor(out["index"])[0].copy())
    np.testing.assert_allclose(np.array(raw), [own(im) for im in images], atol=1e-6)
    want = tf.nn.softmax(tm.model.predict(images.astype(np.float32), verbose=0)).numpy()
    np.testing.assert_allclose(np.array(raw), want, atol=0.06)


# ---- TTA ---------------------------------------------------------------------------------------


def test_tta_views_are_the_mirror_and_the_four_corner_crops():
    x = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype(np.uint8)
    flip = tta.views(x, "flip")
    np.testing.assert_array_equal(flip[1].numpy(), x[:, :, ::-1].astype(np.float32))
    crops = tta.views(x, "crops")
    assert len(crops) == 6
    side = 14  # round(16 * 0.875)
    corner = tf.image.resize(x[:, 2:, 2:].astype(np.float32), [16, 16], antialias=True)
    np.testing.assert_allclose(crops[5].numpy(), corner.numpy(), atol=1e-4)
    assert crops[2].shape == (2, 16, 16, 3) and side == 14
    with pytest.raises(ValueError, match="tta mode"):
        tta.views(x, "rotate")


# ---- pruning -----------------------------------------------------------------------------------


def test_polynomial_schedule_matches_zhu_and_gupta():
    total, target = 200, 0.9
    for step in (0, 10, 75, 150, 199):
        p = min(step / (0.75 * total), 1.0)
        assert prune.schedule(step, total, target) == pytest.approx(target * (1 - (1 - p) ** 3))
    values = [prune.schedule(s, total, target) for s in range(total + 1)]
    assert values[0] == 0 and values[-1] == target and np.all(np.diff(values) >= 0)


def test_mask_keeps_exactly_the_largest_magnitudes():
    w = np.random.default_rng(0).normal(size=(30, 40))
    mask = prune.mask_for(w, 0.75)
    assert (~mask).sum() == 900
    assert np.abs(w[mask]).min() > np.abs(w[~mask]).max()


# ---- a run with pruning, TTA and LiteRT, then `tfxfer export` --------------------------------


@pytest.mark.slow
def test_a_pruned_run_with_tta_and_litert_measures_what_it_ships(
    tmp_path, image_folder, start_weights, capsys
):
    import keras
    from conftest import START_FAMILY

    from tfxfer.cli import entry
    from tfxfer.config import Config, Phase
    from tfxfer.deploy import litert
    from tfxfer.methods.prune import prunable
    from tfxfer.recipes import large_similar

    phases = (
        Phase(name="warmup", trainable="head", epochs=1),
        Phase(name="finetune", trainable="all", epochs=3, lr=1e-4),
    )
    cfg = Config(
        data=str(image_folder),
        image_size=32,
        backbone=START_FAMILY,
        weights=start_weights[0],
        phases=phases,
        batch_size=8,
        output=str(tmp_path / "run"),
        verbose=0,
        tta="flip",
        export=("litert-int8",),
    ).override(["prune.sparsity=0.75", "prune.frequency=1"])
    result = large_similar.run(cfg)
    m = result.metrics
    # pruning: every prunable kernel ends at the target sparsity; depthwise kernels untouched
    kernels = prunable(result.model.model, trainable_only=False)
    for v in kernels:
        zeros = float((np.asarray(v) == 0).mean())
        assert abs(zeros - 0.75) <= 1.0 / np.prod(v.shape) + 1e-9, (v.path, zeros)
    depthwise = [
        layer.kernel
        for layer in result.model.backbone.layers
        if isinstance(layer, keras.layers.DepthwiseConv2D)
    ]
    assert depthwise and all((np.asarray(k) == 0).mean() < 0.05 for k in depthwise)
    assert m["prune"]["sparsity"] == pytest.approx(0.75, abs=1e-3)
    loaded = keras.saving.load_model(result.paths["keras"], safe_mode=True)
    assert (
        sum(int((np.asarray(w) == 0).sum()) for w in prunable(loaded, False))
        == m["prune"]["zero_weights"]
    )
    # TTA: recomputed here from the model on the validation images and their mirrors
    from tfxfer.data import sources

    val = sources.load(str(image_folder), 32).val
    x = val.images.astype("float32")
    p = (
        tf.nn.softmax(result.model.plain_model(x))
        + tf.nn.softmax(result.model.plain_model(x[:, :, ::-1]))
    ).numpy() / 2
    tta_m = m["tta"]["label"]
    assert tta_m["correct"] == int((p.argmax(1) == val.labels).sum())
    assert tta_m["val_accuracy_without_tta"] == m["val_accuracy"]
    # LiteRT int8 ran on the validation images: recomputed here with its own interpreter
    int8 = litert.Runner(Path(m["litert"]["int8"]["file"]).read_bytes())
    assert int8.input["dtype"] == np.uint8 and m["litert"]["int8"]["input"]["dtype"] == "uint8"
    own = float((np.array([int8(im).argmax() for im in val.images]) == val.labels).mean())
    assert m["litert"]["int8"]["val_accuracy"] == pytest.approx(own, abs=1e-4)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(on_disk["litert"]) == {"int8"} and "tta" in on_disk
    # afterwards: `tfxfer export RUN_DIR --litert fp32` adds a measured fp32 file that computes
    # what Keras computes, well over twice the int8 file's size (an fp16 file would be half): 2.8x
    # on this 0.2M-weight network, whose 32-bit biases and per-channel scales weigh more than
    # a large network's
    assert entry(["export", str(tmp_path / "run"), "--litert", "fp32"]) == 0
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(on_disk["litert"]) == {"fp32", "int8"}
    fp32 = litert.Runner(Path(on_disk["litert"]["fp32"]["file"]).read_bytes())
    keras_p = tf.nn.softmax(result.model.plain_model(x[:4])).numpy()
    np.testing.assert_allclose(np.stack([fp32(im) for im in val.images[:4]]), keras_p, atol=1e-4)
    assert on_disk["litert"]["int8"]["bytes"] < 0.4 * on_disk["litert"]["fp32"]["bytes"]
    assert "LiteRT fp32: val_accuracy=" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["export", "no/such/run", "--litert", "int8"], "RUN_DIR must be the output directory"),
        (["export", ".", "--litert", "int4"], "export must be one of"),
        (["export", "."], "--litert"),
    ],
)
def test_tfxfer_export_refuses_bad_input_in_one_line(argv, needle, capsys):
    from tfxfer.cli import entry

    assert entry(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_prune_needs_a_phase_that_trains_the_backbone():
    from tfxfer.errors import UserError
    from tfxfer.recipes import small_similar

    with pytest.raises(UserError, match="trains the head only"):
        small_similar.CONFIG.override(["prune.sparsity=0.5"])


@pytest.mark.integration
def test_predict_shift_measures_the_model_clean_and_under_each_corruption(
    exported, tmp_path, capsys
):
    """``tfxfer predict MODEL FOLDER --shift`` on class folders: the clean accuracy is the one
    of the served predictions against the folder names, and a corrupted set's is the one
    recomputed from the model's own decode, the contrast formula in numpy, and serve_images.
    A folder whose names are not the model's classes is refused in one line."""
    from tfxfer import predict

    _, path = exported
    folder = tmp_path / "labelled"
    for c, name in enumerate(("ant", "bee", "wasp")):
        (folder / name).mkdir(parents=True)
        for i in range(4):
            (folder / name / f"{i}.jpg").write_bytes(_jpeg(_photo(40 + 9 * i, 50, seed=10 * c + i)))
    out = tmp_path / "shift.json"
    assert predict.main([path, str(folder), "--shift", "--output", str(out)]) == 0
    table = json.loads(out.read_text())
    files = predict.find_images([str(folder)])
    labels = np.array([("ant", "bee", "wasp").index(Path(f).parent.name) for f in files])
    served = tf.saved_model.load(path)
    blobs = tf.constant([Path(f).read_bytes() for f in files])
    clean = served.serve_bytes(blobs)["probabilities"].numpy().argmax(1)
    assert table["images"] == 12 and table["clean"] == round(float((clean == labels).mean()), 4)
    pixels = np.round(np.clip(served.decode(blobs)["images"].numpy(), 0, 255)) / 255
    mean = pixels.mean(axis=(1, 2, 3), keepdims=True)
    low = np.round(np.clip((pixels - mean) * 0.3 + mean, 0, 1) * 255).astype(np.uint8)
    shifted = served.serve_images(tf.constant(low))["probabilities"].numpy().argmax(1)
    assert table["contrast/2"] == round(float((shifted == labels).mean()), 4)
    assert len(table) == 1 + 1 + 15 + 1  # images, clean, 5 corruptions x 3 severities, mean
    (folder / "hornet").mkdir()
    (folder / "hornet" / "x.jpg").write_bytes(_jpeg(_photo(40, 40)))
    capsys.readouterr()
    assert predict.main([path, str(folder), "--shift"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--shift needs labelled images" in err and "hornet" in err
