"""Which backbone weights a finished run changed, compared with the weights it started from."""

from __future__ import annotations

import keras
import numpy as np

from tfxfer.models import backbones

OUTPUT_FILES = (
    "saved_model/saved_model.pb",
    "model.keras",
    "config.json",
    "history.json",
    "metrics.json",
    "data_report.json",
    "curves.png",
    "confusion_matrix.png",
)


def layer_states(backbone) -> dict[str, list[np.ndarray]]:
    """A copy of every weighted layer's variables, by layer name."""
    return {
        layer.name: [np.asarray(w).copy() for w in layer.weights]
        for layer in backbone.layers
        if layer.weights
    }


def should_train(layer, block: int, cfg) -> bool:
    """What the recipe's phases say about one backbone layer."""
    scopes = {p.trainable for p in cfg.phases}
    is_bn = isinstance(layer, keras.layers.BatchNormalization)
    if is_bn and not cfg.train_bn:
        return False
    if "all" in scopes:
        return True
    if "partial" in scopes:
        k = cfg.freeze_blocks
        k = backbones.get(cfg.backbone).default_freeze if k is None else k
        return block > k
    return False


def assert_expected_changes(
    initial: dict, trained_model_path: str, cfg, every_trained_changes: bool = True
) -> dict:
    """Checks, variable by variable, that frozen weights are identical and trained ones moved.

    With ``every_trained_changes=False`` a trainable variable may stay put (random-init
    backbones with frozen BN saturate ReLU6 and give exactly-zero gradients to some layers);
    frozen variables must still be bit-identical. Returns counts of changed, unchanged-trainable
    and identical-frozen variables.
    """
    trained = keras.saving.load_model(trained_model_path, safe_mode=True)
    backbone = trained.get_layer("backbone")
    blocks = backbones.block_of_layers(backbone, cfg.backbone)
    tally = {"changed": 0, "trainable_unchanged": 0, "identical": 0}
    for layer, block in zip(backbone.layers, blocks):
        if not layer.weights:
            continue
        trains = should_train(layer, block, cfg)
        for before, var in zip(initial[layer.name], layer.weights):
            after = np.asarray(var)
            if trains:
                moved = not np.array_equal(before, after)
                assert moved or not every_trained_changes, (
                    f"{cfg.recipe}: {var.path} did not change"
                )
                tally["changed" if moved else "trainable_unchanged"] += 1
            else:
                np.testing.assert_array_equal(
                    before, after, err_msg=f"{cfg.recipe}: frozen {var.path} changed"
                )
                tally["identical"] += 1
    return tally
