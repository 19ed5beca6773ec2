import keras
import numpy as np
import pytest

from tfxfer.errors import UserError
from tfxfer.models import backbones
from tfxfer.models.model import Preprocess

REQUIRED = [
    "MobileNetV2",
    "MobileNetV3Small",
    "MobileNetV3Large",
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetV2B0",
    "EfficientNetV2B1",
    "EfficientNetV2B2",
    "EfficientNetV2B3",
    "EfficientNetV2S",
    "ResNet50",
    "ResNet50V2",
    "DenseNet121",
    "ConvNeXtTiny",
    "Xception",
    "InceptionV3",
    "NASNetMobile",
    "VGG16",
]

# The family module whose preprocess_input each registry mode must reproduce.
FAMILY_MODULES = {
    "MobileNetV2": keras.applications.mobilenet_v2,
    "ResNet50": keras.applications.resnet50,
    "ResNet50V2": keras.applications.resnet_v2,
    "DenseNet121": keras.applications.densenet,
    "VGG16": keras.applications.vgg16,
    "Xception": keras.applications.xception,
    "InceptionV3": keras.applications.inception_v3,
    "NASNetMobile": keras.applications.nasnet,
    "EfficientNetB0": keras.applications.efficientnet,
    "EfficientNetV2B0": keras.applications.efficientnet_v2,
    "MobileNetV3Small": keras.applications.mobilenet_v3,
    "ConvNeXtTiny": keras.applications.convnext,
}


def test_registry_has_every_required_family():
    assert set(REQUIRED) <= set(backbones.names())


@pytest.mark.parametrize("family", sorted(FAMILY_MODULES))
def test_in_graph_preprocessing_equals_the_family_preprocess_input(family):
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = np.asarray(Preprocess(backbones.get(family).preprocess)(x))
    theirs = np.asarray(FAMILY_MODULES[family].preprocess_input(x.copy()))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


def test_blocks_mean_output_stride_on_two_different_families():
    for family, size in (("MobileNetV2", 64), ("ResNet50", 64)):
        net = backbones.build(family, size, weights=None)
        starts = backbones.block_boundaries(net, family)
        for block, idx in enumerate(starts, start=2):
            assert size // net.layers[idx].output.shape[1] == 2**block
            assert size // net.layers[idx - 1].output.shape[1] < 2**block


def test_unknown_name_lists_the_valid_names_and_suggests_the_spelling():
    with pytest.raises(
        UserError,
        match=r"valid: MobileNet, .*VGG16, DannMnist, LeNet, DTN; got 'mobilenetv2'"
        r".*did you mean MobileNetV2",
    ):
        backbones.get("mobilenetv2")


def test_image_size_below_minimum_names_the_minimum():
    with pytest.raises(UserError, match="image_size must be >= 75 for InceptionV3; got 64"):
        backbones.resolve_size("InceptionV3", 64)
    assert backbones.resolve_size("MobileNetV2", None) == 224


