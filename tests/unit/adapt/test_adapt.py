"""Domain adaptation (issue 14): the gradient-reversal layer, the schedules, DANN's training step
against a hand-computed one, the recipe on folders (an unlabelled target among them), its export
without the domain head, its one-line errors, and DANN under MirroredStrategy on two CPUs."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import spy_litert, write_class_images
from PIL import Image
from support import TWO_CPUS, board_events, result_line, run_python

from tfxfer.adapt import dann, losses, self_train
from tfxfer.adapt import train as adapt
from tfxfer.config import ADAPT_METHODS, Phase
from tfxfer.models import model as model_lib
from tfxfer.recipes import domain_adapt
from tfxfer.train import optim

SIZE = 32


def test_gradient_reversal_is_the_identity_forward_and_multiplies_gradients_by_minus_lambda():
    layer = dann.GradientReversal()
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 5)), tf.float32)
    w = tf.constant(np.random.default_rng(1).normal(size=(4, 5)), tf.float32)
    for lam in (0.0, 0.37, 1.0):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, weight=lam)
            loss = tf.reduce_sum(w * y**2)
        np.testing.assert_array_equal(y.numpy(), x.numpy())
        # d/dx sum(w y^2) = 2 w x, reversed and scaled
        np.testing.assert_allclose(
            tape.gradient(loss, x).numpy(), -lam * 2 * w.numpy() * x.numpy(), rtol=1e-6
        )


def test_the_reversal_weight_and_the_annealed_rate_follow_the_papers_formulas():
    p = np.linspace(0, 1, 11)
    np.testing.assert_allclose(dann.reversal_weight(p), 2 / (1 + np.exp(-10 * p)) - 1)
    assert dann.reversal_weight(0.0) == 0 and 0.9999 < dann.reversal_weight(1.0) < 1
    schedule = optim.PhaseAnneal(0.01, total_steps=200)
    got = [float(schedule(s)) for s in (0, 50, 100, 200, 400)]  # held at p = 1 past the end
    want = [0.01 / (1 + 10 * q) ** 0.75 for q in (0, 0.25, 0.5, 1, 1)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    opt = optim.make_optimizer(Phase(lr=0.01, schedule="anneal", epochs=2), steps_per_epoch=50)
    np.testing.assert_allclose(float(opt.learning_rate), 0.01, rtol=1e-6)  # of 100 steps:
    opt.iterations.assign(50)
    np.testing.assert_allclose(float(opt.learning_rate), 0.01 / 6**0.75, rtol=1e-6)


def _trainer(method: str, total_steps: int = 10, weight: float = 1.0, pseudo_weight=0.0):
    keras.utils.set_random_seed(0)
    tm = model_lib.build("MobileNet025", 3, SIZE, weights=None, augment="none", dropout=0.0, seed=0)
    tm.backbone.trainable = True
    domain = dann.domain_classifier((), seed=0)  # no hidden layer: no dropout, exact gradients
    trainer = dann.DomainAdversarial(
        tm, domain, total_steps, method, weight=weight, pseudo_weight=pseudo_weight
    )
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    return trainer


def _batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    xs = rng.uniform(0, 255, (6, SIZE, SIZE, 3)).astype("float32")
    xt = rng.uniform(0, 255, (6, SIZE, SIZE, 3)).astype("float32")
    return xs, np.eye(3, dtype="float32")[np.arange(6) % 3], xt


@pytest.mark.parametrize("method", ADAPT_METHODS)
def test_a_training_step_matches_the_hand_computed_update(method):
    """update = -lr * (grad of label loss + grad of MCC - lambda * grad of domain loss) on the
    features, and -lr * grad of the domain loss on the domain classifier; lambda = 0 without an
    adversary. CDAN's domain classifier reads f ⊗ g with g cut from the gradient (so the domain
    loss never moves the head); CDAN+E weighs each image by 1 + exp(-H), per domain."""
    xs, ys, xt = _batch()
    trainer = _trainer(method, total_steps=4)
    trainer.step.assign(1)  # p = 1/4
    adversary = method.split("+")[0] in ("dann", "cdan")
    lam = float(dann.reversal_weight(0.25)) if adversary else 0.0
    before = [v.numpy().copy() for v in trainer.trainable_variables]
    state = [v.numpy().copy() for v in trainer.weights]
    feature_vars = {id(v) for v in trainer.features.trainable_variables}
    ce = keras.losses.categorical_crossentropy
    mcc = tf.constant(0.0)
    with tf.GradientTape(persistent=True) as tape:
        if method == "source_only":  # the classifier on source alone; the domain probe cut off
            f = tf.stop_gradient(trainer.features(tf.concat([xs, xt], 0), training=False))
            logits = trainer.head(trainer.features(xs, training=True), training=True)
        else:
            f = trainer.features(tf.concat([xs, xt], 0), training=True)
            every = trainer.head(f, training=True)
            logits, probs = every[:6], tf.nn.softmax(every)
            if "mcc" in method:
                mcc = losses.mcc_loss(every[6:], 2.5)
        label = tf.reduce_mean(ce(ys, logits, from_logits=True))
        d_in = f if adversary else tf.stop_gradient(f)
        if method.startswith("cdan"):
            d_in = losses.multilinear(f, tf.stop_gradient(probs))
        d = trainer.domain(d_in, training=True)[:, 0]
        bce = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=tf.cast(tf.range(12) < 6, tf.float32), logits=d
        )
        w = tf.ones(12) / 12
        if "+e" in method:
            h = -tf.reduce_sum(probs * tf.math.log(probs + 1e-7), axis=1)
            w = tf.stop_gradient(1 + tf.exp(-h))
            w = tf.concat([w[:6] / tf.reduce_sum(w[:6]), w[6:] / tf.reduce_sum(w[6:])], 0) / 2
        domain = tf.reduce_sum(w * bce)
    g_label, g_mcc, g_domain = (
        [
            np.zeros(v.shape) if g is None else g.numpy()
            for v, g in zip(
                trainer.trainable_variables, tape.gradient(loss, trainer.trainable_variables)
            )
        ]
        for loss in (label, mcc, domain)
    )
    head_vars = {id(v) for v in trainer.head.trainable_variables}
    if method.startswith("cdan"):  # the predictions are cut: the domain loss misses the head
        assert not any(
            np.any(g) for v, g in zip(trainer.trainable_variables, g_domain) if id(v) in head_vars
        )
    for v, v0 in zip(trainer.weights, state):  # the reference's BatchNorm updates undone
        v.assign(v0)
    logs = trainer.train_step(((tf.constant(xs), tf.constant(ys)), tf.constant(xt)))
    assert abs(float(logs["lambda"]) - lam) < 1e-6 and int(trainer.step.numpy()) == 2
    want_loss = float(label + domain + mcc)
    assert abs(float(logs["loss"]) - want_loss) <= 1e-5 * abs(want_loss), (logs, want_loss)
    assert ("mcc_loss" in logs) == ("mcc" in method)
    moved_features = 0
    for v, v0, gl, gm, gd in zip(trainer.trainable_variables, before, g_label, g_mcc, g_domain):
        sign = -lam if id(v) in feature_vars else 1.0
        want, got = -0.1 * (gl + gm + sign * gd), v.numpy() - v0
        # to float32 round-off of a float32 step (a wrong sign on the reversed term is ~100%)
        assert np.max(np.abs(got - want)) <= 1e-3 * np.max(np.abs(want)) + 1e-6, v.path
        moved_features += id(v) in feature_vars and not np.allclose(v.numpy(), v0)
    assert moved_features > 20  # a real step through the backbone


def test_source_only_trains_on_source_images_alone():
    """The baseline of the papers: whatever the target batch holds, a source_only step leaves
    every weight of the classifier, BatchNorm's moving statistics included, where a step with
    another target batch leaves it (before the fix the backbone saw source + target batches,
    so its BatchNorm statistics adapted to the target). DANN's do depend on the target."""
    xs, ys, xt = _batch(3)

    def classifier_after_a_step(method, target):
        trainer = _trainer(method)
        trainer.train_step(((tf.constant(xs), tf.constant(ys)), tf.constant(target)))
        return [v.numpy() for v in trainer.features.weights + trainer.head.weights]

    dark, bright = np.zeros_like(xt), np.full_like(xt, 255.0)
    for a, b in zip(
        classifier_after_a_step("source_only", dark), classifier_after_a_step("source_only", bright)
    ):
        np.testing.assert_array_equal(a, b)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            classifier_after_a_step("dann", dark), classifier_after_a_step("dann", bright)
        )
    ]
    assert sum(moved) > 20  # the sentinel can see a target's influence


