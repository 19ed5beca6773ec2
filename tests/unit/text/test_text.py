"""The text recipe (issue 18): tokenizer, scopes, training, the raw-text SavedModel, bad input.

Everything runs on a tiny random BERT written with KerasHub's ``save_to_preset``; the real
encoder (all-MiniLM-L6-v2 on SST-2) is measured by bench/text.py.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import logging
import random
import re
import subprocess
import sys
import unicodedata

import keras
import numpy as np
import pytest
import tensorflow as tf

keras_hub = pytest.importorskip("keras_hub")

from tfxfer import cli  # noqa: E402
from tfxfer.config import Config  # noqa: E402
from tfxfer.errors import UserError  # noqa: E402
from tfxfer.recipes import text_classify  # noqa: E402
from tfxfer.text import data as text_data  # noqa: E402
from tfxfer.text import encoder, lora  # noqa: E402
from tfxfer.text import scope as scope_lib  # noqa: E402
from tfxfer.text.wordpiece import WordPiece, pad_rows  # noqa: E402

WORDS = [
    "a",
    "film",
    "witty",
    "gorgeous",
    "tedious",
    "mess",
    "good",
    "bad",
    "great",
    "awful",
    "movie",
    "plot",
    "un",
    "##believ",
    "##able",
    "##s",
    "café",
    "naïve",
]
VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ",",
    ".",
    "!",
    "'",
    "-",
    "中",
    "文",
    *WORDS,
    *[chr(c) for c in range(ord("a"), ord("z") + 1)],
    *["##" + chr(c) for c in range(ord("a"), ord("z") + 1)],
    "cafe",
    "naive",
]
POSITIVE, NEGATIVE = ["good", "great", "gorgeous", "witty"], ["bad", "awful", "tedious", "mess"]


# ---- an independent reference: BERT's tokenizer written out plainly --------------------------
def reference_ids(text: str, vocab: list[str]) -> list[int]:
    index = {t: i for i, t in reversed(list(enumerate(vocab)))}
    chars = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ord(ch) in (0, 0xFFFD) or (cat in ("Cc", "Cf", "Co", "Cs") and ch not in "\t\n\r"):
            continue
        if ch in "\t\n\r " or (ch.isspace() and not cat.startswith("C")):
            chars.append(" ")
            continue
        cp = ord(ch)
        if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF:
            chars.append(f" {ch} ")
            continue
        stripped = "".join(
            c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn"
        ).lower()
        for c in stripped:
            punct = (
                33 <= ord(c) <= 47
                or 58 <= ord(c) <= 64
                or 91 <= ord(c) <= 96
                or 123 <= ord(c) <= 126
                or unicodedata.category(c).startswith("P")
            )
            chars.append(f" {c} " if punct else c)
    out = []
    for word in "".join(chars).split():
        if len(word) > 100:
            out.append(index["[UNK]"])
            continue
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in index:
                    break
                end -= 1
            if end == start:
                pieces = [index["[UNK]"]]
                break
            pieces.append(index[piece])
            start = end
        out.extend(pieces)
    return out


@pytest.mark.integration
def test_wordpiece_matches_a_plain_python_reference():
    rng = random.Random(0)
    pool = (
        list("abcdefghijklmnopqrstuvwxyz ABCXYZ  ,.!'-?()")
        + WORDS
        + list("éèÉçñüÅ中文字\t\n\r\x00\x07\u200b\u00a0\u3000\u2028\ufffd😀\ue000·—¿")
    )
    texts = [
        "",
        "   ",
        "A witty, GORGEOUS film!",
        "unbelievable",
        "Café naïve CAFÉ",
        "中文字",
        "x" * 101 + " a",
        "a" * 100,
        "tab\tnew\nline",
    ]
    texts += [
        "".join(rng.choice(pool) + rng.choice(["", " "]) for _ in range(rng.randint(1, 30)))
        for _ in range(300)
    ]
    got = WordPiece(VOCAB).ids(texts).to_list()
    for text, ids in zip(texts, got):
        assert ids == reference_ids(text, VOCAB), repr(text)


def test_pack_and_pad_rows_agree():
    wp = WordPiece(VOCAB)
    ids = wp.ids(["a witty film", "", "a " * 40])
    packed = {k: v.numpy() for k, v in wp.pack(ids, 8).items()}
    rows = [np.array(r) for r in ids.to_list()]
    padded = pad_rows(rows, 8, wp.cls_id, wp.sep_id, wp.pad_id, width=8)
    for key in packed:
        np.testing.assert_array_equal(packed[key], padded[key])
    assert packed["token_ids"][1].tolist() == [2, 3, 0, 0, 0, 0, 0, 0]  # [CLS] [SEP] pads
    assert packed["padding_mask"][2].all() and packed["token_ids"][2, -1] == wp.sep_id  # cut


# ---- a tiny preset and data ----------------------------------------------------------------
@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB),
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=24,
        dropout=0.3,
    )
    backbone.save_to_preset(str(folder))
    keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True).save_to_preset(str(folder))
    return str(folder)


def sentiment_folder(root, n=24, seed=0):
    rng = random.Random(seed)
    for split, count in (("train", n), ("val", n // 3)):
        for label, words in (("negative", NEGATIVE), ("positive", POSITIVE)):
            (root / split / label).mkdir(parents=True)
            for i in range(count):
                text = "a " + " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
                (root / split / label / f"{i}.txt").write_text(text + " film .")
    return root


def config(preset, scope="full", **changes):
    cfg = text_classify.config(scope)
    text = {"preset": preset, "scope": scope, **({"top_k": 1} if scope == "top_k" else {})}
    return cfg.replace(**{"text": text, "verbose": 0, **changes})


@pytest.mark.parametrize("scope", ["frozen", "top_k", "full", "lora"])
def test_each_scope_trains_exactly_its_part(preset, scope):
    tm = encoder.build(config(preset, scope), 2)
    scope_lib.apply_scope(tm, "head" if scope == "frozen" else scope, top_k=1)
    trainable = {v.path for v in tm.model.trainable_weights}
    head = {v.path for v in tm.heads["head"].weights}
    assert head <= trainable
    backbone = trainable - head
    every = {v.path for v in tm.backbone.weights}
    expected = {
        "frozen": set(),
        "top_k": {p for p in every if p.startswith("transformer_layer_1/")},
        "full": {p for p in every if not p.startswith("pooled_dense/")},
        "lora": {p for p in every if "/query/" in p or "/value/" in p}
        - {p for p in every if p.endswith("/kernel") and ("/query/" in p or "/value/" in p)},
    }[scope]
    assert backbone == expected
    if scope == "lora":
        assert any(p.endswith("lora_kernel_a") for p in backbone)


def test_frozen_layers_are_deterministic_in_training_and_the_trained_ones_are_not(preset):
    tm = encoder.build(config(preset, "top_k"), 2)
    scope_lib.apply_scope(tm, "top_k", top_k=1)
    x = pad_rows([np.array([12, 13, 14, 15, 16])] * 4, 24, 2, 3, 0)
    x = {k: v for k, v in x.items() if k in tm.input_names}
    low = keras.Model(tm.backbone.input, tm.backbone.get_layer("transformer_layer_0").output)
    np.testing.assert_array_equal(low(x, training=True), low(x, training=True))
    np.testing.assert_allclose(low(x, training=True), low(x, training=False), atol=1e-6)
    out = [tm.feature_model(x, training=True).numpy() for _ in range(2)]
    assert not np.allclose(out[0], out[1])  # the trained top layer keeps its dropout
    scope_lib.apply_scope(tm, "head")
    np.testing.assert_array_equal(
        tm.feature_model(x, training=True), tm.feature_model(x, training=False)
    )


@pytest.mark.integration
def test_lora_starts_from_the_pretrained_model_and_never_moves_it(preset):
    plain = encoder.build(config(preset, "full"), 2)
    tm = encoder.build(config(preset, "lora"), 2)
    x = pad_rows([np.array([12, 13, 14])] * 2, 24, 2, 3, 0)
    x = {k: v for k, v in x.items() if k in tm.input_names}
    for src, dst in zip(
        plain.backbone.weights, [v for v in tm.backbone.weights if "lora_kernel" not in v.path]
    ):
        dst.assign(src)
    np.testing.assert_allclose(tm.feature_model(x), plain.feature_model(x), atol=1e-5)
    scope_lib.apply_scope(tm, "lora")
    before = {v.path: v.numpy() for v in tm.backbone.weights}
    tm.model.compile(keras.optimizers.Adam(1e-2), keras.losses.CategoricalCrossentropy(True))
    tm.model.fit(x, np.eye(2)[[0, 1]], epochs=2, verbose=0)
    moved = {v.path for v in tm.backbone.weights if not np.array_equal(v.numpy(), before[v.path])}
    assert moved and all("lora_kernel" in p or p.endswith("/bias") for p in moved)


def test_layer_wise_rates(preset):
    tm = encoder.build(config(preset, "full"), 2)
    phase = config(preset).phases[0].__class__(trainable="all", lr=1e-3, lr_decay=0.5)
    factors = scope_lib.layer_multipliers(tm, phase)
    assert factors["transformer_layer_1/self_attention_layer/query/kernel"] == 0.5
    assert factors["transformer_layer_0/self_attention_layer/query/kernel"] == 0.25
    assert factors["token_embedding/embeddings"] == 0.125


def test_scope_flag_picks_the_phases_and_set_still_applies(preset, tmp_path, monkeypatch):
    seen = {}

    class Done:
        def summary(self):
            return "done"

    monkeypatch.setattr(
        "tfxfer.runner.run", lambda cfg, trainer, recipe: seen.setdefault("cfg", cfg) and Done()
    )
    text_classify.main(
        [
            "--preset",
            preset,
            "--scope",
            "lora",
            "--set",
            "lora.rank=4",
            "--set",
            "phases.0.epochs=1",
            "--output",
            str(tmp_path),
        ]
    )
    cfg = seen["cfg"]
    assert (cfg.text.scope, cfg.lora.rank, cfg.phases[0].lr, cfg.phases[0].epochs) == (
        "lora",
        4,
        3e-3,
        1,
    )


# ---- the recipe end to end, and its SavedModel in a process without tfxfer ---------------------
SERVE = """
import json, sys
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
out = served.signatures["serving_default"](text=tf.constant(json.loads(sys.argv[2])))
print(json.dumps({"classes": out["top_k_classes"].numpy().astype(str).tolist(),
                  "probabilities": out["probabilities"].numpy().tolist(),
                  "imported": sorted(m for m in ("tfxfer", "keras_hub", "tensorflow_text")
                                     if m in sys.modules)}))
