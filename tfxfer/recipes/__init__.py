"""The four transfer-learning scenarios, each a default config plus a three-line ``main``.

| data size | similar to ImageNet | recipe | what trains |
|---|---|---|---|
| small | yes | ``small_similar`` | the head only (frozen feature extractor) |
| small | no | ``small_different`` | blocks after the first k, at a low learning rate |
| large | no | ``large_different`` | everything (``--weights none``: from scratch) |
| large | yes | ``large_similar`` | head warm-up, then everything at a small learning rate |

``auto`` measures the data (images per class, LogME, a BatchNorm-statistics distance to
ImageNet) and runs the recipe that the table above picks, saying why.

When the target's labels are missing: ``domain_adapt`` (labelled source, unlabelled target:
DANN) and ``zero_shot`` (classes never seen in training, recognised by their attributes).

For text: ``text_classify`` fine-tunes a pretrained BERT-family encoder (KerasHub), the part
that trains chosen with ``--scope frozen|top_k|full|lora``.

Example:
    >>> from tfxfer.recipes import small_similar
    >>> small_similar.CONFIG.phases[0].trainable
    'head'
"""

RECIPES = ("small_similar", "small_different", "large_different", "large_similar")
TARGET_RECIPES = ("domain_adapt", "zero_shot")  # when the target's labels are missing
TEXT_RECIPES = ("text_classify",)
COMMANDS = RECIPES + ("auto",) + TARGET_RECIPES + TEXT_RECIPES  # every `tfxfer <recipe>`
