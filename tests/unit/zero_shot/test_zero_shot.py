"""Zero-shot by attributes (issue 14): ESZSL's closed form against its objective, DAP's
regressions at their optimum, the metrics by hand, unseen images never used for fitting
(sentinel), the served model against the numpy scores, and one-line errors for bad tables."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import spy_litert
from PIL import Image

from tfxfer import runner
from tfxfer.recipes import zero_shot as recipe
from tfxfer.zero_shot import attributes
from tfxfer.zero_shot import methods as zsl
from tfxfer.zero_shot import train as zs_train

SIZE = 32
SENTINEL = 7  # every pixel of every unseen-class training image


def _clusters(seed=0, n=60):
    """5 classes from 3 binary attributes; features are noisy linear images of the attributes."""
    rng = np.random.default_rng(seed)
    s = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]], float)
    mix = rng.normal(size=(3, 16))
    x = np.concatenate([rng.normal(s[c] @ mix * 2, 0.5, (n, 16)) for c in range(5)])
    return x, np.repeat(np.arange(5), n), s


def test_eszsl_closed_form_is_the_minimum_of_its_objective():
    x, y, s = _clusters()
    seen = y < 3
    model = zsl.ESZSL(gamma=0.3, lam=0.7).fit(x[seen], y[seen], s[:3])
    xs = model.scale(x[seen]).T
    m = xs.shape[1]
    yy = -np.ones((m, 3))
    yy[np.arange(m), y[seen]] = 1
    st, v = s[:3].T, model.v
    # gradient of ||X^T V S - Y||^2/m + g||V S||^2 + l||X^T V||^2/m + g l||V||^2, divided by 2
    grad = (
        xs @ (xs.T @ v @ st - yy) @ st.T / m
        + 0.3 * v @ st @ st.T
        + 0.7 * xs @ xs.T @ v / m
        + 0.3 * 0.7 * v
    )
    assert np.abs(grad).max() < 1e-9 * max(1.0, np.abs(xs @ yy @ st.T / m).max())
    kernel, bias = model.linear(s)  # the exported layer computes the same scores
    np.testing.assert_allclose(x @ kernel + bias, model.scores(x, s), rtol=1e-9, atol=1e-9)


def test_both_methods_recognise_unseen_classes_from_their_attributes():
    x, y, s = _clusters(1)
    seen = y < 3
    for method in (zsl.ESZSL(0.1, 0.1), zsl.DAP(c=1.0)):
        method.fit(x[seen], y[seen], s[:3])
        r = zsl.evaluate(method.scores(x, s), y, [0, 1, 2], [3, 4])
        assert r["zsl_accuracy"] > 0.95 and r["zsl_chance"] == 0.5, (type(method).__name__, r)


def test_dap_regressions_stop_at_their_optimum():
    x, y, s = _clusters(2)
    dap = zsl.DAP(c=0.5).fit(x, y, s)
    xs = np.concatenate([dap.scale(x), np.ones((len(x), 1))], 1)
    t = s[y]
    ridge = np.r_[np.ones(16) / (0.5 * len(x)), 0.0]
    grad = xs.T @ (dap.attribute_probabilities(x) - t) / len(x) + ridge[:, None] * dap.w
    start = np.abs(xs.T @ (0.5 - t) / len(x)).max()  # the gradient at w = 0
    assert np.abs(grad).max() < 1e-4 * start, (np.abs(grad).max(), start, dap.steps_run)


def test_zsl_and_gzsl_metrics_match_a_hand_count():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    scores = np.zeros((8, 4))
    # predictions over all classes: 0,1 | 1,1 | 2,0 | 3,2   (classes 2, 3 unseen)
    for i, c in enumerate([0, 1, 1, 1, 2, 0, 3, 2]):
        scores[i, c] = 1.0
    r = zsl.evaluate(scores, labels, seen=[0, 1], unseen=[2, 3])
    # seen: class 0 1/2, class 1 2/2 -> 0.75; unseen: class 2 1/2, class 3 1/2 -> 0.5
    assert (r["gzsl_seen"], r["gzsl_unseen"]) == (0.75, 0.5)
    assert r["gzsl_h"] == round(2 * 0.75 * 0.5 / 1.25, 4)
    assert r["gzsl_per_sample_accuracy"] == 5 / 8  # over images: 1 + 2 + 1 + 1 right of 8
    assert list(r) == sorted(r)  # the gzsl_* names together
    # ZSL over {2, 3}: row 5 (class 2, scores 0 for both) -> argmax picks 2; row 7 -> 2
    assert r["zsl_accuracy"] == round((1.0 + 0.5) / 2, 4) and r["zsl_chance"] == 0.5


def _data(tmp_path):
    """Classes a, b, c seen, d unseen; d's training images are the sentinel (all pixels 7)."""
    rng = np.random.default_rng(0)
    colours = {"a": (220, 40, 40), "b": (40, 40, 220), "c": (40, 200, 40), "d": (200, 200, 40)}
    for split, n in (("train", 8), ("val", 4)):
        for name, colour in colours.items():
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 20, (SIZE, SIZE, 3)), 0, 255)
                if split == "train" and name == "d":
                    img = np.full((SIZE, SIZE, 3), SENTINEL)
                Image.fromarray(img.astype(np.uint8)).save(folder / f"{i}.png")
    table = tmp_path / "attrs.csv"
    table.write_text(
        "# red, green, blue dominant\nclass,red,green,blue\na,1,0,0\nb,0,0,1\nc,0,1,0\nd,1,1,0\n"
    )
    return tmp_path / "data", table


