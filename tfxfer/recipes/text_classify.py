"""Text classification by fine-tuning a pretrained BERT-family encoder (KerasHub).

``--scope`` picks what trains, and with it the phases' defaults (``SCOPES``):

| scope | trains | phases |
|---|---|---|
| ``frozen`` | the head, on pooled features computed once (a linear probe) | 1: head, adam 1e-3 |
| ``top_k`` | the top ``text.top_k`` (2) transformer layers and the head | 1: adamw 1e-4 |
| ``full`` | everything | 1: adamw 5e-5, cosine |
| ``lora`` | rank-``lora.rank`` (8) adapters of attention query and value, the head | adamw 3e-3 |

Needs the ``text`` extra (see docs/text.md). The exported SavedModel takes raw strings
(:mod:`tfxfer.text.serving`).

Example:
    >>> from tfxfer.recipes import text_classify
    >>> cfg = text_classify.config("lora")
    >>> cfg.text.scope, cfg.phases[0].lr
    ('lora', 0.003)
"""

from tfxfer import runner
from tfxfer.config import SCOPE_PHASES, Config, Lora, Text

SCOPES = SCOPE_PHASES
CONFIG = Config(
    recipe="text_classify",
    data="sst2",
    head_dropout=0.1,
    batch_size=32,
    text=Text(scope="full"),
    lora=Lora(rank=8),
    phases=SCOPES["full"],
    output="runs/text_classify",
)
FLAGS = (
    runner.Flag("--preset", "text.preset", "KerasHub preset: a folder, kaggle://... or hf://..."),
    runner.Flag("--scope", "text.scope", "frozen|top_k|full|lora; also picks the phases"),
)


def config(scope: str = "full") -> Config:
    """The recipe's defaults for ``scope`` (its phases included)."""
    return CONFIG.override([f"text.scope={scope}"]).replace(phases=SCOPES[scope])


# --scope first chooses the defaults (config(scope)) that the other options apply to
run, main = runner.register(
    CONFIG,
    trainer="tfxfer.text.train",
    flags=FLAGS,
    sections=("head", "text", "lora"),
    variant=("--scope", config),
    help_sections=("text", "lora"),
)


if __name__ == "__main__":
    raise SystemExit(main())
