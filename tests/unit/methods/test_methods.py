"""Fine-tuning methods: per-block learning rates, gradual unfreezing, L2-SP, multi-task heads."""

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import START_FAMILY

from tfxfer.config import Config, Phase, Task
from tfxfer.deploy import export
from tfxfer.errors import UserError
from tfxfer.methods import regularize, tasks
from tfxfer.models import backbones, freeze
from tfxfer.models import model as model_lib
from tfxfer.train import checkpoint, optim, prebuild, stage
from tfxfer.train import loop as train

SIZE = 32
DECAY = 0.5


def _batch(n=8, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    return x, np.eye(classes, dtype="float32")[np.arange(n) % classes]


def _model(start_weights):
    keras.utils.set_random_seed(0)  # the same head initialisation every time
    tm = model_lib.build(
        START_FAMILY, 2, SIZE, weights=start_weights[0], augment="none", dropout=0.0, seed=0
    )
    freeze.apply_scope(tm.backbone, tm.family, "all")
    return tm


def _block_of_variables(tm) -> dict[str, int]:
    """``{variable path: block}``; the head's variables are block 6."""
    blocks = {
        v.path: b
        for layer, b in zip(tm.backbone.layers, backbones.block_of_layers(tm.backbone, tm.family))
        for v in layer.weights
    }
    head = backbones.NUM_BLOCKS + 1
    return {v.path: blocks.get(v.path, head) for v in tm.model.trainable_weights}


def _one_fit_step(start_weights, phase) -> tuple[dict, dict]:
    """Per-variable update norm after one ``fit`` step through ``stage.compile_for``."""
    tm = _model(start_weights)
    specs = tasks.resolve((), ["a", "b"])
    stage.compile_for(tm.model, tm, phase, 1, Config(weights=None), specs)
    before = {v.path: np.array(v) for v in tm.model.trainable_weights}
    batches = tf.data.Dataset.from_tensor_slices(_batch()).batch(8)
    prebuild.before_fit(tm.model, batches)  # as stage.fit_stage does: one trace of the step
    tm.model.fit(batches, epochs=1, verbose=0)
    moves = {
        v.path: float(np.linalg.norm(np.array(v) - before[v.path]))
        for v in tm.model.trainable_weights
    }
    return moves, _block_of_variables(tm)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.integration
def test_one_step_with_lr_decay_moves_each_block_at_its_own_rate(optimizer, start_weights):
    phase = Phase(trainable="all", optimizer=optimizer, lr=1e-3, momentum=0.9)
    plain, blocks = _one_fit_step(start_weights, phase)
    decayed, _ = _one_fit_step(start_weights, dataclasses.replace(phase, lr_decay=DECAY))
    ratios: dict[int, list[float]] = {}
    for path, move in plain.items():
        if move > 0:
            ratios.setdefault(blocks[path], []).append(decayed[path] / move)
    assert sorted(ratios) == [1, 2, 3, 4, 5, 6]  # every block and the head moved
    for block, values in ratios.items():
        intended = DECAY ** (backbones.NUM_BLOCKS + 1 - block)
        np.testing.assert_allclose(values, intended, rtol=1e-3, err_msg=f"block {block}")
    print(optimizer, {b: round(float(np.median(v)), 5) for b, v in sorted(ratios.items())})


def test_scaling_gradients_is_not_a_learning_rate_multiplier_under_adam(start_weights):
    """Adam's m/sqrt(v) cancels a gradient scale; tfxfer's per-variable rate does not."""
    tm = _model(start_weights)
    x, y = _batch()
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)
    variables = tm.model.trainable_weights
    with tf.GradientTape() as tape:
        loss = loss_fn(y, tm.model(x, training=True))
    grads = tape.gradient(loss, variables)
    start = [np.array(v) for v in variables]
    mult = optim.block_multipliers(tm.backbone, tm.family, DECAY)
    factors = [mult.get(v.path, 1.0) for v in variables]

    def step(opt, gs):
        for v, s in zip(variables, start):
            v.assign(s)
        opt.apply(gs, variables)
        return [np.linalg.norm(np.array(v) - s) for v, s in zip(variables, start)]

    plain = step(keras.optimizers.Adam(1e-3), grads)
    per_var = step(optim.Adam(1e-3, lr_multipliers=mult), grads)
    scaled = step(keras.optimizers.Adam(1e-3), [g * f for g, f in zip(grads, factors)])
    bottom = [i for i, f in enumerate(factors) if f == DECAY**5 and plain[i] > 0]
    assert len(bottom) >= 3
    for i in bottom:
        assert per_var[i] / plain[i] == pytest.approx(DECAY**5, rel=1e-3)
        assert scaled[i] / plain[i] > 0.5  # ~1: the scaled gradient still moves at the full rate
    print(
        f"block 1, intended rate x{DECAY**5}: per-variable lr moves "
        f"x{np.median([per_var[i] / plain[i] for i in bottom]):.4f}, scaled gradients "
        f"x{np.median([scaled[i] / plain[i] for i in bottom]):.4f}"
    )