def test_class_balanced_pseudo_labels_keep_each_classes_most_confident_share():
    """Against a brute-force per-class threshold: the confidence of class c's k-th most
    confident image, k = ceil(fraction * n_c). A rare, unsure class keeps its share (a global
    threshold would drop it)."""
    import math

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 5)) + np.array([0.0, 0.3, 0.6, 1.0, 2.5])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = probs.argmax(1)
    counts = np.bincount(labels, minlength=5)
    assert counts.min() >= 5 and counts.max() > 10 * counts.min()  # unbalanced on purpose
    for fraction in (0.1, 0.5, 1.0):
        got_labels, keep = self_train.class_balanced(probs, fraction)
        np.testing.assert_array_equal(got_labels, labels)
        for c in range(5):
            confidence = probs.max(1)[labels == c]
            k = math.ceil(fraction * len(confidence))
            threshold = np.sort(confidence)[::-1][k - 1]
            np.testing.assert_array_equal(keep[labels == c], confidence >= threshold)
        assert keep.sum() == sum(math.ceil(fraction * n) for n in counts)
        assert (np.bincount(labels[keep], minlength=5) > 0).all()
    global_half = probs.max(1) >= np.median(probs.max(1))
    assert global_half[labels == 0].sum() < np.ceil(0.5 * counts[0])  # what balancing prevents