ARGS = [
    "--backbone",
    "MobileNet025",
    "--weights",
    "none",
    "--image-size",
    str(SIZE),
    "--set",
    "train_per_class=null",
    "--set",
    "val_per_class=null",
]


@pytest.mark.slow
def test_unseen_images_never_reach_fitting_or_int8_calibration_and_all_classes_are_served(
    tmp_path, monkeypatch, capsys
):
    data, table = _data(tmp_path)
    calls = []
    real = zs_train.features

    def spy(tm, split, size, batch, role):
        sentinel = (split.images == SENTINEL).all(axis=(1, 2, 3))
        calls.append((role, int(sentinel.sum()), len(split)))
        return real(tm, split, size, batch, role)

    monkeypatch.setattr(zs_train, "features", spy)
    exports = spy_litert(monkeypatch)
    out = tmp_path / "run"
    status = recipe.main(
        ARGS
        + [
            "--data",
            str(data),
            "--attributes",
            str(table),
            "--unseen",
            "d",
            "--output",
            str(out),
            "--export",
            "litert-int8",
        ]
    )
    assert status == 0, capsys.readouterr().err
    assert calls == [("fit", 0, 24), ("evaluate", 0, 16)], calls  # 3 seen x 8; all of val
    # int8 calibration never sees an unseen image, in the run or in tfxfer export
    runner.export_run(out, ("litert-int8",))
    assert len(exports) == 2
    for record in exports:
        sentinel = (record["calibration"] == SENTINEL).all(axis=(1, 2, 3))
        assert len(record["calibration"]) == 24 and not sentinel.any()
        assert len(record["val"]) == 16  # measured like val_accuracy: every class
    metrics = json.loads((out / "metrics.json").read_text())
    z = metrics["zero_shot"]
    assert z["unseen"] == ["d"] and z["num_fit_images"] == 24
    for name in ("dap", "eszsl"):
        assert z[name]["zsl_accuracy"] == 1.0 and z[name]["zsl_chance"] == 1.0  # one candidate
        assert 0 <= z[name]["gzsl_h"] <= 1
    assert metrics["class_names"] == ["a", "b", "c", "d"]
    # the exported classifier is ESZSL over all classes: its accuracy is ESZSL's in numpy
    assert metrics["val_accuracy"] == z["eszsl"]["gzsl_per_sample_accuracy"]
    served = tf.saved_model.load(str(out / "saved_model"))
    model = keras.saving.load_model(out / "model.keras")
    files = sorted((data / "val" / "d").iterdir())[:2] + sorted((data / "val" / "a").iterdir())[:1]
    payload = tf.constant([f.read_bytes() for f in files])
    got = served.serve_bytes(payload)
    assert got["logits"].shape == (3, 4)
    want = model.predict(tf.cast(served.decode(payload)["images"], tf.float32), verbose=0)
    np.testing.assert_allclose(got["logits"].numpy(), want, atol=1e-4)
    assert "eszsl: ZSL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "table, unseen, words",
    [
        (
            "class,red,green,blue\na,1,0,0\nb,0,0,1\nc,0,1,0\n",
            "d",
            "must have a row for every class",
        ),
        (
            "class,red,green,blue\na,1,0,0\nb,0,zero,1\nc,0,1,0\nd,1,1,0\n",
            "d",
            "row 3, column 'green': 'zero'",
        ),
        (
            "class,red,green,blue\na,1,0,0\nb,0,0,1\nc,0,1,0\nd,1,1,0\n",
            "e",
            "every --unseen class must be a class of the data",
        ),
        (
            "class,red,green,blue\na,1,0,0\nb,0,0\nc,0,1,0\nd,1,1,0\n",
            "d",
            "every row needs 4 fields",
        ),
        ("class,red,green,blue\na,1,0,0\nb,0,0,1\nc,0,1,0\nd,1,1,0\n", "a,b,c", "two seen classes"),
        ("class,red,green,blue\na,1,0,0\nb,0,0,1\nc,0,1,0\nd,1,1,0\n", "d,d", "named once"),
    ],
)
def test_a_bad_attribute_table_or_unseen_list_fails_in_one_line(
    tmp_path, capsys, table, unseen, words
):
    data, path = _data(tmp_path)
    path.write_text(table)
    status = recipe.main(
        ARGS
        + [
            "--data",
            str(data),
            "--attributes",
            str(path),
            "--unseen",
            unseen,
            "--output",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_the_fashion_mnist_table_is_documented_and_every_demo_split_keeps_each_attribute_seen():
    from tfxfer.data.sources import FASHION_MNIST_CLASSES

    table = attributes.builtin("fashion_mnist")
    assert table.class_names == FASHION_MNIST_CLASSES and table.is_binary()
    text = attributes.BUILTIN_TABLES["fashion_mnist"].read_text()
    assert "HAND-MADE" in text and "How each value was decided" in text
    assert len({tuple(r) for r in table.values}) == 10  # every class has its own signature
    for unseen in recipe.DEMO_SPLITS:
        seen = table.signatures([c for c in FASHION_MNIST_CLASSES if c not in unseen])
        assert (seen.max(axis=0) == 1).all() and (seen.min(axis=0) == 0).all(), unseen
        assert attributes.check(table, FASHION_MNIST_CLASSES, unseen) == []
