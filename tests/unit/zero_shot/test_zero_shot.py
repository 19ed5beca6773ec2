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
from tfxfer.zero_shot import attributes, calibrate
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


class _Recording:
    """A method that remembers the last scores it returned."""

    def __init__(self, method):
        self.method = method

    def fit(self, *args):
        self.method.fit(*args)
        return self

    def scores(self, x, signatures):
        self.last = self.method.scores(x, signatures)
        return self.last


def test_calibration_h_of_each_gamma_is_the_gzsl_metric_of_the_shifted_scores():
    """:func:`calibrate.harmonic_mean` against :func:`zsl.evaluate` (argmax over all classes of
    the scores with gamma subtracted from the pretend-seen ones), over a sweep of gammas."""
    x, y, s = _clusters(2)
    made = []

    def make():
        made.append(_Recording(zsl.ESZSL(0.1, 0.1)))
        return made[-1]

    scored = calibrate._round(make, x, y, s, 2, 0.2, np.random.default_rng(0))
    assert len(scored["unseen"]) == 2 and len(scored["seen"]) == 3
    assert len(scored["labels"]) == 3 * 12 + 2 * 60  # 20% of each pretend-seen class, all else
    gaps = np.sort(scored["gap"])  # between two gaps: no image sits exactly on a tie
    gammas = np.concatenate([[gaps[0] - 1], ((gaps[:-1] + gaps[1:]) / 2)[::7], [gaps[-1] + 1]])
    fast = calibrate.harmonic_mean(scored, gammas)
    for gamma, h in zip(gammas, fast):
        want = zsl.evaluate(made[0].last, scored["labels"], scored["seen"], scored["unseen"], gamma)
        assert round(float(h), 4) == pytest.approx(want["gzsl_h"], abs=1e-4), gamma
    assert fast.max() > fast[0] and fast.max() > fast[-1]  # neither extreme is best here