@pytest.mark.parametrize("method", ADAPT_METHODS)
def test_a_self_training_step_adds_the_kept_pseudo_labels_cross_entropy(method):
    """The pseudo-label term is the mean cross-entropy of the kept target images (weight 1)
    against their pseudo-labels, on the step's own forward pass, times its weight; with no
    image kept it is 0 and the step is the method's own (source_only aside: there the
    target images now pass through the trained backbone, which is the point)."""
    xs, ys, xt = _batch()
    yt = np.eye(3, dtype="float32")[[2, 1, 0, 0, 1, 2]]
    keep = np.array([1, 0, 1, 1, 0, 0], "float32")
    trainer = _trainer(method, pseudo_weight=0.7)
    start = [v.numpy().copy() for v in trainer.weights + trainer.optimizer.variables]
    every = trainer.head(trainer.features(tf.concat([xs, xt], 0), training=True), training=True)
    per_image = keras.losses.categorical_crossentropy(yt, every[6:], from_logits=True).numpy()
    want = float((keep * per_image).sum() / keep.sum())

    def step(target):  # one step from the same start: weights, optimizer and metrics
        for v, value in zip(trainer.weights + trainer.optimizer.variables, start):
            v.assign(value)
        trainer.reset_metrics()
        logs = trainer.train_step(((xs, ys), target))
        return {k: float(v) for k, v in logs.items()}, [v.numpy() for v in trainer.weights]

    kept, _ = step((xt, yt, keep))
    assert abs(kept["pseudo_loss"] - want) <= 1e-5 * want, (kept, want)
    plain, plain_weights = step(xt)
    assert "pseudo_loss" not in plain  # logged in self-training stages only
    none, none_weights = step((xt, yt, np.zeros(6, "float32")))
    assert none["pseudo_loss"] == 0.0
    if method == "source_only":
        return
    assert abs(kept["loss"] - (plain["loss"] + 0.7 * want)) <= 1e-5 * kept["loss"]
    np.testing.assert_allclose(none["loss"], plain["loss"], rtol=1e-6)
    for a, b in zip(none_weights, plain_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_dann_step_runs_under_mixed_precision():
    xs, ys, xt = _batch(2)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        trainer = _trainer("dann", total_steps=4)
        trainer.step.assign(2)
        logs = trainer.train_step(((xs, ys), xt))
        assert np.isfinite(float(logs["loss"])) and float(logs["lambda"]) > 0.9
        assert trainer.features.compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_the_lambda_metric_follows_the_schedule_step_by_step():
    xs, ys, xt = _batch(1)
    trainer = _trainer("dann", total_steps=6, weight=0.5)
    got = []
    for _ in range(8):
        trainer.reset_metrics()
        got.append(float(trainer.train_step(((xs, ys), xt))["lambda"]))
    want = 0.5 * dann.reversal_weight(np.minimum(np.arange(8) / 6, 1.0))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def _folders(tmp_path):
    source = write_class_images(tmp_path / "source", {"a": 16, "b": 16}, size=20)
    target = tmp_path / "target"  # a flat folder: no labels at all
    rng = np.random.default_rng(3)
    (target / "more").mkdir(parents=True)
    for i in range(20):
        img = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(img).save(target / ("more" if i % 2 else ".") / f"t{i}.png")
    (target / "notes.txt").write_text("not an image")
    target_val = write_class_images(tmp_path / "target_val", {"a": 5, "b": 5}, size=20, seed=7)
    return source, target, target_val


ARGS = [
    "--backbone",
    "MobileNet025",
    "--weights",
    "none",
    "--image-size",
    str(SIZE),
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--set",
    "verbose=0",
    "--set",
    "adapt.domain_hidden=[16]",
]


@pytest.mark.integration
def test_target_labels_never_reach_training(tmp_path, monkeypatch):
    """A labelled target whose every image is a sentinel (all pixels 7): no labelled batch that
    trains holds one; the unlabelled target batches hold only them. Self-training's
    pseudo-labels are the model's own predictions: on identical images, one class for all,
    where the folder's labels split them in two."""
    source, _, _ = _folders(tmp_path)
    target = tmp_path / "labelled_target"
    for label in ("a", "b"):
        (target / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(target / label / f"{i}.png")
    calls = {"labelled": [], "unlabelled": []}
    real_labelled, real_unlabelled = adapt.pipeline.image_dataset, adapt.domains.target_batches

    def sentinels(images):
        return int((np.asarray(images) == 7).all(axis=(1, 2, 3)).sum())

    def labelled(split, *args, **kwargs):
        if kwargs.get("shuffle"):  # training batches (evaluation keeps order)
            calls["labelled"].append((sentinels(split.images), len(split)))
        return real_labelled(split, *args, **kwargs)

    def unlabelled(images, *args, **kwargs):
        calls["unlabelled"].append((sentinels(images), len(images)))
        return real_unlabelled(images, *args, **kwargs)

    real_pseudo, real_predict = self_train.labelled_batches, self_train.predict
    predicted = []

    def pseudo(images, labels, keep, *args, **kwargs):
        calls.setdefault("pseudo", []).append((sentinels(images), len(images), labels, keep))
        return real_pseudo(images, labels, keep, *args, **kwargs)

    def predict(*args, **kwargs):
        predicted.append(real_predict(*args, **kwargs))
        return predicted[-1]

    monkeypatch.setattr(adapt.pipeline, "image_dataset", labelled)
    monkeypatch.setattr(adapt.domains, "target_batches", unlabelled)
    monkeypatch.setattr(self_train, "labelled_batches", pseudo)
    monkeypatch.setattr(self_train, "predict", predict)
    traced = []  # the adversarial step is traced once (tfxfer.train.prebuild), not twice
    step = dann.DomainAdversarial.train_step
    monkeypatch.setattr(
        dann.DomainAdversarial,
        "train_step",
        lambda self, data: traced.append(1) or step(self, data),
    )
    cfg = domain_adapt.CONFIG.replace(
        data=str(source),
        backbone="MobileNet025",
        weights=None,
        image_size=SIZE,
        batch_size=8,
        verbose=0,
        output=str(tmp_path / "o"),
        adapt={"target": str(target), "domain_hidden": [8], "self_train": 2},
        phases=[{"name": "adapt", "trainable": "all", "epochs": 1, "optimizer": "sgd", "lr": 0.01}],
    )
    result = adapt.run(cfg)
    # the source's training split only, no sentinel: once per adaptation epoch, then once per
    # self-training epoch (each has its own source order)
    assert calls["labelled"] == [(0, 26)] * 3
    assert calls["unlabelled"] == [(16, 16)]  # the target's training split, every one a sentinel
    assert result.metrics["adapt"]["num_target_val"] == 4  # its held-out 20%, evaluation only
    assert len(predicted) == len(calls["pseudo"]) == 2  # pseudo-labels chosen before each epoch
    for (n_sentinels, n, labels, keep), probs in zip(calls["pseudo"], predicted):
        assert n_sentinels == n == 16 and probs.shape == (16, 2)
        np.testing.assert_array_equal(labels, probs.argmax(1))
        assert len(set(labels.tolist())) == 1 and keep.sum() == 8  # half of the one class
    entry = result.history[-1]
    assert entry["phase"] == "self_train" and len(entry["history"]["pseudo_loss"]) == 2
    assert [e["kept"] for e in entry["pseudo_labels"]] == [8, 8]
    assert "pseudo_loss" not in result.history[0]["history"]
    assert len(traced) == 2  # one trace per stage: the adaptation, and the self-training
    events = board_events(tmp_path / "o")  # TensorBoard: the phases one after the other
    assert [s for s, _ in events["adapt/train"]["epoch_target_accuracy"]] == [0]
    assert [s for s, _ in events["self_train/train"]["epoch_pseudo_loss"]] == [1, 2]
    got = [v for _, v in events["self_train/train"]["epoch_target_accuracy"]]
    np.testing.assert_allclose(got, entry["history"]["target_accuracy"], rtol=1e-6)


@pytest.mark.slow
def test_int8_calibration_and_measurement_use_the_target_in_training_and_in_tfxfer_export(
    tmp_path, monkeypatch
):
    """Target training images are all pixels 7, its labelled evaluation images all 9, the
    source's noisy colours: int8 is calibrated on 7s only and measured on the 9s only, by the
    run and by ``tfxfer export`` alike, and the delta is taken from the float target accuracy."""
    from tfxfer import runner
    from tfxfer.deploy import export as export_lib

    source, _, _ = _folders(tmp_path)
    target, target_val = tmp_path / "t_train", tmp_path / "t_eval"
    for root, value, n in ((target, 7, 12), (target_val, 9, 3)):
        for label in ("a", "b"):
            (root / label).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((20, 20, 3), value, np.uint8)).save(
                    root / label / f"{i}.png"
                )
    seen = spy_litert(monkeypatch)
    cfg = domain_adapt.CONFIG.replace(
        data=str(source),
        backbone="MobileNet025",
        weights=None,
        image_size=SIZE,
        batch_size=8,
        verbose=0,
        output=str(tmp_path / "o"),
        export=("litert-int8",),
        adapt={"target": str(target), "target_val": str(target_val), "domain_hidden": [8]},
        phases=[{"name": "adapt", "trainable": "all", "epochs": 1, "optimizer": "sgd", "lr": 0.01}],
    )
    result = adapt.run(cfg)
    export_lib.save_run(result, cfg)
    runner.export_run(tmp_path / "o", ("litert-int8",))
    assert len(seen) == 2
    for record in seen:
        assert len(record["calibration"]) and (record["calibration"] == 7).all()
        assert record["val"].shape[0] == 6 and (record["val"] == 9).all()
    entry = json.loads((tmp_path / "o" / "metrics.json").read_text())["litert"]["int8"]
    a = result.metrics["adapt"]
    assert entry["delta_vs_float"] == round(entry["val_accuracy"] - a["target_accuracy"], 4)
    assert "labelled target data" in entry["measured_on"] and "target" in entry["calibrated_on"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--set", "adapt.target=null"], "needs a target domain"),
        (["--target", "{target}", "--method", "coral"], "adapt.method must be one of"),
        (["--target", "{target}", "--method", "dann+e"], "'+e' (after cdan only"),
        (["--target", "{target}", "--method", "mcc+cdan"], "'+mcc' last"),
        (
            ["--target", "{target}", "--method", "cdan+e", "--set", "phases.0.trainable=head"],
            "CDAN adapts the features",
        ),
        (["--target", "{broken}"], "at least one readable image"),
        (["--target", "{target}", "--target-val", "{other}"], "must have the source's classes"),
        (["--target", "{target}", "--set", "phases.0.trainable=head"], "DANN adapts the features"),
        (["--target", "{target}", "--batch-size", "64"], "at least one batch"),
        (
            ["--target", "{target}", "--set", "adapt.self_train_fraction=0"],
            "adapt.self_train_fraction must be in (0, 1]",
        ),
        (["--target", "{target}", "--self-train", "two"], "invalid command line"),
        (["--target", "{mixed}"], "either images (unlabelled) or split folders"),
        (
            ["--target", "{target}", "--set", "prune.sparsity=0.5"],
            "prune.* settings belong to the small_similar, small_different, large_different, "
            "large_similar, auto recipes; the domain_adapt recipe would ignore them",
        ),
    ],
)
def test_bad_adaptation_input_fails_in_one_line(tmp_path, capsys, argv, words):
    source, target, _ = _folders(tmp_path)
    other = write_class_images(tmp_path / "other", {"x": 3, "y": 3, "z": 3}, size=20)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")  # unlabelled, and unreadable
    mixed = write_class_images(tmp_path / "mixed" / "val", {"a": 2, "b": 2}, size=20).parent
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(mixed / "stray.png")
    paths = {"target": target, "other": other, "broken": tmp_path / "broken", "mixed": mixed}
    argv = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    cfg_args = ARGS + ["--source", str(source), "--output", str(tmp_path / "o")]
    status = domain_adapt.main(cfg_args + argv)
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and words in err, err