@pytest.mark.parametrize("name", ["SGD", "AdamW", "RMSprop"])
def test_per_variable_rate_holds_over_steps_with_momentum_and_weight_decay(name):
    kwargs = {
        "SGD": dict(momentum=0.9, nesterov=True, weight_decay=0.1),
        "AdamW": dict(weight_decay=0.1),
        "RMSprop": dict(momentum=0.9),
    }[name]
    a, b = keras.Variable([1.0, -2.0], name="a"), keras.Variable([1.0, -2.0], name="b")
    opt = getattr(optim, name)(0.01, lr_multipliers={b.path: 0.25}, **kwargs)
    for _ in range(3):  # the same gradient for both: only the rate differs
        opt.apply([keras.ops.array([0.5, -1.0])] * 2, [a, b])
    start = np.array([1.0, -2.0])
    if name == "RMSprop":  # its first steps are not linear in lr, but the ordering must hold
        assert np.all(np.abs(np.array(b) - start) < np.abs(np.array(a) - start))
    else:  # momentum and decoupled weight decay both see the variable's own rate
        np.testing.assert_allclose(np.array(b) - start, 0.25 * (np.array(a) - start), rtol=2e-3)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert restored.lr_multipliers == {b.path: 0.25}


def test_lr_range_spreads_rates_geometrically_from_block_1_to_the_head():
    head, decay = Phase(lr_range=(1e-6, 1e-4)).rates()
    rates = [head * decay ** (6 - b) for b in range(1, 7)]
    np.testing.assert_allclose(rates, np.geomspace(1e-6, 1e-4, 6), rtol=1e-9)
    with pytest.raises(UserError, match="lr_range"):
        Phase(lr_range=(1e-4, 1e-6))
    with pytest.raises(UserError, match="lr_range"):
        Phase(lr_range=(1e-6, 1e-4), lr_decay=0.5)
    with pytest.raises(UserError, match="lr_decay"):
        Phase(lr_decay=1.5)


def test_gradual_stages_unfreeze_top_down_and_reach_the_floor():
    phase = Phase(name="g", trainable="gradual", epochs=7, unfreeze_every=2)
    got = [
        (s.key, s.freeze_blocks, s.epochs, s.first_epoch, s.label)
        for s in freeze.stages(phase, 1, freeze_blocks=None)
    ]
    assert got == [
        ("1.0", 4, 2, 0, "g[block 5]"),
        ("1.1", 3, 2, 2, "g[blocks 4-5]"),
        ("1.2", 2, 2, 4, "g[blocks 3-5]"),
        ("1.3", 1, 1, 6, "g[blocks 2-5]"),
    ]
    floor = freeze.stages(Phase(trainable="gradual", epochs=9), 0, freeze_blocks=3)
    assert [(s.freeze_blocks, s.epochs) for s in floor] == [(4, 1), (3, 8)]
    assert [s.key for s in freeze.stages(Phase(epochs=3), 2)] == ["2"]


def _run_cfg(image_folder, tmp_path, start_weights, **kw) -> Config:
    base = dict(
        data=str(image_folder),
        backbone=START_FAMILY,
        weights=start_weights[0],
        image_size=SIZE,
        augment="none",
        batch_size=8,
        feature_views=1,
        verbose=0,
        head_dropout=0.0,
        output=str(tmp_path / "out"),
        seed=1,
    )
    return Config(**{**base, **kw})


@pytest.mark.slow
def test_gradual_phase_trains_one_more_block_per_epoch_with_bn_frozen(
    image_folder, tmp_path, start_weights
):
    cfg = _run_cfg(
        image_folder,
        tmp_path,
        start_weights,
        phases=(Phase(name="g", trainable="gradual", epochs=3, lr=1e-3),),
    )
    result = train.run(cfg)
    assert [h["phase"] for h in result.history] == ["g[block 5]", "g[blocks 4-5]", "g[blocks 3-5]"]
    initial = start_weights[1]
    bb = result.model.backbone
    for layer, block in zip(bb.layers, backbones.block_of_layers(bb, START_FAMILY)):
        for before, var in zip(initial.get(layer.name, []), layer.weights):
            moved = not np.array_equal(before, np.asarray(var))
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            # BN (gamma, beta and moving statistics) stays exactly as it started
            assert moved == (block >= 3 and not is_bn), (var.path, block, moved)


