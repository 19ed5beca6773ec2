"""The config's text tables: :class:`Text` (the pretrained encoder and what of it trains) and
:class:`Lora` (low-rank adapters), used by the ``text_classify`` recipe (:mod:`tfxfer.text`).

Import them from :mod:`tfxfer.config`, the public home of every part.

Example:
    >>> from tfxfer.config import Config
    >>> cfg = Config().override(["text.scope=lora", "lora.rank=8"])
    >>> cfg.text.scope, cfg.lora.rank
    ('lora', 8)
"""

from __future__ import annotations

from dataclasses import dataclass

from tfxfer.config.run import Phase
from tfxfer.config.schema import check_choice, check_min
from tfxfer.errors import UserError

TEXT_SCOPES = ("frozen", "top_k", "full", "lora")
TEXT_POOLINGS = ("mean", "cls")
_FINE = dict(
    name="finetune",
    trainable="all",
    optimizer="adamw",
    weight_decay=0.01,
    schedule="cosine",
    epochs=3,
)
# Each scope's default phases: what ``--scope`` sets along with ``text.scope``.
SCOPE_PHASES = {
    "frozen": (Phase(name="probe", trainable="head", epochs=20, optimizer="adam", lr=1e-3),),
    "top_k": (Phase(**_FINE, lr=1e-4),),
    "full": (Phase(**_FINE, lr=5e-5),),
    "lora": (Phase(**_FINE, lr=3e-3),),
}


@dataclass(frozen=True)
class Text:
    """A pretrained text encoder (KerasHub) and the part of it that trains.

    Attributes:
        preset: The KerasHub preset: a local directory (KerasHub's own format, or a Hugging
            Face checkpoint with ``config.json``, ``*.safetensors`` and ``vocab.txt``),
            ``kaggle://...`` or ``hf://...``. Its tokenizer must be WordPiece (the BERT family).
        scope: What trains in the phases whose ``trainable`` is not ``head``: ``frozen`` (none
            of the encoder: a linear probe on pooled features, cached once), ``top_k`` (the top
            ``top_k`` transformer layers), ``full`` (everything) or ``lora`` (low-rank adapters
            of :class:`Lora` on the frozen encoder). Phases with ``trainable="head"`` train the
            head alone whatever the scope.
        top_k: Transformer layers trained by ``scope=top_k``, counted from the top.
        sequence_length: Tokens per text, ``[CLS]`` and ``[SEP]`` included; longer texts are
            cut. None: 128, or the encoder's maximum when that is smaller. Training pads each
            batch only to its longest text.
        pooling: How a text's token vectors become one: ``mean`` (over its tokens, padding
            excluded; what sentence-embedding models such as all-MiniLM were trained for) or
            ``cls`` (the ``[CLS]`` token's vector).
    """

    preset: str = ""
    scope: str = "full"
    top_k: int = 2
    sequence_length: int | None = None
    pooling: str = "mean"

    def __post_init__(self):
        check_choice("text.scope", self.scope, TEXT_SCOPES)
        check_choice("text.pooling", self.pooling, TEXT_POOLINGS)
        check_min("text.top_k", self.top_k, 1)
        if self.sequence_length is not None and not 3 <= self.sequence_length <= 8192:
            raise UserError(
                "text.sequence_length must be between 3 and 8192 tokens ([CLS], "
                "at least one token, [SEP])",
                got=self.sequence_length,
                fix="pass e.g. --set text.sequence_length=128",
            )


@dataclass(frozen=True)
class Lora:
    """Low-rank adapters (Hu et al. 2021) through Keras's ``layer.enable_lora``.

    Each target layer's kernel is frozen and ``x @ A @ B * alpha / rank`` is added; ``A``,
    ``B`` and the layer's bias train (``B`` starts at zero, so training starts from the
    pretrained model).

    Attributes:
        rank: The rank of ``A @ B``.
        alpha: The scale numerator (> 0); None uses ``rank`` (a scale of 1).
        targets: Names of the layers adapted; empty uses the backbone's own default
            (KerasHub's ``default_lora_layer_names()``: each attention's query and value).
    """

    rank: int = 8
    alpha: float | None = None
    targets: tuple[str, ...] = ()

    def __post_init__(self):
        check_min("lora.rank", self.rank, 1)
        if self.alpha is not None and not self.alpha > 0:
            raise UserError(
                "lora.alpha must be > 0 (at 0 the adapters add nothing and get no gradient)",
                got=self.alpha,
                fix="pass e.g. --set lora.alpha=16, or leave it unset (alpha = rank)",
            )
