"""Distributed training (issue 5): Mirrored, multi-worker and TPU strategy resolution.

- ``MirroredStrategy`` over two logical CPU devices takes the same training step as one device;
  a whole recipe runs with ``--strategy mirrored`` and writes every output.
- Two real ``MultiWorkerMirroredStrategy`` workers on 127.0.0.1 each decode half of the images
  (their own training rows, a share of validation), train in lock-step, match a one-process
  run, and only the chief writes; its SavedModel serves (kit data and weights).
- ``auto`` picks a TPU, then multi-worker, then the default strategy, and says why (mocked).

Logical devices and ``TF_CONFIG`` must be set before TensorFlow initialises, so the first two
parts run in subprocesses, each with a timeout after which it is killed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from support import TIMEOUT, TWO_CPUS, result_line, run_python, subprocess_env
from weight_checks import OUTPUT_FILES

from tfxfer.errors import UserError
from tfxfer.train import distribute

ROOT = Path(__file__).resolve().parents[2]  # the repository

ONE_STEP = (
    TWO_CPUS
    + """
import keras
from tfxfer.train import distribute
from tfxfer.models import freeze
from tfxfer.models import model as model_lib
from tfxfer.methods import regularize
from tfxfer.methods import tasks
from tfxfer.train import loop as train
from tfxfer.train import stage
from tfxfer.config import Config, Phase

SIZE, BATCH = 32, 8
keras.utils.set_random_seed(0)  # the same head initialisation on every run: a repeatable check
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype("float32")
y = np.eye(2, dtype="float32")[np.arange(BATCH) % 2]
cfg = Config(weights=None, augment="none", head_dropout=0.0, image_size=SIZE)
# Per-block rates (0.5 ** (6 - block)) and an L2-SP penalty, so both are checked under
# distribution too: their anchor is moved off the start, or the first step's penalty gradient is 0.
phase = Phase(name="all", trainable="all", epochs=1, optimizer="sgd", lr=0.01, lr_decay=0.5)


def calibrate_bn(tm):
    # Random BatchNorm statistics leave every feature ~0 (frozen BN, saturated ReLU6) and most
    # gradients exactly 0; set them from one batch, as pretrained weights would have them.
    bns = [l for l in tm.backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
    tm.backbone.trainable = True
    for bn in bns:
        bn.momentum = 0.0
    tm.backbone(tm.model.get_layer("preprocess")(x), training=True)
    for bn in bns:
        bn.momentum = 0.99


def one_step(strategy, start):
    with strategy.scope():
        tm = model_lib.build("MobileNet025", 2, SIZE, weights=None, augment="none",
                             dropout=0.0, seed=0)
        if start is None:
            calibrate_bn(tm)
        else:
            tm.model.set_weights(start)
        for anchor in regularize.attach(tm, "l2sp", alpha=1.0, beta=0.1):
            anchor.assign(anchor * 0.9)
        freeze.apply_scope(tm.backbone, tm.family, phase.trainable)
        stage.compile_for(tm.model, tm, phase, 1, cfg, tasks.resolve((), ["a", "b"]))
    before = tm.model.get_weights()
    trainable = [any(w is t for t in tm.model.trainable_weights) for w in tm.model.weights]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    loss = tm.model.fit(ds, epochs=1, verbose=0).history["loss"][0]
    factors = sorted({tm.model.optimizer.factor(v) for v in tm.model.trainable_weights})
    return before, float(loss), tm.model.get_weights(), trainable, factors


d_before, d_loss, d_after, trainable, factors = one_step(tf.distribute.get_strategy(), None)
mirrored, why = distribute.resolve("mirrored")
first = next(iter(mirrored.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH))))
m_before, m_loss, m_after, _, m_factors = one_step(mirrored, d_before)
move = [float(np.max(np.abs(a - b))) for a, b in zip(d_after, d_before)]
diff = [float(np.max(np.abs(a - b))) for a, b in zip(m_after, d_after)]
print("RESULT " + json.dumps({
    "why": why, "replicas": mirrored.num_replicas_in_sync,
    "devices": list(mirrored.extended.worker_devices),
    "per_replica_batch": [int(t.shape[0]) for t in mirrored.experimental_local_results(first[0])],
    "same_start": all(np.array_equal(a, b) for a, b in zip(d_before, m_before)),
    "loss": [d_loss, m_loss], "move": move, "diff": diff, "trainable": trainable,
    "factors": [factors, m_factors]}), flush=True)
"""
)

MIRRORED_RECIPE = (
    TWO_CPUS
    + """