@pytest.mark.integration
def test_l2sp_penalty_is_zero_at_the_start_and_grows_as_the_weights_move(start_weights):
    tm = _model(start_weights)
    anchors = regularize.attach(tm, "l2sp", alpha=0.1, beta=0.01)
    # every backbone weight a phase could train is anchored, BatchNorm's gamma/beta included,
    # even though the scope "all" has frozen BatchNorm: MobileNet's 27 convolution kernels (the
    # stem, then 13 depthwise and pointwise pairs; no biases) and their 27 BatchNorms' 2 each
    assert START_FAMILY == "MobileNet025" and len(anchors) == 27 + 27 * 2
    start = regularize.penalty(tm)
    assert start["backbone"] == 0.0
    head_kernel = tm.head.get_layer("logits").kernel
    assert start["head"] == pytest.approx(0.005 * float(np.sum(np.square(head_kernel))), rel=1e-5)
    tm.model.compile(
        optimizer=keras.optimizers.SGD(1e-3),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    batches = tf.data.Dataset.from_tensor_slices(_batch()).batch(8)
    prebuild.before_fit(tm.model, batches)
    penalties = []
    for _ in range(3):
        tm.model.fit(batches, epochs=1, verbose=0)
        penalties.append(regularize.penalty(tm)["backbone"])
    assert 0 < penalties[0] < penalties[1] < penalties[2]
    # alpha/2 * ||w - w0||^2 over the trained backbone weights, against the saved start weights
    start_values = {
        f"{name}/{i}": value
        for name, values in start_weights[1].items()
        for i, value in enumerate(values)
    }
    expected = 0.0
    for layer in tm.backbone.layers:
        for i, v in enumerate(layer.weights):
            if v.trainable:
                expected += 0.05 * float(
                    np.sum(np.square(np.array(v, np.float64) - start_values[f"{layer.name}/{i}"]))
                )
    assert expected > 0 and penalties[2] == pytest.approx(expected, rel=1e-3)
    # the penalty is part of the training loss Keras minimises
    assert sum(float(loss) for loss in tm.model.losses) == pytest.approx(
        sum(regularize.penalty(tm).values()), rel=1e-4
    )
    # plain L2 pulls to 0 instead: non-zero from the start
    regularize.attach(tm, "l2", alpha=0.1, beta=0.01)
    assert regularize.penalty(tm)["backbone"] > 0
    regularize.attach(tm, "none", alpha=0.1, beta=0.01)
    assert regularize.penalty(tm) == {"backbone": 0.0, "head": 0.0} and not tm.model.losses


class _Crash(RuntimeError):
    pass


@pytest.mark.slow
def test_resume_restores_the_l2sp_anchor_and_the_per_block_rates(
    image_folder, tmp_path, start_weights, monkeypatch
):
    cfg = _run_cfg(
        image_folder,
        tmp_path,
        start_weights,
        regularization=dict(method="l2sp", alpha=0.5),
        phases=(
            Phase(name="warm", trainable="head", epochs=1, lr=1e-3),
            Phase(name="ft", trainable="all", epochs=2, lr=1e-3, lr_decay=DECAY, schedule="cosine"),
        ),
    )
    log_epoch = checkpoint.RunState.log_epoch

    def crash_after_first_finetune_epoch(self, model, key, epoch, logs):
        log_epoch(self, model, key, epoch, logs)
        if key == "1" and epoch == 0:
            raise _Crash("killed")

    monkeypatch.setattr(checkpoint.RunState, "log_epoch", crash_after_first_finetune_epoch)
    with pytest.raises(_Crash):
        train.run(cfg)
    monkeypatch.undo()
    anchor_file = tmp_path / "out" / "checkpoints" / regularize.ANCHOR_FILE
    assert anchor_file.is_file()

    result = train.run(cfg)  # the same command again: resumes the fine-tuning phase
    assert len(result.history[1]["history"]["loss"]) == 2
    tm = result.model
    opt = tm.model.optimizer
    steps = 24 // 8  # image_folder: 24 training images, batch 8
    assert int(opt.iterations) == 2 * steps  # epoch 2 ran on the restored optimizer state
    mult = optim.block_multipliers(tm.backbone, tm.family, DECAY)
    blocks = _block_of_variables(tm)
    for v in tm.model.trainable_weights:
        assert opt.factor(v) == mult.get(v.path, 1.0) == DECAY ** (6 - blocks[v.path])
    # the anchor is the starting point (the weights file), not the weights at the crash
    initial = start_weights[1]
    checked = 0
    for layer in tm.backbone.layers:
        for before, var in zip(initial.get(layer.name, []), layer.weights):
            if var.regularizer is not None:
                np.testing.assert_array_equal(np.asarray(var.regularizer.anchor), before)
                checked += 1
    assert checked == 27 + 27 * 2  # every anchor (see the penalty test above)
    assert regularize.penalty(tm)["backbone"] > 0


def test_a_saved_anchor_from_another_model_is_refused(tmp_path, start_weights):
    tm = _model(start_weights)
    regularize.attach(tm, "l2sp", 0.1, 0.01, tmp_path)
    other = model_lib.build("MobileNetV2", 2, SIZE, weights=None)  # not START_FAMILY
    with pytest.raises(UserError, match="anchor must belong to this model"):
        regularize.attach(other, "l2sp", 0.1, 0.01, tmp_path)


FINE_COARSE = (
    Task("fine"),
    Task("coarse", groups={"ab": ("a", "b"), "c": ("c",)}, loss_weight=0.5),
)


@pytest.mark.slow
def test_multi_task_run_trains_named_heads_and_exports_one_signature_with_named_outputs(
    tmp_path, start_weights
):
    from conftest import write_class_images

    root = tmp_path / "d"
    write_class_images(root / "train", {"a": 8, "b": 8, "c": 8})
    write_class_images(root / "val", {"a": 4, "b": 4, "c": 4}, seed=1)
    cfg = _run_cfg(
        root,
        tmp_path,
        start_weights,
        tasks=FINE_COARSE,
        phases=(
            Phase(name="head", trainable="head", epochs=2, lr=1e-2),
            Phase(name="part", trainable="partial", epochs=1, lr=1e-3),
        ),
        freeze_blocks=4,
    )
    result = train.run(cfg)
    paths = export.save_run(result, cfg)
    m = result.metrics
    assert set(m["tasks"]) == {"fine", "coarse"}
    assert m["tasks"]["fine"]["class_names"] == ["a", "b", "c"]
    assert m["tasks"]["coarse"]["class_names"] == ["ab", "c"]
    assert m["val_accuracy"] == m["tasks"]["fine"]["val_accuracy"]
    assert np.array(m["tasks"]["coarse"]["confusion_matrix"]).sum() == 12
    assert Path(paths["confusion_matrix_coarse"]).is_file()
    assert {"fine_loss", "coarse_loss", "val_fine_accuracy", "val_coarse_accuracy"} <= set(
        result.history[0]["history"]
    )
    # the shared backbone follows the phase's scope: blocks 1-4 frozen, block 5 trained
    info = freeze.summary(result.model.backbone, START_FAMILY)
    assert info["trainable_blocks"] == [5]
    serve = tf.saved_model.load(paths["saved_model"]).signatures["serve_images"]
    shapes = {k: v.shape.as_list() for k, v in serve.structured_outputs.items()}
    assert shapes["fine/logits"] == [None, 3] and shapes["coarse/logits"] == [None, 2]
    assert shapes["coarse/top_k_classes"] == [None, 2]
    images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3)).astype("uint8")
    served = serve(images=tf.constant(images))
    direct = result.model.serving_model()(images)
    for name in ("fine", "coarse"):
        np.testing.assert_allclose(
            served[f"{name}/logits"].numpy(), np.asarray(direct[name]), rtol=1e-4, atol=1e-4
        )
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert Config.from_dict(saved).tasks == FINE_COARSE


