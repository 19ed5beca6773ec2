"""Shared fixtures: tiny synthetic image folders, and the kit marker's skip rule."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _share_the_cores() -> None:
    """One TensorFlow thread pool per core, not per process: under ``pytest -n N`` each worker
    (and every subprocess it starts, which inherits the environment) gets ``cores // N`` intra-op
    threads and one inter-op thread, instead of every process spinning up a pool the size of the
    machine and all of them fighting over it. Set before TensorFlow is imported; a value the
    user exported wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for name, value in (
        ("TF_NUM_INTRAOP_THREADS", threads),
        ("TF_NUM_INTEROP_THREADS", "1"),
        ("OMP_NUM_THREADS", threads),
    ):
        os.environ.setdefault(name, value)


_share_the_cores()

KIT_REASON = (
    'needs ../shared\'s offline kit: run `eval "$(../shared/kit/prepare.sh)"` '
    "(make test does) so that TFXFER_DATA_DIR and KERAS_HOME are set"
)


INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config, items):
    # Everything under tests/integration (a recipe end to end, a subprocess CLI, real data,
    # several processes) is marked integration here, once: make test-fast leaves it out.
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
    # Long tests first: with two xdist workers, one that starts last keeps a core idle meanwhile.
    items.sort(key=lambda item: -("slow" in item.keywords) - ("kit" in item.keywords))
    if os.environ.get("TFXFER_DATA_DIR"):
        return
    skip = pytest.mark.skip(reason=KIT_REASON)
    for item in items:
        if "kit" in item.keywords:
            item.add_marker(skip)


def write_class_images(root: Path, counts: dict[str, int], size: int = 24, seed: int = 0) -> Path:
    """Writes ``counts[label]`` JPEGs per class; each class has its own dominant colour."""
    rng = np.random.default_rng(seed)
    colours = [(220, 40, 40), (40, 40, 220), (40, 200, 40), (200, 200, 40)]
    for c, (label, n) in enumerate(sorted(counts.items())):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = np.array(colours[c % len(colours)], np.float32)
            img = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{label}_{i}.jpg", quality=95)
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """``train/{a,b}`` and ``val/{a,b}`` with 12 / 6 images per class."""
    write_class_images(tmp_path / "data" / "train", {"a": 12, "b": 12})
    write_class_images(tmp_path / "data" / "val", {"a": 6, "b": 6}, seed=1)
    return tmp_path / "data"


@pytest.fixture
def flat_folder(tmp_path) -> Path:
    """``{a,b,c}/`` with 10 images per class and no split."""
    return write_class_images(tmp_path / "flat", {"a": 10, "b": 10, "c": 10})


# The family of :func:`start_weights`: the smallest registered one, which builds and traces in
# about half MobileNetV2's time. Tests that use the file name it as their backbone.
START_FAMILY = "MobileNet025"


@pytest.fixture(scope="session")
def start_weights(tmp_path_factory):
    """A random 32 px :data:`START_FAMILY` backbone saved to a file, so runs start from known
    weights.

    Returns ``(path, {layer name: [arrays]})``. Its BatchNorm statistics are recalibrated on one
    batch (momentum 0, one training-mode pass), as pretrained weights would have them; with init
    statistics, frozen BN lets activations blow up and saturate ReLU6, and whole layers get
    exactly-zero gradients.
    """
    import keras
    from weight_checks import layer_states

    from tfxfer.models import backbones

    path = tmp_path_factory.mktemp("w") / "start.weights.h5"
    net = backbones.build(START_FAMILY, 32, weights=None)
    bns = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in bns:
        bn.momentum = 0.0
    x = np.random.default_rng(0).uniform(-1, 1, (32, 32, 32, 3)).astype("float32")
    net(x, training=True)
    for bn in bns:
        bn.momentum = 0.99
    net.save_weights(path)
    return str(path), layer_states(net)


def spy_litert(monkeypatch):
    """Records what each LiteRT export calibrates on and measures on."""
    from tfxfer.deploy import export as export_lib

    seen = []
    real = export_lib.litert.export

    def spy(model, variants, out, calibration, val_batches, task=None):
        batches = list(val_batches())
        seen.append(
            {"calibration": np.asarray(calibration), "val": np.concatenate([x for x, _ in batches])}
        )
        return real(model, variants, out, calibration, lambda: iter(batches), task)

    monkeypatch.setattr(export_lib.litert, "export", spy)
    return seen