def test_weights_file_path_loads_and_a_mismatched_file_is_refused(tmp_path):
    src = backbones.build("MobileNet025", 32, weights=None)
    path = tmp_path / "m025.weights.h5"
    src.save_weights(path)
    same = backbones.build("MobileNet025", 32, weights=str(path))
    for a, b in zip(src.weights, same.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(UserError, match="weights file must fit MobileNetV2 without its top"):
        backbones.build("MobileNetV2", 32, weights=str(path))
    with pytest.raises(UserError, match="existing weights file"):
        backbones.build("MobileNetV2", 32, weights=str(tmp_path / "missing.h5"))


@pytest.mark.kit
def test_imagenet_weights_load_through_the_keras_cache():
    """The real code path: weights="imagenet" resolved by Keras from $KERAS_HOME/models."""
    net = backbones.build("MobileNetV2", 224, weights="imagenet")
    random = backbones.build("MobileNetV2", 224, weights=None)
    first = net.get_layer("Conv1").kernel
    assert not np.allclose(np.asarray(first), np.asarray(random.get_layer("Conv1").kernel))
    bn = net.get_layer("bn_Conv1")
    assert float(np.abs(np.asarray(bn.moving_mean)).sum()) > 0  # trained statistics, not init


@pytest.mark.kit
def test_kit_weights_file_by_path_loads_at_a_non_default_size():
    import os

    path = os.path.join(
        os.environ["KERAS_HOME"],
        "models",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    )
    by_path = backbones.build("MobileNetV2", 96, weights=path)
    by_name = backbones.build("MobileNetV2", 224, weights="imagenet")
    for a, b in zip(by_path.weights, by_name.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---- one graph, weighted blocks, deterministic frozen parts: over every registered family ------
def _keras_imagenet_graph(family, weights_file, monkeypatch, size=None):
    """What Keras itself builds for ``weights="imagenet"``, with its download pointed at
    ``weights_file`` (an independent computation of the ImageNet graph, offline)."""
    from keras.src.utils import file_utils

    spec = backbones.get(family)
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: weights_file)
    return getattr(keras.applications, spec.constructor)(
        include_top=False,
        weights="imagenet",
        input_shape=(size or spec.min_size,) * 2 + (3,),
        **spec.kwargs,
    )


PRETRAINED = [n for n in backbones.names() if not backbones.get(n).from_scratch]
DIGITS = [n for n in backbones.names() if backbones.get(n).from_scratch]


@pytest.mark.slow
@pytest.mark.parametrize("family", PRETRAINED)
def test_each_family_builds_the_imagenet_graph_whichever_way_the_weights_arrive_in_weighted_blocks(
    family, tmp_path, monkeypatch
):
    """One build per way the weights arrive (random, Keras's own ImageNet route, and a file where
    tfxfer copies the graph to insert the stem rescaling), at the family's default size, where
    the registry's boundaries are meant to hold. Elsewhere a file loads into the random build's
    graph by Keras's own ``load_weights``, the route that
    test_weights_file_path_loads_and_a_mismatched_file_is_refused covers."""
    from tfxfer.models import freeze

    spec = backbones.get(family)
    size = spec.default_size
    ours = backbones.build(family, size, weights=None)
    # the registry: layer count, feature width and block boundaries are the real graph's
    assert len(ours.layers) == spec.num_layers
    assert ours.output.shape[-1] == spec.feature_width
    assert backbones.derive_boundaries(ours) == spec.boundaries
    blocks = backbones.block_of_layers(ours, family)
    assert blocks[0] == 1 and blocks[-1] == 5 and blocks == sorted(blocks)
    # the same layers and the same function as the graph Keras builds for ImageNet weights
    path = str(tmp_path / "w.weights.h5")
    ours.save_weights(path)
    theirs = _keras_imagenet_graph(family, path, monkeypatch, size)
    kinds = lambda net: [
        type(layer).__name__.replace("FreezableDropout", "Dropout") for layer in net.layers
    ]
    assert kinds(ours) == kinds(theirs)
    x = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype("float32")
    want = np.asarray(theirs(x, training=False))
    np.testing.assert_allclose(np.asarray(ours(x, training=False)), want, rtol=1e-5, atol=1e-5)
    if spec.imagenet_stem_rescaling:  # the copied graph, with a layer Keras's file lacks
        by_path = backbones.build(family, size, weights=path)
        assert kinds(by_path) == kinds(theirs)
        got = np.asarray(by_path(x, training=False))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # every block holds trainable weights, and the family's default partial scope trains some
    freeze.unfreeze_all(ours, train_bn=True)
    held = {
        b: sum(
            int(np.prod(w.shape))
            for layer, lb in zip(ours.layers, blocks)
            if lb == b
            for w in layer.trainable_weights
        )
        for b in range(1, 6)
    }
    assert all(held[b] > 0 for b in held), held
    freeze.apply_scope(ours, family, "partial")
    assert ours.trainable_weights, f"{family}: the default partial scope trains nothing"
    assert freeze.summary(ours, family)["trainable_blocks"]
    # the deterministic-frozen test below covers every family that has random layers
    has_random = any(
        isinstance(layer, keras.layers.Dropout)
        or "Stochastic" in type(layer).__name__
        or "Noise" in type(layer).__name__
        for layer in ours.layers
    )
    assert has_random == (family in STOCHASTIC)
    keras.backend.clear_session()


STOCHASTIC = [f for f in PRETRAINED if f.startswith("EfficientNet")]

# Parameters counted by hand from the papers' layer lists (RGB input, default size): conv
# k*k*in*out + out, Dense in*out + out, BatchNorm 4 per channel.
DIGIT_PARAMS = {
    "DannMnist": (5 * 5 * 3 * 32 + 32) + (5 * 5 * 32 * 48 + 48),
    "LeNet": (5 * 5 * 3 * 20 + 20) + (5 * 5 * 20 * 50 + 50) + (4 * 4 * 50 * 500 + 500),
    "DTN": (5 * 5 * 3 * 64 + 64 + 4 * 64)
    + (5 * 5 * 64 * 128 + 128 + 4 * 128)
    + (5 * 5 * 128 * 256 + 256 + 4 * 256)
    + (4 * 4 * 256 * 512 + 512 + 4 * 512),
}


@pytest.mark.parametrize("family", DIGITS)
def test_each_digit_network_is_the_papers_with_a_weighted_stage_in_every_block(family, tmp_path):
    from tfxfer.models import freeze
    from tfxfer.models.stochastic import FreezableDropout

    spec = backbones.get(family)
    net = backbones.build(family, spec.default_size, weights=None)
    assert net.count_params() == DIGIT_PARAMS[family]
    assert len(net.layers) == spec.num_layers and net.output.shape == (None, spec.feature_width)
    blocks = backbones.block_of_layers(net, family)
    assert blocks[0] == 1 and blocks[-1] == spec.num_blocks == len(spec.boundaries) + 1
    assert blocks == sorted(blocks) and spec.num_blocks < backbones.NUM_BLOCKS
    # one weighted stage per block: each block starts at a convolution (or the flat FC stage)
    for start in spec.boundaries:
        assert isinstance(net.layers[start], (keras.layers.Conv2D, keras.layers.Flatten))
    freeze.unfreeze_all(net, train_bn=True)
    for b in range(1, spec.num_blocks + 1):
        assert any(lw.trainable_weights for lw, lb in zip(net.layers, blocks) if lb == b), b
    freeze.apply_scope(net, family, "partial")  # the default: trains some blocks, freezes some
    assert freeze.summary(net, family)["trainable_blocks"] == list(
        range(spec.default_freeze + 1, spec.num_blocks + 1)
    )
    with pytest.raises(UserError, match=f"between 0 and {spec.num_blocks}"):
        freeze.apply_scope(net, family, "partial", freeze_blocks=spec.num_blocks + 1)
    # dropout inside is freezable: a frozen network is deterministic under training=True
    assert all(type(layer) is not keras.layers.Dropout for layer in net.layers)
    has_dropout = any(isinstance(layer, FreezableDropout) for layer in net.layers)
    assert has_dropout == (family != "DannMnist")
    freeze.apply_scope(net, family, "head")
    x = np.random.default_rng(0).uniform(-1, 1, (4, spec.default_size, spec.default_size, 3))
    a, b = (np.asarray(net(x.astype("float32"), training=True)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match=f"{family} has no ImageNet weights.*--weights none"):
        backbones.build(family, weights="imagenet")
    path = str(tmp_path / "d.weights.h5")
    net.save_weights(path)
    again = backbones.build(family, spec.default_size, weights=path)
    np.testing.assert_array_equal(np.asarray(again(x, training=False)), a)


@pytest.mark.slow
@pytest.mark.parametrize("family", STOCHASTIC)
def test_frozen_parts_are_deterministic_in_training_mode(family):
    from tfxfer.models import freeze, model

    size = backbones.get(family).min_size
    tm = model.build(family, 2, size, weights=None)
    x = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
    # a fully frozen backbone (head-only phase on images), through the training graph
    freeze.apply_scope(tm.backbone, family, "head")
    a, b = (np.asarray(tm.feature_model(x, training=True)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    # the frozen blocks of a partial scope; stochastic depth stays on in the trained blocks
    freeze.apply_scope(tm.backbone, family, "partial", freeze_blocks=3)
    net = tm.backbone
    last_frozen = backbones.block_boundaries(net, family)[2] - 1
    frozen_part = keras.Model(net.input, net.layers[last_frozen].output)
    inp = np.random.default_rng(1).normal(0, 1, (4, size, size, 3)).astype("float32")
    a, b = (np.asarray(frozen_part(inp, training=True)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    blocks = backbones.block_of_layers(net, family)
    assert any(
        layer.trainable and isinstance(layer, keras.layers.Dropout) and layer.rate > 0
        for layer, blk in zip(net.layers, blocks)
        if blk > 3
    )
    keras.backend.clear_session()


@pytest.mark.slow
def test_dropout_made_freezable_in_place_saves_and_loads_as_freezable(tmp_path):
    """EfficientNetV2 needs no stem rescaling, so its Dropout layers change class in place; the
    saved file must name the new class, and load back (safe mode) to the same outputs."""
    from tfxfer.models.stochastic import FreezableDropout

    net = backbones.build("EfficientNetV2B0", 32, weights=None)
    kinds = {type(layer) for layer in net.layers}
    assert FreezableDropout in kinds and keras.layers.Dropout not in kinds
    path = tmp_path / "b.keras"
    net.save(path)
    back = keras.saving.load_model(path, safe_mode=True)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in net.layers]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(back(x)), np.asarray(net(x)))
    for dropout_trains in (True, False):  # everything else frozen: BN in inference mode
        for layer in back.layers:
            layer.trainable = dropout_trains == isinstance(layer, FreezableDropout)
        a, b = (np.asarray(back(x, training=True)) for _ in range(2))
        assert np.array_equal(a, b) != dropout_trains


@pytest.mark.integration
def test_default_efficientnet_build_matches_the_registry_without_a_probe(
    caplog, tmp_path, monkeypatch
):
    """A default run builds EfficientNet with weights="imagenet" (Keras's download pointed at a
    local file here); its layer count must be the registry's, so no probe model and no warning."""
    path = str(tmp_path / "b0.weights.h5")
    backbones.build("EfficientNetB0", 32, weights=None).save_weights(path)
    _keras_imagenet_graph("EfficientNetB0", path, monkeypatch)  # points the download at path
    net = backbones.build("EfficientNetB0", 32, weights="imagenet")
    with caplog.at_level("WARNING"):
        assert (
            backbones.block_boundaries(net, "EfficientNetB0")
            == backbones.get("EfficientNetB0").boundaries
        )
    assert "deriving block boundaries" not in caplog.text