def test_task_groups_must_cover_each_class_once():
    with pytest.raises(UserError, match="exactly one group") as err:
        tasks.resolve((Task("coarse", groups={"x": ("a", "a", "zz")}),), ["a", "b"])
    assert "in no group" in str(err.value) and "unknown" in str(err.value)
    fm = list(tasks.FASHION_MNIST_CLASSES)
    coarse = tasks.resolve((Task("coarse", groups=tasks.FASHION_MNIST_COARSE),), fm)[0]
    assert coarse.class_names == ("tops", "bottoms", "footwear", "bags")
    assert [coarse.class_names[i] for i in coarse.mapping] == [
        "tops",
        "bottoms",
        "tops",
        "tops",
        "tops",
        "footwear",
        "tops",
        "footwear",
        "bags",
        "footwear",
    ]


def test_task_config_errors_state_the_rule():
    with pytest.raises(UserError, match="unique"):
        Config(tasks=(Task("a"), Task("a")))
    with pytest.raises(UserError, match="single task only"):
        Config(tasks=(Task("a"),), mixup=0.2)
    with pytest.raises(UserError, match="identifier"):
        Task("fine grained")
    with pytest.raises(UserError, match="regularization"):
        Config(regularization="l1")
    cfg = Config().override(
        [
            'tasks=[{"name": "fine"}, {"name": "coarse", "groups": {"ab": ["a", "b"]}}]',
            "regularization=l2sp",
            "phases.0.lr_decay=0.3",
        ]
    )
    assert cfg.tasks[1].groups == {"ab": ("a", "b")} and cfg.phases[0].lr_decay == 0.3
