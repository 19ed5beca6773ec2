"""domain_adapt's network, chosen from the data (tfxfer.adapt.network): the rule on every kind
of domain, the measurement of folders, the user's own settings kept, the table of built-in
shapes against the real files, and a run that chose a digit network and says so."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from conftest import write_class_images
from PIL import Image

from tfxfer.adapt import network
from tfxfer.data import sources
from tfxfer.models import backbones
from tfxfer.recipes import domain_adapt


@pytest.mark.parametrize(
    "shapes, backbone",
    [
        ([(28, 1), (16, 1)], "LeNet"),  # MNIST -> USPS
        ([(16, 1), (28, 1)], "LeNet"),  # USPS -> MNIST
        ([(28, 1), (32, 3)], "DannMnist"),  # MNIST -> MNIST-M
        ([(32, 3), (32, 3)], "DannMnist"),
        ([(28, 1), (33, 1)], "MobileNetV2"),  # one side past 32 px: photos
        ([(500, 3), (375, 3)], "MobileNetV2"),
        ([(224, 1), (224, 1)], "MobileNetV2"),  # grey but large (X-rays): photos
    ],
)
def test_the_rule_picks_a_registered_network_with_the_settings_it_needs(shapes, backbone):
    c = network.pick(*shapes)
    assert c.backbone == backbone and c.backbone in backbones.names()
    spec = backbones.get(c.backbone)
    assert (c.weights is None) == spec.from_scratch  # digit networks have no ImageNet weights
    assert c.image_size == spec.default_size
    assert "source" in c.why and "target" in c.why


def test_a_folder_is_measured_on_its_images_and_nothing_else(tmp_path):
    colour = write_class_images(tmp_path / "colour", {"a": 3, "b": 3}, size=20)
    assert network.shape_of(str(colour)) == (20, 3)
    grey = tmp_path / "grey" / "x"
    grey.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((16, 12), np.uint8), mode="L").save(grey / f"{i}.png")
    (grey / "notes.txt").write_text("not an image")
    (grey / "broken.png").write_bytes(b"not a png")  # unreadable: skipped
    assert network.shape_of(str(grey.parent)) == (16, 1)
    large = write_class_images(tmp_path / "large", {"a": 2}, size=64)
    assert network.shape_of(str(large)) == (64, 3)
    assert network.shape_of(str(tmp_path / "empty_or_missing")) == (33, 3)  # counts as photos
    assert network.shape_of("tfrecord:/some/shards") == (33, 3)


def test_choose_keeps_what_the_user_set_and_a_named_backbone_skips_it():
    cfg = domain_adapt.CONFIG.replace(data="mnist", adapt={"target": "usps"})
    chosen, line = network.choose(cfg)
    assert (chosen.backbone, chosen.weights, chosen.image_size) == ("LeNet", None, 28)
    assert chosen.adapt.domain_hidden == (500, 500) and chosen.adapt.target == "usps"
    assert line.startswith("plan: network LeNet, because source 28 px grey and target 16 px")
    mine = cfg.replace(image_size=32, head_hidden=[64], adapt={"domain_hidden": [10]})
    chosen, line = network.choose(mine)
    assert (chosen.backbone, chosen.image_size, chosen.head_hidden) == ("LeNet", 32, (64,))
    assert chosen.adapt.domain_hidden == (10,)
    assert line.endswith("kept your image_size, head_hidden, domain_hidden")
    named = cfg.replace(backbone="MobileNet025")
    assert network.choose(named) == (named, None)
    assert network.choose(chosen)[0] == chosen  # a chosen config is left as it is


def test_every_built_in_dataset_has_a_known_shape():
    assert set(network.BUILTIN_SHAPES) == set(sources.BUILTINS)


@pytest.mark.kit
def test_the_built_in_shapes_are_the_kits_files():
    """Against independent reads: the array datasets as loaded, the folders measured."""
    for name in ("mnist", "fashion_mnist", "usps"):
        images = sources.load(name, 28, train_per_class=2, val_per_class=2).train.images
        assert network.BUILTIN_SHAPES[name] == (images.shape[1], images.shape[3]), name
    root = os.environ["TFXFER_DATA_DIR"]
    for name, folder in (("mnist_m", "mnist_m"), ("hymenoptera", "hymenoptera_data")):
        side, channels = network.shape_of(os.path.join(root, folder))
        want_side, want_channels = network.BUILTIN_SHAPES[name]
        assert channels == want_channels and (side == want_side or min(side, want_side) > 32)


@pytest.mark.integration
def test_the_recipe_trains_the_chosen_network_from_scratch_and_says_why(tmp_path, caplog):
    """20 px colour folders: the DANN paper's network at 28 px with its classifiers; the plan
    line is printed and config.json records the choice."""
    source = write_class_images(tmp_path / "source", {"a": 12, "b": 12}, size=20)
    target = write_class_images(tmp_path / "target", {"a": 8, "b": 8}, size=20, seed=5)
    out = tmp_path / "out"
    caplog.set_level(logging.INFO, logger="tfxfer")
    status = domain_adapt.main(
        ["--source", str(source), "--target", str(target), "--output", str(out)]
        + ["--epochs", "1", "--batch-size", "8", "--set", "verbose=0"]
    )
    assert status == 0, caplog.text[-3000:]
    plan = "plan: network DannMnist, because source 20 px colour and target 20 px colour"
    assert caplog.text.count(plan) == 1
    saved = json.loads((out / "config.json").read_text())
    assert (saved["backbone"], saved["weights"], saved["image_size"]) == ("DannMnist", None, 28)
    assert saved["head_hidden"] == [100, 100] and saved["adapt"]["domain_hidden"] == [100]