"""


@pytest.mark.slow
def test_recipe_trains_exports_raw_text_and_resumes(preset, tmp_path, caplog, monkeypatch):
    traced = []  # the training step is traced once per phase (tfxfer.train.prebuild)
    step = keras.Model.train_step
    monkeypatch.setattr(
        keras.Model, "train_step", lambda self, data: traced.append(1) or step(self, data)
    )
    data = sentiment_folder(tmp_path / "data")
    out = tmp_path / "run"
    argv = [
        "--data",
        str(data),
        "--preset",
        preset,
        "--scope",
        "full",
        "--output",
        str(out),
        "--set",
        "phases.0.lr=5e-3",
        "--set",
        "phases.0.epochs=12",
        "--set",
        "verbose=0",
    ]
    assert text_classify.main(argv) == 0
    assert len(traced) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.9, metrics
    assert metrics["class_names"] == ["negative", "positive"]
    assert 0 < metrics["text"]["trainable_params"] < metrics["text"]["total_params"]
    for name in ("curves.png", "confusion_matrix.png", "history.json", "model.keras"):
        assert (out / name).stat().st_size > 0
    texts = ["a gorgeous, witty film", "a tedious mess", "A GORGEOUS film!"]
    served = json.loads(
        subprocess.run(
            [sys.executable, "-c", SERVE, str(out / "saved_model"), json.dumps(texts)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert served["imported"] == []
    assert [c[0] for c in served["classes"]] == ["positive", "negative", "positive"]
    model = keras.saving.load_model(out / "model.keras")
    wp = WordPiece(VOCAB)
    x = pad_rows([np.array(r) for r in wp.ids(texts).to_list()], 24, 2, 3, 0)
    trained = tf.nn.softmax(model({k: x[k] for k in model.input}, training=False)).numpy()
    np.testing.assert_allclose(served["probabilities"], trained, atol=1e-5)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tfxfer"):
        assert text_classify.main(argv) == 0  # same command again: the phase is restored
    assert "completed by an earlier run" in caplog.text
    again = json.loads((out / "metrics.json").read_text())
    assert again["val_accuracy"] == metrics["val_accuracy"]
    assert again["text"]["trainable_params"] == metrics["text"]["trainable_params"]
    assert cli.export_main([str(out), "--litert", "int8"]) == 2  # LiteRT: image runs only


# ---- bad input --------------------------------------------------------------------------------
def test_empty_text_file_is_a_one_line_error(tmp_path):
    data = sentiment_folder(tmp_path / "data", n=3)
    (data / "train" / "positive" / "empty.txt").write_text("  \n")
    with pytest.raises(UserError, match=r"empty\.txt is empty") as err:
        text_data.load(str(data))
    assert "\n" not in str(err.value)


def test_csv_without_label_column_is_a_one_line_error(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,stars\ngreat,5\n")
    with pytest.raises(UserError, match="label column") as err:
        text_data.load(str(path))
    assert "\n" not in str(err.value) and "stars" in str(err.value)


def test_csv_and_tsv_sources(tmp_path):
    (tmp_path / "a.tsv").write_text("label\tsentence\n1\tgood\n0\tbad\n1\tgreat\n0\tawful\n")
    data = text_data.load(str(tmp_path / "a.tsv"), val_split=0.5)
    assert data.class_names == ["0", "1"] and (len(data.train), len(data.val)) == (2, 2)
    assert sorted(data.train.texts + data.val.texts) == ["awful", "bad", "good", "great"]
    assert all(
        data.class_names[lab] == {"good": "1", "great": "1", "bad": "0", "awful": "0"}[t]
        for t, lab in zip(
            data.train.texts + data.val.texts, list(data.train.labels) + list(data.val.labels)
        )
    )
    import gzip  # a spreadsheet's CSV (byte-order mark, quoted commas), gzipped

    rows = '\ufefflabel,text\npos,"good, very good"\nneg,bad\npos,great\nneg,"awful, awful"\n'
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(rows.encode("utf-8")))
    data = text_data.load(str(tmp_path / "b.csv.gz"), val_split=0.5)
    assert sorted(data.train.texts + data.val.texts) == [
        "awful, awful",
        "bad",
        "good, very good",
        "great",
    ]
    (tmp_path / "c.csv").write_text("text,label\ngood,pos\n ,neg\n")
    with pytest.raises(UserError, match="line 3 must have 2 fields, with a text and a label"):
        text_data.load(str(tmp_path / "c.csv"))


def test_a_train_folder_alone_is_split_and_never_read_as_a_class(tmp_path):
    sentiment_folder(tmp_path / "data", n=6)
    (tmp_path / "data" / "val").rename(tmp_path / "elsewhere")
    data = text_data.load(str(tmp_path / "data"), val_split=0.5)
    assert data.class_names == ["negative", "positive"]
    assert (len(data.train), len(data.val)) == (6, 6)


def test_a_scope_set_without_its_phases_is_refused(preset, tmp_path):
    from tfxfer.text import train

    cfg = text_classify.CONFIG.override([f"text.preset={preset}", "text.scope=lora"])
    with pytest.raises(UserError, match="--scope sets both"):
        train.check(cfg)
    with pytest.raises(UserError, match="lora.alpha must be > 0"):
        Config().override(["lora.alpha=0"])
    with pytest.raises(UserError, match="text.top_k applies to text.scope=top_k only"):
        train.check(config(preset, "full").override(["text.top_k=3"]))
    train.check(config(preset, "lora"))  # the recipe's own config for a scope passes


def test_missing_preset_is_a_one_line_error(tmp_path, capsys):
    data = sentiment_folder(tmp_path / "data", n=3)
    code = text_classify.main(
        [
            "--data",
            str(data),
            "--preset",
            str(tmp_path / "nowhere"),
            "--output",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "nowhere" in err and "Fix:" in err


@pytest.mark.parametrize(
    "key, value",
    [
        ("mixup", 0.2),
        ("backbone", "ResNet50"),
        ("image_size", 96),
        ("tta", "flip"),
        ("export", ["litert-fp16"]),
        ("data_service", "grpc://host:5050"),
        ("augment", "strong"),
    ],
)
def test_image_settings_are_refused_for_text(key, value, tmp_path):
    """The runner's one rule (no list of image keys in the text trainer): before any data is
    read, naming the key and the recipes that read it."""
    cfg = text_classify.CONFIG.replace(
        **{key: value, "data": str(tmp_path / "none"), "output": str(tmp_path / "out")}
    )
    what = "augment.*" if key == "augment" else f"{key}: image"
    with pytest.raises(UserError, match=rf"^{re.escape(what)} settings belong to the small_sim"):
        text_classify.run(cfg)
    assert not (tmp_path / "out").exists()


def test_image_flags_are_not_offered_by_the_text_command(capsys):
    assert text_classify.main(["--backbone", "ResNet50"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unrecognized arguments: --backbone ResNet50" in err and "\n" not in err


# ---- install ----------------------------------------------------------------------------------
@pytest.mark.integration
def test_base_install_never_imports_keras_hub():
    code = (
        "import sys, tfxfer, tfxfer.cli, tfxfer.train.loop, tfxfer.deploy.export, "
        "tfxfer.recipes.small_similar, tfxfer.recipes.text_classify; "
        "print(sorted(m for m in ('keras_hub', 'tensorflow_text') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_text_install_kept_tensorflow():
    """The text extra leaves tensorflow-text out: it would pin and install `tensorflow`."""
    installed = {d.metadata["Name"].lower().replace("_", "-") for d in md.distributions()}
    assert "tensorflow-text" not in installed
    if "tensorflow-cpu" in installed:
        assert "tensorflow" not in installed, "tensorflow was installed over tensorflow-cpu"
        assert tf.__version__ == md.version("tensorflow-cpu")


@pytest.mark.integration
def test_lora_trains_again_after_its_weights_are_loaded(preset, tmp_path):
    """Keras merges A @ B into the kernel on save and zeroes A and B on load; both zero, they
    would get no gradient. A resumed run re-draws A (B stays 0): same function, trains on."""
    keras.utils.set_random_seed(1)
    tm = encoder.build(config(preset, "lora"), 2)
    scope_lib.apply_scope(tm, "lora")
    x = pad_rows([np.array([12, 13, 14]), np.array([15, 16])], 24, 2, 3, 0)
    x = {k: v for k, v in x.items() if k in tm.input_names}
    y = np.eye(2)[[0, 1]]
    tm.model.compile(keras.optimizers.Adam(1e-2), keras.losses.CategoricalCrossentropy(True))
    tm.model.fit(x, y, epochs=3, verbose=0)
    tm.model.save_weights(tmp_path / "w.weights.h5")
    fresh = encoder.build(config(preset, "lora"), 2)
    scope_lib.apply_scope(fresh, "lora")
    fresh.model.load_weights(tmp_path / "w.weights.h5")
    assert all(not np.any(layer.lora_kernel_a.numpy()) for layer in fresh.lora_layers)
    assert lora.revive_lora(fresh) == len(fresh.lora_layers)
    np.testing.assert_allclose(fresh.model(x), tm.model(x), atol=1e-5)  # same function
    b_before = [layer.lora_kernel_b.numpy() for layer in fresh.lora_layers]
    fresh.model.compile(keras.optimizers.Adam(1e-2), keras.losses.CategoricalCrossentropy(True))
    fresh.model.fit(x, y, epochs=1, verbose=0)
    assert any(
        np.any(layer.lora_kernel_b.numpy() != b) for layer, b in zip(fresh.lora_layers, b_before)
    )
