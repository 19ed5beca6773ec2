"""``trainable`` control: freeze all, unfreeze all, unfreeze from block k, BatchNorm kept frozen.

Keras 3.15 does not honour ``backbone(x, training=False)`` once the backbone is unfrozen
(keras#20285), so calling the backbone in inference mode is not enough to protect the BatchNorm
moving statistics. Here every BatchNormalization layer of a (partly) trainable backbone is set
``trainable=False`` explicitly, which in Keras 3 both stops its updates and runs it in inference
mode. ``train_bn=True`` opts out; the trained BatchNorm layers' moving-average momentum is then
fitted to the length of the stage (:func:`fit_bn_momentum`), so that the statistics the exported
model uses are the new data's, not ImageNet's, even after a few hundred steps.

A ``trainable`` change only takes effect after ``compile``: the training core always recompiles
after calling :func:`apply_scope`. :func:`stages` splits a phase into stretches of one scope each,
which is how gradual unfreezing (ULMFiT) runs: one more block every few epochs, top down.

Example:
    >>> from tfxfer.models import model
    >>> from tfxfer.models import freeze
    >>> tm = model.build("MobileNetV2", num_classes=2, image_size=64, weights=None)
    >>> freeze.unfreeze_from(tm.backbone, "MobileNetV2", 4)
    >>> freeze.summary(tm.backbone, "MobileNetV2")["trainable_blocks"]
    [5]
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from tfxfer.errors import UserError
from tfxfer.models import backbones


def _is_bn(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def freeze_all(backbone: keras.Model) -> None:
    """Freezes every backbone layer (feature extraction)."""
    backbone.trainable = False


def unfreeze_all(backbone: keras.Model, train_bn: bool = False) -> None:
    """Makes every backbone layer trainable, BatchNorm excepted unless ``train_bn``."""
    backbone.trainable = True
    for layer in backbone.layers:  # explicit: the container setter skips unchanged values
        layer.trainable = train_bn or not _is_bn(layer)


def unfreeze_from(backbone: keras.Model, family: str, block: int, train_bn: bool = False) -> None:
    """Freezes blocks ``1..block`` and trains the ones after (BatchNorm stays frozen).

    Args:
        backbone: The backbone built by :func:`tfxfer.models.backbones.build`.
        family: Its registry name (for the block boundaries).
        block: Number of leading blocks to freeze, 0 (train all) to the family's block count
            (five, or fewer for a digit network: freeze all).
        train_bn: Also train BatchNorm layers in the unfrozen blocks.
    """
    n = backbones.num_blocks(family)
    if not 0 <= block <= n:
        raise UserError(
            f"freeze_blocks must be between 0 and {n} ({family} is split into {n} blocks)",
            got=block,
            fix=f"pass --freeze-blocks in 0..{n}",
        )
    backbone.trainable = True
    for layer, b in zip(backbone.layers, backbones.block_of_layers(backbone, family)):
        layer.trainable = b > block and (train_bn or not _is_bn(layer))


def apply_scope(
    backbone: keras.Model,
    family: str,
    scope: str,
    freeze_blocks: int | None = None,
    train_bn: bool = False,
) -> None:
    """Sets trainable flags for a phase scope: ``head``, ``partial`` or ``all``."""
    if scope == "head":
        freeze_all(backbone)
    elif scope == "all":
        unfreeze_all(backbone, train_bn)
    else:
        k = backbones.get(family).default_freeze if freeze_blocks is None else freeze_blocks
        unfreeze_from(backbone, family, k, train_bn)


def fit_bn_momentum(backbone: keras.Model, steps: int) -> float | None:
    """Sets the momentum of every *trainable* BatchNorm layer so the old statistics fade in time.

    Keras Applications build BatchNorm with momentum 0.99 or 0.999. A moving average of momentum
    ``m`` still weighs the statistics it started from (ImageNet's) by ``m ** steps`` at the end:
    after 150 steps at 0.999 that is 86%, and a model whose BN trained on Fashion-MNIST at 32 px
    is evaluated with ImageNet's statistics (measured: 0.19 validation accuracy after one epoch
    of ``large_different`` on 10,000 images, 0.722 with this rule). The momentum becomes
    ``min(m_original, 0.01 ** (1 / steps))``: the starting statistics weigh at most 1% at the
    end of the stage. Frozen BatchNorm layers are left alone (their statistics do not move).

    Returns:
        The momentum set, or None when no BatchNorm layer is trainable.
    """
    chosen = None
    for layer in backbone.layers:
        if _is_bn(layer):
            original = getattr(layer, "_tfxfer_momentum", layer.momentum)
            layer._tfxfer_momentum = original
            if layer.trainable:
                layer.momentum = min(original, 0.01 ** (1.0 / max(steps, 1)))
                chosen = layer.momentum
            else:
                layer.momentum = original
    return chosen


def summary(backbone: keras.Model, family: str) -> dict:
    """Which blocks have trainable weights, and how many weights are trainable."""
    blocks = backbones.block_of_layers(backbone, family)
    trainable_blocks = sorted(
        {b for layer, b in zip(backbone.layers, blocks) if layer.trainable_weights}
    )
    return {
        "trainable_blocks": trainable_blocks,
        "trainable_params": sum(int(w.numpy().size) for w in backbone.trainable_weights),
        "frozen_params": sum(int(w.numpy().size) for w in backbone.non_trainable_weights),
        "bn_trainable": any(layer.trainable for layer in backbone.layers if _is_bn(layer)),
    }


@dataclass(frozen=True)
class Stage:
    """A stretch of a phase with one trainable scope: a whole phase, or one gradual step.

    Attributes:
        key: Checkpoint key: ``"<phase>"``, or ``"<phase>.<step>"`` in a gradual phase.
        index: Index of the phase in ``cfg.phases``.
        scope: ``head``, ``partial`` or ``all`` (gradual steps are ``partial``).
        freeze_blocks: Leading blocks frozen in a ``partial`` stage (None: the backbone default).
        epochs: Epochs of this stage.
        first_epoch: Epochs of the phase run before this stage.
        label: Name shown in logs and history.
    """

    key: str
    index: int
    scope: str
    freeze_blocks: int | None
    epochs: int
    first_epoch: int
    label: str


def stages(
    phase, index: int, freeze_blocks: int | None = None, num_blocks: int = backbones.NUM_BLOCKS
) -> list[Stage]:
    """Splits a phase into stages; a ``gradual`` phase into one per unfreezing step.

    A gradual phase trains the last block (of ``num_blocks``, the backbone's count) for
    ``unfreeze_every`` epochs, then the last two, and so on, top down, until only
    ``freeze_blocks`` blocks (default 0) are frozen; that last step runs to the end of the
    phase. Steps that would start after the phase's last epoch are dropped.

    Example:
        >>> from tfxfer.config import Phase
        >>> [(s.freeze_blocks, s.epochs) for s in stages(
        ...     Phase(trainable="gradual", epochs=5, unfreeze_every=2), 1, freeze_blocks=2)]
        [(4, 2), (3, 2), (2, 1)]
    """
    if phase.trainable != "gradual":
        return [
            Stage(str(index), index, phase.trainable, freeze_blocks, phase.epochs, 0, phase.name)
        ]
    floor = freeze_blocks or 0
    result = []
    for step, frozen in enumerate(range(num_blocks - 1, floor - 1, -1)):
        first = step * phase.unfreeze_every
        if first >= phase.epochs:
            break
        last = phase.epochs if frozen == floor else min(phase.epochs, first + phase.unfreeze_every)
        top = num_blocks
        blocks = f"block {top}" if frozen + 1 == top else f"blocks {frozen + 1}-{top}"
        result.append(
            Stage(
                f"{index}.{step}",
                index,
                "partial",
                frozen,
                last - first,
                first,
                f"{phase.name}[{blocks}]",
            )
        )
    return result
