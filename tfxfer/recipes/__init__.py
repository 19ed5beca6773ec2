"""The four transfer-learning scenarios, each a default config plus a three-line ``main``.

| data size | similar to ImageNet | recipe | what trains |
|---|---|---|---|
| small | yes | ``small_similar`` | the head only (frozen feature extractor) |
| small | no | ``small_different`` | blocks after the first k, at a low learning rate |
| large | no | ``large_different`` | everything (``--weights none``: from scratch) |
| large | yes | ``large_similar`` | head warm-up, then everything at a small learning rate |

``auto`` measures the data (images per class, LogME, a BatchNorm-statistics distance to
ImageNet) and runs the recipe that the table above picks, saying why.

For the phone: ``distill`` trains a small student from a finished run (the teacher).

When the target's labels are missing: ``domain_adapt`` (labelled source, unlabelled target:
DANN) and ``zero_shot`` (classes never seen in training, recognised by their attributes).

For text: ``text_classify`` fine-tunes a pretrained BERT-family encoder (KerasHub), the part
that trains chosen with ``--scope frozen|top_k|full|lora``.

Example:
    >>> from tfxfer.recipes import small_similar
    >>> small_similar.CONFIG.phases[0].trainable
    'head'
"""

from __future__ import annotations

import importlib
import pkgutil

RECIPES = ("small_similar", "small_different", "large_different", "large_similar")  # the table


def registered() -> dict:
    """Every recipe, by name (:class:`tfxfer.runner.Recipe`): each module of this package
    registers itself when imported, so a new recipe is one new module here. Importing them
    imports no TensorFlow (``tfxfer --help`` lists them in a fraction of a second)."""
    from tfxfer.runner import REGISTRY

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    # the scenario table's order first, then the rest by name
    order = sorted(REGISTRY, key=lambda n: (RECIPES.index(n) if n in RECIPES else 4, n))
    return {name: REGISTRY[name] for name in order}


def parts_table() -> str:
    """The Markdown table of which recipe reads which part of the config (docs/config.md): a
    part a recipe does not read, set away from its defaults, is refused with a one-line error.

    Example:
        >>> print(parts_table().splitlines()[2])
        | small_similar | yes | yes | yes | yes | · | · | · | yes | · | · | · |
    """
    from tfxfer.config import PARTS

    rows = [
        "| recipe | " + " | ".join(PARTS) + " |",
        "|---|" + "---|" * len(PARTS),
    ]
    for name, recipe in registered().items():
        marks = ("yes" if part in recipe.sections else "·" for part in PARTS)
        rows.append(f"| {name} | " + " | ".join(marks) + " |")
    return "\n".join(rows) + "\n"


def _connect() -> None:
    from tfxfer import runner

    runner.set_catalogue(registered)


_connect()
