import keras
import numpy as np
import pytest

from tfxfer.data import augment
from tfxfer.errors import UserError
from tfxfer.models import freeze, model

RANDOM_LAYERS = (
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "RandAugment",
    "MixUp",
    "CutMix",
)


def _images(n=4, size=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("uint8")


def _all_layer_classes(m):
    names = []
    for layer in m._flatten_layers(include_self=False, recursive=True):
        names.append(type(layer).__name__)
    return names


@pytest.mark.parametrize("preset", ["light", "standard", "strong"])
def test_augmentation_is_active_in_training_and_inert_at_inference(preset):
    tm = model.build("MobileNetV2", 3, 48, weights=None, augment=preset, seed=1)
    x = _images().astype("float32")
    infer_a = np.asarray(tm.model(x, training=False))
    infer_b = np.asarray(tm.model(x, training=False))
    np.testing.assert_array_equal(infer_a, infer_b)
    augmented = np.asarray(tm.augmenter(x, training=True))
    assert not np.allclose(augmented, x)
    np.testing.assert_array_equal(np.asarray(tm.augmenter(x, training=False)), x)


def test_serving_graph_takes_uint8_holds_no_random_layer_and_matches_inference():
    tm = model.build("MobileNetV2", 3, 48, weights=None, augment="standard", seed=1)
    serving = tm.serving_model()
    assert serving.input.dtype == "uint8"
    assert not set(_all_layer_classes(serving)) & set(RANDOM_LAYERS)
    assert set(_all_layer_classes(tm.model)) & set(RANDOM_LAYERS)  # the training graph has them
    x = _images()
    np.testing.assert_allclose(
        np.asarray(serving(x)),
        np.asarray(tm.model(x.astype("float32"), training=False)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_head_has_pooling_dropout_hidden_layers_and_float32_logits():
    tm = model.build("ResNet50", 5, 32, weights=None, hidden=(16,), dropout=0.3, pooling="max")
    names = [layer.name for layer in tm.head.layers]
    assert names == ["dropout_0", "hidden_0", "dropout_1", "logits"]
    assert tm.model.get_layer("pool").__class__.__name__ == "GlobalMaxPooling2D"
    assert tm.head.get_layer("logits").dtype_policy.compute_dtype == "float32"
    assert tm.model.output.shape == (None, 5)


def test_user_supplied_layers_are_appended_to_the_augmenter():
    extra = keras.layers.RandomBrightness(0.2, value_range=(0, 255))
    aug = augment.build("light", extra=[extra])
    assert [type(layer).__name__ for layer in aug.layers] == ["RandomFlip", "RandomBrightness"]
    assert augment.build("none") is None


def test_batch_mixer_mixes_images_and_labels_consistently():
    import tensorflow as tf

    mix = augment.batch_mixer(mixup=0.4, cutmix=0.0, seed=0)
    classes = np.arange(16) % 2  # class 0 black, class 1 white
    x = tf.constant(np.stack([np.full((8, 8, 3), 255.0 * c) for c in classes]), tf.float32)
    y = tf.one_hot(classes, 2)
    mx, my = (np.asarray(t) for t in mix(x, y))
    np.testing.assert_allclose(my.sum(axis=1), 1.0, rtol=1e-5)
    # MixUp: the white fraction of each image equals its class-1 label weight.
    np.testing.assert_allclose(mx.mean(axis=(1, 2, 3)) / 255.0, my[:, 1], atol=1e-4)
    assert ((my[:, 1] > 0.01) & (my[:, 1] < 0.99)).any()


def _block_layers(tm):
    from tfxfer.models import backbones

    return list(zip(tm.backbone.layers, backbones.block_of_layers(tm.backbone, tm.family)))


def test_unfreeze_from_block_k_trains_only_later_blocks_and_never_bn():
    tm = model.build("MobileNetV2", 2, 32, weights=None)
    freeze.unfreeze_from(tm.backbone, "MobileNetV2", 3)
    for layer, block in _block_layers(tm):
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable
        elif layer.weights:
            assert layer.trainable == (block > 3), (layer.name, block)
    assert freeze.summary(tm.backbone, "MobileNetV2")["trainable_blocks"] == [4, 5]
    freeze.unfreeze_all(tm.backbone, train_bn=True)
    assert freeze.summary(tm.backbone, "MobileNetV2")["bn_trainable"]
    freeze.freeze_all(tm.backbone)
    assert not tm.backbone.trainable_weights
    with pytest.raises(UserError, match="freeze_blocks must be between 0 and 5"):
        freeze.unfreeze_from(tm.backbone, "MobileNetV2", 6)


def _bn_state(backbone):
    return {
        v.path: np.asarray(v).copy()
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in layer.weights
    }


@pytest.mark.parametrize("train_bn", [False, True])
@pytest.mark.integration
def test_bn_moving_statistics_do_not_change_during_fine_tuning_fit(train_bn):
    """keras#20285: backbone(x, training=False) is not honoured once unfrozen in Keras 3.15."""
    keras.utils.set_random_seed(0)
    tm = model.build("MobileNetV2", 2, 32, weights=None, augment="none")
    freeze.unfreeze_all(tm.backbone, train_bn=train_bn)
    tm.model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    before_bn = _bn_state(tm.backbone)
    before_kernel = np.asarray(tm.backbone.get_layer("Conv1").kernel).copy()
    x = _images(16, 32).astype("float32") * 0.5 + 60  # statistics far from the BN init
    y = keras.utils.to_categorical(np.arange(16) % 2, 2)
    tm.model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    after_bn = _bn_state(tm.backbone)
    assert not np.allclose(before_kernel, np.asarray(tm.backbone.get_layer("Conv1").kernel))
    changed = [k for k in before_bn if not np.array_equal(before_bn[k], after_bn[k])]
    if train_bn:
        assert changed, "with train_bn=True the batch statistics must be learned"
    else:
        assert changed == [], f"BN state changed during fine-tuning: {changed[:3]}"