def _biased(seed, classes=10, n=60):
    """Features linear in 8 binary attributes plus a class's own offset that no attribute
    explains: a method fitted on the seen classes scores them too high, as real features do."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2, (classes, 8)).astype(float)
    mix, offset = rng.normal(size=(8, 32)), rng.normal(0, 2.0, (classes, 32))
    x = np.concatenate([rng.normal(s[c] @ mix + offset[c], 1.0, (n, 32)) for c in range(classes)])
    return x, np.repeat(np.arange(classes), n), s


def test_calibration_chosen_on_seen_classes_alone_lifts_gzsl_h_on_unseen_ones():
    seen, unseen = list(range(7)), [7, 8, 9]
    make = lambda: zsl.ESZSL(1.0, 1.0)
    plain, calibrated = [], []
    for seed in range(6):
        x, y, s = _biased(seed)
        test = np.random.default_rng(seed + 100).random(len(y)) < 0.5  # half of every class
        train = np.isin(y, seen) & ~test
        gamma, report = calibrate.choose(make, x[train], y[train], s[seen], 0.3, seed=0)
        assert report["held_out_h"] >= report["held_out_h_at_0"] and gamma > 0
        if seed == 0:  # only the seen classes' training rows went in: changing every unseen
            x_other = x.copy()  # image (and every scored one) leaves gamma as it was
            x_other[~train] = np.random.default_rng(9).normal(size=x_other[~train].shape)
            again, _ = calibrate.choose(make, x_other[train], y[train], s[seen], 0.3, seed=0)
            assert again == gamma and report["gamma"] == pytest.approx(gamma)
        scores = make().fit(x[train], y[train], s[seen]).scores(x[test], s)
        plain.append(zsl.evaluate(scores, y[test], seen, unseen)["gzsl_h"])
        calibrated.append(zsl.evaluate(scores, y[test], seen, unseen, gamma)["gzsl_h"])
    # measured: mean H 0.33 -> 0.51, better on 5 seeds of 6
    assert np.mean(calibrated) > np.mean(plain) + 0.15, (plain, calibrated)
    assert sum(c > p for p, c in zip(plain, calibrated)) >= 5


def test_calibration_settings_and_too_few_seen_classes_fail_in_one_line():
    from tfxfer.config import ZeroShot
    from tfxfer.errors import UserError

    with pytest.raises(UserError, match='^zero_shot.calibration must be a number or "auto"'):
        ZeroShot(calibration="high")
    assert ZeroShot(calibration=2.5).calibration == 2.5 and ZeroShot().calibration == "auto"
    x, y, s = _clusters(4)
    with pytest.raises(UserError, match="needs at least 3 seen classes") as err:
        calibrate.choose(lambda: zsl.ESZSL(), x[y < 2], y[y < 2], s[:2], 0.5, seed=0)
    assert "zero_shot.calibration=0" in str(err.value) and "\n" not in str(err.value)


def test_class_norm_logits_are_scaled_cosines_of_per_class_prototypes_in_numpy():
    """:class:`ClassNormMLP` against a numpy transcription of its forward pass; each class's
    score depends on its own attributes only (class normalisation is per class); training
    lowers the loss."""
    from tfxfer.zero_shot.class_norm import ClassNormMLP

    x, y, s = _biased(0)
    seen = y < 7
    model = ClassNormMLP(hidden=16, steps=60, scale=7.0, seed=3).fit(x[seen], y[seen], s[:7])
    assert model.losses[-1] < 0.5 * model.losses[0]
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in model.weights)
    a = s - s[:7].mean(axis=0)  # centred by the seen classes, then unit rows
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    h = np.maximum(a @ w1 + b1, 0)
    h = (h - h.mean(axis=1, keepdims=True)) / np.sqrt(h.var(axis=1, keepdims=True) + 1e-5)
    prototypes = h @ w2 + b2
    feats = (x - x[seen].mean(axis=0)) / x[seen].std(axis=0)
    cos = (feats / np.linalg.norm(feats, axis=1, keepdims=True)) @ (
        prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)
    ).T
    scores = model.scores(x, s)
    np.testing.assert_allclose(scores, 7.0 * cos, atol=2e-4)
    assert np.abs(scores).max() <= 7.0 + 1e-4
    np.testing.assert_allclose(model.scores(x, s[[8]])[:, 0], scores[:, 8], atol=1e-5)


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

    extracted, chosen = {}, []
    real_choose = calibrate.choose

    def spy(tm, split, size, batch, role):
        sentinel = (split.images == SENTINEL).all(axis=(1, 2, 3))
        calls.append((role, int(sentinel.sum()), len(split)))
        extracted[role] = real(tm, split, size, batch, role)
        return extracted[role]

    def spy_choose(make, features, *args, **kwargs):
        chosen.append(features)
        return real_choose(make, features, *args, **kwargs)

    monkeypatch.setattr(zs_train, "features", spy)
    monkeypatch.setattr(calibrate, "choose", spy_choose)
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
    # gamma is chosen, per method, on the seen classes' training features and nothing else
    assert len(chosen) == 3 and all(features is extracted["fit"] for features in chosen)
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
    for name in ("dap", "eszsl", "class_norm"):
        assert z[name]["zsl_accuracy"] == 1.0 and z[name]["zsl_chance"] == 1.0  # one candidate
        assert 0 <= z[name]["gzsl_h"] <= 1
        calibrated = z[name]["calibrated"]
        assert calibrated["chosen_on"].startswith("held-out training images of the seen")
        assert calibrated["pretend_unseen"] == 1 and 0 <= calibrated["gzsl_h"] <= 1
    assert metrics["class_names"] == ["a", "b", "c", "d"]
    # the exported classifier is calibrated ESZSL over all classes: its accuracy is numpy's
    assert metrics["val_accuracy"] == z["eszsl"]["calibrated"]["gzsl_per_sample_accuracy"]
    assert z["exported_gamma"] == z["eszsl"]["calibrated"]["gamma"]
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
