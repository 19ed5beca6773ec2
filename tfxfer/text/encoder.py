"""A pretrained KerasHub text encoder with a new classification head, and what of it trains.

:func:`build` loads ``text.preset`` with ``keras_hub.models.Backbone.from_preset`` (a local
directory, ``kaggle://`` or ``hf://``), reads the preset's WordPiece vocabulary into
:class:`~tfxfer.text.wordpiece.WordPiece`, and puts a pooling layer and a head on the encoder:

    token_ids, padding_mask (, segment_ids) -> backbone -> pool (mean | cls) -> head -> logits

With ``text.scope=lora``, :func:`build` enables the adapters (:mod:`tfxfer.text.lora`) once,
so that checkpoints always hold the same variables. What trains in each phase is
:mod:`tfxfer.text.scope`'s.

Example:
    >>> from tfxfer.text import encoder  # doctest: +SKIP
    >>> tm = encoder.build(cfg, num_classes=2)  # doctest: +SKIP
    >>> tm.model.summary()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

import keras
from keras import ops

from tfxfer.config import Config
from tfxfer.errors import UserError
from tfxfer.text import lora
from tfxfer.text.wordpiece import WordPiece

DEFAULT_SEQUENCE_LENGTH = 128
INSTALL_FIX = (
    "pip install 'tfxfer[text]' && pip install --no-deps 'keras-hub>=0.21' "
    "(tensorflow-text is not needed; see docs/text.md)"
)


def keras_hub():
    """The ``keras_hub`` module, or a one-line error saying how to install it."""
    try:
        return importlib.import_module("keras_hub")
    except ImportError as exc:
        raise UserError(
            "text recipes need KerasHub, which the base install leaves out",
            got=f"{type(exc).__name__}: {exc}",
            fix=INSTALL_FIX,
        ) from None


@keras.saving.register_keras_serializable(package="tfxfer")
class Pool(keras.layers.Layer):
    """One vector per text: the mean of its token vectors (padding excluded), or ``[CLS]``'s."""

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, sequence, padding_mask):
        if self.mode == "cls":
            return sequence[:, 0, :]
        mask = ops.cast(ops.expand_dims(padding_mask, -1), sequence.dtype)
        return ops.sum(sequence * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@dataclass
class TextModel:
    """The encoder, its head, the graphs built on them, and the tokenizer.

    ``model``: the backbone's inputs -> logits (what trains and what is served);
    ``feature_model``: inputs -> pooled vector; ``head_model``: pooled vector -> logits (cached
    features); ``heads``: ``{"head": Sequential}``, as :mod:`tfxfer.methods.regularize` expects.
    """

    backbone: keras.Model
    heads: dict
    model: keras.Model
    feature_model: keras.Model
    head_model: keras.Model
    tokenizer: WordPiece
    sequence_length: int
    input_names: tuple[str, ...]
    lora_layers: list = field(default_factory=list)
    unused: set = field(default_factory=set)  # ids of backbone layers the head never sees
    family: str = "text"
    multi: bool = False
    _rates: dict = field(default_factory=dict)

    @property
    def transformer_layers(self) -> list:
        layers = getattr(self.backbone, "transformer_layers", None)
        return (
            list(layers)
            if layers
            else [layer for layer in self.backbone.layers if "transformer" in layer.name]
        )

    def export_serving(self, class_names: dict, path, top_k: int):
        """Writes the raw-text SavedModel (:mod:`tfxfer.text.serving`)."""
        from tfxfer.text import serving

        return serving.export(self, class_names["head"], path, top_k)


def load_preset(preset: str):
    """``(backbone, tokenizer)`` of a KerasHub preset, with one-line errors for bad presets."""
    if not preset:
        raise UserError(
            "text.preset must name the pretrained model",
            got="an empty text.preset",
            fix="pass --preset DIR (a KerasHub or Hugging Face BERT folder), "
            "kaggle://... or hf://...",
        )
    if "://" not in preset and not os.path.isdir(preset):
        raise UserError(
            "text.preset must be an existing folder, kaggle://... or hf://...",
            got=preset,
            fix="check the path of the preset folder",
        )
    hub = keras_hub()
    try:
        # the global dtype policy (mixed precision), not the dtype saved in the preset
        backbone = hub.models.Backbone.from_preset(
            preset, dtype=keras.mixed_precision.global_policy().name
        )
        tokenizer = hub.models.Tokenizer.from_preset(preset)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(
            f"the KerasHub preset {preset} could not be loaded",
            got=f"{type(exc).__name__}: {first[:300]}",
            fix="pass a folder written by save_to_preset, a Hugging Face BERT "
            "checkpoint folder (config.json, *.safetensors, vocab.txt), or a "
            "kaggle:// or hf:// handle reachable from here",
        ) from None
    if not isinstance(tokenizer, hub.tokenizers.WordPieceTokenizer):
        raise UserError(
            "tfxfer's text recipe serves WordPiece tokenizers (the BERT family)",
            got=type(tokenizer).__name__,
            fix="pick a BERT-family preset (BERT, DistilBERT, MiniLM, ELECTRA)",
        )
    return backbone, tokenizer


def wordpiece_of(tokenizer) -> WordPiece:
    """A :class:`WordPiece` over a KerasHub WordPiece tokenizer's vocabulary and settings.

    Accents are stripped when the tokenizer says so or, as in BERT's uncased models (and the
    Hugging Face tokenizers they were trained with), whenever it lower-cases.
    """
    specials = {k: getattr(tokenizer, f"{k}_token", None) for k in ("cls", "sep", "pad")}
    return WordPiece(
        tokenizer.get_vocabulary(),
        lowercase=tokenizer.lowercase,
        strip_accents=True if tokenizer.strip_accents else None,
        split_on_cjk=tokenizer.split_on_cjk,
        suffix=tokenizer.suffix_indicator,
        unk=tokenizer.oov_token,
        cls=specials["cls"] or "[CLS]",
        sep=specials["sep"] or "[SEP]",
        pad=specials["pad"] or "[PAD]",
    )


def build(cfg: Config, num_classes: int) -> TextModel:
    """The classifier of ``cfg.text`` for ``num_classes`` classes (LoRA enabled when
    ``text.scope`` is ``lora``)."""
    backbone, hub_tokenizer = load_preset(cfg.text.preset)
    tokenizer = wordpiece_of(hub_tokenizer)
    names = tuple(backbone.input) if isinstance(backbone.input, dict) else ("token_ids",)
    dtypes = {"padding_mask": "bool"}
    inputs = {n: keras.Input((None,), dtype=dtypes.get(n, "int32"), name=n) for n in names}
    if "padding_mask" not in inputs:
        raise UserError(
            "the text backbone must take a padding_mask input",
            got=list(names),
            fix="pick a BERT-family KerasHub preset",
        )
    sequence = backbone(inputs)
    sequence = sequence["sequence_output"] if isinstance(sequence, dict) else sequence
    pooled = Pool(cfg.text.pooling, name="pool")(sequence, inputs["padding_mask"])
    head = keras.Sequential(
        [
            keras.layers.Dropout(cfg.head_dropout, seed=cfg.seed + 7),
            keras.layers.Dense(num_classes, dtype="float32", name="logits"),
        ],
        name="head",
    )
    model = keras.Model(inputs, head(pooled), name="text_classifier")
    feature_model = keras.Model(inputs, pooled, name="text_features")
    features = keras.Input((pooled.shape[-1],), name="features")
    head_model = keras.Model(features, head(features), name="text_head")
    max_len = getattr(backbone, "max_sequence_length", None) or DEFAULT_SEQUENCE_LENGTH
    length = cfg.text.sequence_length or min(DEFAULT_SEQUENCE_LENGTH, max_len)
    if length > max_len:
        raise UserError(
            f"text.sequence_length must be at most the encoder's max_sequence_length, {max_len}",
            got=length,
            fix=f"pass --set text.sequence_length={max_len}",
        )
    tm = TextModel(
        backbone, {"head": head}, model, feature_model, head_model, tokenizer, length, names
    )
    if cfg.text.scope == "top_k" and cfg.text.top_k > len(tm.transformer_layers):
        raise UserError(
            f"text.top_k must be at most the encoder's "
            f"{len(tm.transformer_layers)} transformer layers",
            got=cfg.text.top_k,
            fix="lower --set text.top_k",
        )
    if cfg.text.scope == "lora":
        lora.enable(tm, cfg.lora)
    output = backbone.output
    used = keras.Model(
        backbone.input, output["sequence_output"] if isinstance(output, dict) else output
    ).layers
    tm.unused = {id(layer) for layer in backbone.layers} - {id(layer) for layer in used}
    for layer in backbone._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Dropout):
            tm._rates[id(layer)] = layer.rate
    return tm