from tfxfer.recipes import large_similar
sys.exit(large_similar.main(sys.argv[1:]))
"""
)

# One multi-worker worker (or, with strategy "default", the one-process reference): the
# large_similar recipe (head on cached features, then everything on images) through
# tfxfer.runner.run = train.run + export.save_run. Dropout and augmentation are off and each epoch
# is one batch of the 8 training images, so every strategy computes the same thing.
WORKER = """
import json, logging, sys
import numpy as np
from tfxfer import cli
from tfxfer.recipes import large_similar

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
out, strategy = sys.argv[1], sys.argv[2]
cfg = large_similar.CONFIG.replace(
    data="hymenoptera", train_per_class=4, val_per_class=4, image_size=32, weights="imagenet",
    backbone="MobileNet025",  # the smallest registered family (its ImageNet file is in the kit)
    augment="none", head_dropout=0.0, batch_size=8, feature_views=1, strategy=strategy,
    output=out, verbose=0).with_epochs(2)
result = cli.run(cfg)
probe = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
print("RESULT " + json.dumps({
    "output": result.output, "paths": result.paths,
    "loss": [h["history"]["loss"] for h in result.history],
    "weight_sums": [float(np.sum(w, dtype=np.float64)) for w in result.model.model.get_weights()],
    "logits": result.model.serving_model()(probe).numpy().tolist(),
    "probe": probe.tolist()}), flush=True)