# ---- under MirroredStrategy on two logical CPUs -----------------------------------------------

MIRRORED_DANN = (
    TWO_CPUS
    + """
import keras
from tfxfer.adapt import dann
from tfxfer.models import model as model_lib
from tfxfer.train import distribute

rng = np.random.default_rng(0)
xs = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
xt = rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32")
ys = np.eye(2, dtype="float32")[np.arange(8) % 2]
ds = tf.data.Dataset.from_tensors(((xs, ys), xt)).repeat()


def fit(strategy, start):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        tm = model_lib.build("MobileNet025", 2, 32, weights=None, augment="none", dropout=0.0,
                             seed=0)
        tm.backbone.trainable = True
        bns = [l for l in tm.backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
        if start is None:  # statistics from one batch, as pretrained weights would have them
            for bn in bns:
                bn.momentum = 0.0
            tm.backbone(tm.model.get_layer("preprocess")(xs), training=True)
        for bn in bns:  # frozen: per-replica batch statistics would differ
            bn.momentum, bn.trainable = 0.99, False
        domain = dann.domain_classifier((), seed=0)
        trainer = dann.DomainAdversarial(tm, domain, total_steps=4)
        if start is not None:
            for v, value in zip(trainer.weights, start):
                v.assign(value)
        start = [v.numpy() for v in trainer.weights]
        trainer.compile(optimizer=keras.optimizers.SGD(0.002))
    logs = trainer.fit(ds, epochs=1, steps_per_epoch=3, verbose=0).history
    return trainer, start, logs

default, start, d_logs = fit(distribute.resolve("default")[0], None)
strategy = distribute.resolve("mirrored")[0]
mirrored, _, m_logs = fit(strategy, start)
pairs = [(a, b, s) for a, b, s in zip(default.weights, mirrored.weights, start) if a.trainable]
diff = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b, _ in pairs)
move = max(float(np.max(np.abs(a.numpy() - s))) for a, _, s in pairs)

# the whole recipe under --strategy mirrored, after another mirrored training in this process
# (a second MirroredStrategy used to abort its all-reduce: tensorflow#62790): distributed pairs
# of batches, the epoch report
from tfxfer.recipes import domain_adapt
source, target, target_val, out = sys.argv[1:5]
status = domain_adapt.main(["--source", source, "--target", target, "--target-val", target_val,
                            "--output", out, "--strategy", "mirrored", "--backbone",
                            "MobileNet025", "--weights", "none", "--image-size", "32",
                            "--epochs", "2", "--batch-size", "8", "--set", "verbose=0",
                            "--set", "adapt.domain_hidden=[16]"])
print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "diff": diff,
                              "move": move, "step": int(mirrored.step.numpy()),
                              "loss": [d_logs["loss"][0], m_logs["loss"][0]],
                              "lambda": [d_logs["lambda"][0], m_logs["lambda"][0]],
                              "recipe_status": status}))
"""
)


@pytest.mark.slow
def test_mirrored_dann_matches_one_device_and_the_recipe_exports_no_domain_head(tmp_path):
    source, target, target_val = _folders(tmp_path)
    out = tmp_path / "mirrored"
    proc = run_python(MIRRORED_DANN, str(source), str(target), str(target_val), str(out))
    r = result_line(proc.stdout)
    assert r["recipe_status"] == 0 and "MirroredStrategy" in proc.stdout, proc.stdout[-2000:]
    # the recipe on an unlabelled folder (with a sub-folder and a non-image file) as --target
    a = json.loads((out / "metrics.json").read_text())["adapt"]
    assert a["method"] == "dann" and a["num_target_train"] == 20 and a["num_target_val"] == 10
    assert len(a["target_accuracy_per_epoch"]) == 2 and 0 <= a["target_accuracy"] <= 1
    history = json.loads((out / "history.json").read_text())[0]["history"]
    for key in ("target_accuracy", "val_domain_accuracy", "domain_accuracy", "lambda"):
        assert len(history[key]) == 2, key
    assert history["lambda"][1] > history["lambda"][0] > 0  # rising with progress
    assert "target_accuracy=" in proc.stdout  # the printed summary
    # the exported model is the plain classifier: no domain head
    keras_model = keras.saving.load_model(out / "model.keras")
    names = [w.path for w in keras_model.weights]
    assert not [n for n in names if "domain" in n] and any("logits" in n for n in names)
    served = tf.saved_model.load(str(out / "saved_model"))
    assert served.variables and not [v.name for v in served.variables if "domain" in v.name]
    x = tf.constant(np.random.default_rng(0).integers(0, 255, (3, SIZE, SIZE, 3)), tf.uint8)
    np.testing.assert_allclose(
        served.serve_images(x)["logits"].numpy(),
        keras_model.predict(tf.cast(x, tf.float32), verbose=0),
        atol=1e-4,
    )
    assert r["replicas"] == 2 and r["step"] == 3
    assert r["move"] > 1e-3 and r["diff"] < 1e-4 * max(1.0, r["move"]), r
    assert abs(r["loss"][0] - r["loss"][1]) < 1e-4 * abs(r["loss"][0]), r
    assert abs(r["lambda"][0] - r["lambda"][1]) < 1e-6, r