"""


def _free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free a moment ago (all held open while choosing)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ---- MirroredStrategy over two logical CPU devices ---------------------------------------------


@pytest.mark.slow
def test_mirrored_step_on_two_logical_cpus_matches_the_default_strategy():
    r = result_line(run_python(ONE_STEP).stdout)
    assert r["why"] == "requested: mirrored"
    assert r["replicas"] == 2 and [d[-5:] for d in r["devices"]] == ["CPU:0", "CPU:1"]
    assert r["per_replica_batch"] == [4, 4]  # the global batch of 8 is split, not copied
    assert r["same_start"]
    # per-block rates lr * 0.5 ** (6 - block) on both strategies (the head at lr)
    assert r["factors"] == [[0.5**k for k in range(5, -1, -1)]] * 2, r["factors"]
    d_loss, m_loss = r["loss"]
    assert abs(m_loss - d_loss) <= 1e-5 * d_loss, r["loss"]
    trained = [m for m, t in zip(r["move"], r["trainable"]) if t]
    frozen = [m for m, t in zip(r["move"], r["trainable"]) if not t]
    # a real step with BN frozen: MobileNet's 27 convolution kernels and the head's 2 variables
    assert len(trained) == 27 + 2 and min(trained) > 0 and max(frozen) == 0
    # Same weights after the step, to float round-off relative to how far each variable moved.
    worst = max(d / max(m, 1e-12) for d, m in zip(r["diff"], r["move"]) if m > 0)
    assert worst < 1e-4 and max(r["diff"][i] for i, t in enumerate(r["trainable"]) if not t) == 0
    print(
        f"mirrored vs default: loss {d_loss:.7f} vs {m_loss:.7f}, max weight diff "
        f"{max(r['diff']):.2e} (max move {max(r['move']):.2e}, worst ratio {worst:.1e})"
    )


@pytest.mark.slow
def test_mirrored_recipe_through_train_run_writes_every_output(image_folder, tmp_path):
    out = tmp_path / "out"
    proc = run_python(
        MIRRORED_RECIPE,
        "--data",
        str(image_folder),
        "--backbone",
        "MobileNet025",
        "--image-size",
        "32",
        "--weights",
        "none",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--strategy",
        "mirrored",
        "--output",
        str(out),
        "--set",
        "feature_views=2",
        "--set",
        "verbose=0",
    )
    assert (
        "strategy: MirroredStrategy (requested: mirrored), 2 replica(s), global batch 8"
        in proc.stdout
    ), proc.stdout[-2000:]
    for name in OUTPUT_FILES:
        assert (out / name).exists(), name
    history = json.loads((out / "history.json").read_text())
    assert [(h["phase"], h["cached_features"]) for h in history] == [
        ("warmup", True),
        ("finetune", False),
    ]
    assert json.loads((out / "metrics.json").read_text())["num_val"] == 12
    served = tf.saved_model.load(str(out / "saved_model"))
    logits = served.serve_images(tf.zeros((3, 32, 32, 3), tf.uint8))["logits"].numpy()
    assert logits.shape == (3, 2) and np.isfinite(logits).all()


# ---- MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 ----------------------------


def _run_workers(tmp_path: Path) -> list[tuple[int, str]]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    procs, logs = [], []
    for i in range(2):
        (tmp_path / f"tmp{i}").mkdir()
        logs.append(tmp_path / f"worker{i}.log")
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        # Separate outputs and TMPDIRs (as on separate machines) show who wrote what.
        with logs[i].open("w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(tmp_path / f"out{i}"), "multiworker"],
                    cwd=ROOT,
                    env=subprocess_env(TF_CONFIG=tf_config, TMPDIR=str(tmp_path / f"tmp{i}")),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    deadline = time.monotonic() + TIMEOUT
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"multi-worker run still running after {TIMEOUT}s; worker 0 log ends:\n"
            + logs[0].read_text()[-2000:]
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, log.read_text()) for p, log in zip(procs, logs)]


@pytest.mark.kit
@pytest.mark.slow
def test_two_workers_train_in_lock_step_match_one_process_and_only_the_chief_writes(tmp_path):
    (rc0, log0), (rc1, log1) = _run_workers(tmp_path)
    assert rc0 == 0, log0[-3000:]
    assert rc1 == 0, log1[-3000:]
    for log in (log0, log1):
        assert (
            "strategy: MultiWorkerMirroredStrategy (requested: multiworker), 2 replica(s), "
            "global batch 8"
        ) in log
    # Each worker decoded only its half of each split (hymenoptera, 4 + 4 images per split) ...
    for k, log in enumerate((log0, log1)):
        for split in ("training", "validation"):
            assert f"worker {k} of 2 decoded 4 of the 8 {split} images" in log, log[-3000:]
    chief, other = result_line(log0), result_line(log1)
    ref = result_line(run_python(WORKER, str(tmp_path / "ref"), "default").stdout)

    # Only the chief (worker 0) writes; the other leaves nothing, not even in its TMPDIR.
    assert chief["output"] == str(tmp_path / "out0") and chief["paths"]
    for name in OUTPUT_FILES:
        assert (tmp_path / "out0" / name).exists(), name
    assert other["output"] is None and other["paths"] == {}
    assert not (tmp_path / "out1").exists()
    assert not any((tmp_path / "tmp1").iterdir())

    # Synchronous data parallelism: both workers hold identical weights and losses ...
    assert other["loss"] == chief["loss"] and other["weight_sums"] == chief["weight_sums"]
    assert other["logits"] == chief["logits"]
    # ... equal, to float round-off, to one process on the same global batches (each global
    # batch is the union of the workers' own rows).
    np.testing.assert_allclose(chief["loss"], ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(chief["weight_sums"], ref["weight_sums"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(chief["logits"], ref["logits"], atol=1e-4)
    assert chief["loss"][0][0] != chief["loss"][1][-1]  # it trained

    # The chief's SavedModel loads here and serves what the trained model computes.
    served = tf.saved_model.load(chief["paths"]["saved_model"])
    probe = tf.constant(np.array(chief["probe"], np.uint8))
    np.testing.assert_allclose(
        served.serve_images(probe)["logits"].numpy(), chief["logits"], atol=1e-5
    )
    print(
        f"multi-worker vs one process: losses {chief['loss']} vs {ref['loss']}; max weight-sum "
        f"diff {np.max(np.abs(np.subtract(chief['weight_sums'], ref['weight_sums']))):.1e}"
    )


# ---- resolve("auto"): TPU, then multi-worker, then default (mocked, in process) ---------------


class _Fake:
    """Stands in for a strategy or resolver; records what it was built from."""

    def __init__(self, *args, **kwargs):
        self.args = args


def _refuse(*_args, **_kwargs):
    raise AssertionError("this strategy must not be constructed here")


def _two_workers(monkeypatch):
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    )


def test_auto_selects_the_tpu_when_a_tpu_cluster_resolver_finds_one(monkeypatch):
    resolver = _Fake()
    monkeypatch.setattr(distribute, "_tpu_resolver", lambda: resolver)
    monkeypatch.setattr(distribute, "_tpu_strategy", _Fake)
    monkeypatch.setattr(distribute, "MultiWorkerMirroredStrategy", _refuse)
    _two_workers(monkeypatch)  # a TPU wins over TF_CONFIG
    strategy, why = distribute.resolve("auto")
    assert isinstance(strategy, _Fake) and strategy.args == (resolver,)
    assert why == "auto: a TPU cluster resolver found a TPU"
    strategy, why = distribute.resolve("tpu")
    assert strategy.args == (resolver,) and why == "requested: tpu"


def test_requested_tpu_without_a_tpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(distribute, "_tpu_resolver", lambda: None)
    monkeypatch.setattr(distribute, "_tpu_strategy", _refuse)
    with pytest.raises(UserError, match="needs a TPU"):
        distribute.resolve("tpu")


@pytest.mark.parametrize(
    "cluster",
    [{"worker": ["a:1", "b:1"]}, {"chief": ["a:1"], "worker": ["b:1"]}],
    ids=["two workers", "chief and worker"],
)
def test_auto_selects_multi_worker_when_tf_config_names_two_workers(monkeypatch, cluster):
    monkeypatch.setattr(distribute, "_tpu_resolver", lambda: None)
    monkeypatch.setattr(distribute, "_tpu_strategy", _refuse)
    monkeypatch.setattr(distribute, "MultiWorkerMirroredStrategy", _Fake)
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    )
    strategy, why = distribute.resolve("auto")
    assert isinstance(strategy, _Fake)
    assert why == "auto: TF_CONFIG names 2 workers"


@pytest.mark.parametrize(
    "tf_config",
    [None, {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}],
    ids=["no TF_CONFIG", "one worker"],
)
def test_auto_falls_back_to_the_default_strategy_and_says_why(monkeypatch, tf_config):
    monkeypatch.setattr(distribute, "_tpu_resolver", lambda: None)
    monkeypatch.setattr(distribute, "_tpu_strategy", _refuse)
    monkeypatch.setattr(distribute, "MultiWorkerMirroredStrategy", _refuse)
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    gpus = len(tf.config.list_logical_devices("GPU"))
    if gpus > 1:
        pytest.skip("with more than one GPU auto picks MirroredStrategy")
    strategy, why = distribute.resolve("auto")
    assert strategy is tf.distribute.get_strategy()
    assert why == f"auto: default strategy ({gpus} GPU)"


def test_bad_tf_config_is_a_user_error(monkeypatch):
    monkeypatch.setattr(distribute, "_tpu_resolver", lambda: None)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG must be valid JSON"):
        distribute.resolve("auto")


class _Resolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


@pytest.mark.parametrize(
    "task,cluster,chief",
    [
        (("worker", 0), {"worker": ["a:1", "b:1"]}, True),
        (("worker", 1), {"worker": ["a:1", "b:1"]}, False),
        (("chief", 0), {"chief": ["a:1"], "worker": ["b:1"]}, True),
        (("worker", 0), {"chief": ["a:1"], "worker": ["b:1"]}, False),
    ],
    ids=["worker 0, no chief", "worker 1", "chief", "worker 0 beside a chief"],
)
def test_is_chief_names_the_one_worker_that_writes_and_num_workers_counts_them(
    task, cluster, chief
):
    strategy = _Fake()
    strategy.cluster_resolver = _Resolver(*task, cluster)
    assert distribute.is_chief(strategy) is chief
    assert distribute.num_workers(strategy) == 2
    one_process = tf.distribute.get_strategy()
    assert distribute.is_chief(one_process) and distribute.num_workers(one_process) == 1


def test_mixed_precision_policy_follows_the_device(monkeypatch):
    default = tf.distribute.get_strategy()
    assert distribute.precision_policy(False, default)[0] == "float32"
    monkeypatch.setattr(distribute, "_TPU_STRATEGIES", (_Fake,))
    assert distribute.precision_policy(True, _Fake())[0] == "mixed_bfloat16"
    assert distribute.precision_policy(True, default)[0] == "mixed_bfloat16"  # this CPU machine
    real = tf.config.list_logical_devices
    monkeypatch.setattr(
        tf.config,
        "list_logical_devices",
        lambda kind=None: ["GPU:0"] if kind == "GPU" else real(kind),
    )
    assert distribute.precision_policy(True, default) == (
        "mixed_float16",
        "GPU: float16 with loss scaling",
    )


def test_train_run_sets_the_device_policy(image_folder, tmp_path):
    import keras

    from tfxfer.config import Config, Phase
    from tfxfer.train import loop as train

    cfg = Config(
        data=str(image_folder),
        backbone="MobileNet025",
        weights=None,
        image_size=32,
        mixed_precision=True,
        verbose=0,
        output=str(tmp_path / "o"),
        phases=(Phase(epochs=1), Phase(name="all", trainable="all", epochs=1)),
    )
    try:
        result = train.run(cfg)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
        assert result.model.backbone.compute_dtype == "bfloat16"
        assert np.isfinite(result.metrics["val_loss"])
    finally:
        keras.mixed_precision.set_global_policy("float32")
