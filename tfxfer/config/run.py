"""The run part of the config, read by every recipe: data and splits, the training phases,
batching, seeding, distribution, precision and the output folder.

Import it from :mod:`tfxfer.config`, the public home of every part.

Example:
    >>> from tfxfer.config import Config, Phase
    >>> Phase(lr_range=(1e-6, 1e-4)).rates()[0]
    0.0001
    >>> Config(phases=(Phase(epochs=2),)).phases[0].epochs
    2
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfxfer.config.schema import check_choice, check_min
from tfxfer.errors import UserError

TRAINABLE_SCOPES = ("head", "partial", "all", "gradual")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "anneal")
STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


@dataclass(frozen=True)
class Phase:
    """One stage of training: what is trainable, for how long, and how it is optimised.

    Attributes:
        name: Label used in logs, history and checkpoints.
        trainable: ``"head"`` (backbone frozen), ``"partial"`` (the first ``freeze_blocks`` blocks
            frozen, the rest trained), ``"all"`` (whole backbone trained) or ``"gradual"``
            (gradual unfreezing: block 5 first, one more block every ``unfreeze_every`` epochs,
            top down, until only ``freeze_blocks`` blocks are frozen, or none when it is unset).
        epochs: Number of epochs (>= 1).
        optimizer: ``adam``, ``adamw``, ``sgd`` (with ``momentum``) or ``rmsprop``.
        lr: Peak learning rate of the head (and of the whole backbone unless ``lr_decay`` or
            ``lr_range`` spread rates across blocks), or ``"auto"``: the learning-rate finder
            (:mod:`tfxfer.train.lr_find`) picks it on the phase's own trainable scope before the
            phase trains.
        lr_decay: Discriminative learning rates: block ``i`` (1..5) trains at
            ``lr * lr_decay ** (6 - i)``, the head (counted as block 6) at ``lr``. 1.0: one rate.
        lr_range: ``[lr_low, lr_high]``, like fastai's ``slice``: block 1 at ``lr_low``, the head
            at ``lr_high``, geometric in between; replaces ``lr`` and ``lr_decay``.
        unfreeze_every: Epochs between two unfreezing steps of a ``gradual`` phase.
        weight_decay: Decoupled weight decay (adamw, sgd) .
        momentum: Momentum for sgd and rmsprop.
        schedule: ``constant``, ``cosine`` (decays to 0 over the phase) or ``anneal``
            (``lr / (1 + 10 p) ** 0.75``, ``p`` the phase's progress from 0 to 1: the annealing
            of the DANN paper, Ganin & Lempitsky 2015).
        early_stopping: Patience in epochs on validation loss; 0 turns it off. The best weights
            are restored when it triggers.
        ema: Exponential moving average of the trained weights (Keras's optimizer option
            ``use_ema``): its momentum, e.g. 0.999; 0 turns it off. The phase ends with the
            averaged weights in the model, which is what the next phase starts from and what is
            saved and exported. The average restarts with each phase.
    """

    name: str = "head"
    trainable: str = "head"
    epochs: int = 5
    optimizer: str = "adam"
    lr: float | str = 1e-3
    lr_decay: float = 1.0
    lr_range: tuple[float, ...] = ()
    unfreeze_every: int = 1
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "constant"
    early_stopping: int = 0
    ema: float = 0.0

    def __post_init__(self):
        check_choice("phase.trainable", self.trainable, TRAINABLE_SCOPES)
        check_choice("phase.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("phase.schedule", self.schedule, SCHEDULES)
        check_min(f"epochs (phase {self.name!r})", self.epochs, 1)
        if isinstance(self.lr, str):
            if self.lr != "auto" or self.lr_range:
                raise UserError(
                    f'lr (phase {self.name!r}) must be a number, or "auto" (the '
                    "learning-rate finder) without lr_range",
                    got=(self.lr, self.lr_range) if self.lr_range else self.lr,
                    fix="write e.g. --set phases.N.lr=1e-4 or --set phases.N.lr=auto",
                )
        else:
            check_min(f"lr (phase {self.name!r})", self.lr, 0.0)
        check_min("weight_decay", self.weight_decay, 0.0)
        check_min("early_stopping", self.early_stopping, 0)
        if not 0.0 <= self.ema < 1.0:
            raise UserError(
                f"ema (phase {self.name!r}) must be in [0, 1): the momentum of the weights' "
                "moving average, 0 for none",
                got=self.ema,
                fix=f"pass e.g. --set phases.{self.name}.ema=0.999",
            )
        if self.ema and self.early_stopping:
            raise UserError(
                f"ema and early_stopping cannot share a phase ({self.name!r}): early stopping "
                "restores its best raw weights over the averaged ones, so the model served "
                "would be neither",
                got=dict(ema=self.ema, early_stopping=self.early_stopping),
                fix=f"drop one: --set phases.{self.name}.early_stopping=0, or "
                f"--set phases.{self.name}.ema=0",
            )
        check_min("unfreeze_every", self.unfreeze_every, 1)
        if not 0.0 < self.lr_decay <= 1.0:
            raise UserError(
                f"lr_decay (phase {self.name!r}) must be in (0, 1]: each block down "
                "from the head trains at lr_decay times the rate of the one above",
                got=self.lr_decay,
                fix="pass e.g. phases.1.lr_decay=0.5 (1 = off)",
            )
        if self.lr_range:
            low_high = len(self.lr_range) == 2 and 0.0 < self.lr_range[0] <= self.lr_range[1]
            if not low_high or self.lr_decay != 1.0:
                raise UserError(
                    f"lr_range (phase {self.name!r}) must be [lr_low, lr_high] with "
                    "0 < lr_low <= lr_high, and lr_decay left at 1 (it replaces "
                    "lr and lr_decay)",
                    got=(self.lr_range, self.lr_decay),
                    fix="write e.g. phases.1.lr_range=[1e-6,1e-4]",
                )

    def rates(self) -> tuple[float, float]:
        """``(head_lr, decay)``: block ``i`` trains at ``head_lr * decay ** (6 - i)``."""
        if self.lr == "auto":  # a bug if reached: the training core resolves it first
            raise ValueError(f"phase {self.name!r}: lr='auto' must be resolved by the finder")
        if self.lr_range:
            low, high = self.lr_range
            return high, (low / high) ** (1.0 / 5)
        return self.lr, self.lr_decay


@dataclass(frozen=True)
class RunPart:
    """What every recipe reads: the data, the phases, and how and where the run trains.

    Attributes:
        recipe: Name of the recipe that produced the defaults (informational).
        data: A directory (``split/label/img`` or ``label/img``), ``tfds:NAME``, or a built-in
            name: ``hymenoptera``, ``cats_and_dogs_filtered``, ``fashion_mnist``, ``mnist``,
            ``mnist_m``, ``usps`` (the text recipe: ``sst2`` or a CSV/TSV folder).
        val_split: Fraction held out for validation when the data has no validation split.
        train_per_class: Keep at most this many training examples per class (None: all).
        val_per_class: Keep at most this many validation examples per class (None: all).
        manual_dir: TFDS ``manual_dir`` (files TFDS would otherwise download).
        phases: The training phases, run in order.
        batch_size: Global batch size (split across replicas under a distribution strategy).
        lr_find_steps: Batches of the learning-rate finder's sweep, for phases with
            ``lr="auto"`` (:mod:`tfxfer.train.lr_find`).
        cache_features: Train head-only phases on backbone features computed once per example.
        seed: Seed for splits, shuffling, augmentation and initialisation.
        strategy: ``auto``, ``default``, ``mirrored``, ``multiworker`` or ``tpu``.
        mixed_precision: Mixed precision, by device: float16 on GPUs, bfloat16 on TPUs and
            CPUs (:func:`tfxfer.train.distribute.precision_policy`); logits and loss stay float32.
        output: Output directory for the run.
        overwrite: Start afresh in an output directory that holds a different run (its
            checkpoints and artefacts are deleted first).
        resume: Continue the run in the output directory with changed rates: completed phases
            are kept, phases still to run may change their learning-rate keys
            (:data:`tfxfer.train.rundir.RESUMABLE_PHASE_KEYS`); the way on after a NaN stop.
        verbose: Keras fit verbosity (0, 1 or 2).
        top_k: Classes each prediction of the exported SavedModel lists (capped at the number
            of classes).
    """

    recipe: str = "custom"
    data: str = "hymenoptera"
    val_split: float = 0.2
    train_per_class: int | None = None
    val_per_class: int | None = None
    manual_dir: str | None = None
    phases: tuple[Phase, ...] = field(default_factory=lambda: (Phase(),))
    batch_size: int = 32
    lr_find_steps: int = 200
    cache_features: bool = True
    seed: int = 0
    strategy: str = "auto"
    mixed_precision: bool = False
    output: str = "runs/tfxfer"
    overwrite: bool = False
    resume: bool = False
    verbose: int = 2
    top_k: int = 5

    def _check_run(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        if not 0.0 < self.val_split < 1.0:
            raise UserError(
                "val_split must be strictly between 0 and 1",
                got=self.val_split,
                fix="pass e.g. --set val_split=0.2",
            )
        check_min("batch_size", self.batch_size, 1)
        check_min("lr_find_steps", self.lr_find_steps, 10)
        check_min("train_per_class", self.train_per_class, 1)
        check_min("val_per_class", self.val_per_class, 1)
        check_min("seed", self.seed, 0)  # numpy's and Keras's generators take seeds >= 0
        check_min("top_k", self.top_k, 1)
        if self.overwrite and self.resume:
            raise UserError(
                "overwrite (start afresh) and resume (keep completed phases) exclude each other",
                got="both",
                fix="pass only one of --overwrite/--resume",
            )
        if not self.phases:
            raise UserError(
                "phases must hold at least one phase",
                got=self.phases,
                fix="use a recipe's defaults or give a [[phases]] table",
            )


def wise_ft_probe(phases) -> int | None:
    """Index of WiSE-FT's probe phase: the last head-only phase before the first phase that
    trains the backbone; None when there is no such pair.

    Example:
        >>> wise_ft_probe([Phase(name="head"), Phase(name="ft", trainable="partial")])
        0
        >>> wise_ft_probe([Phase(name="all", trainable="all")]) is None
        True
    """
    first = next((i for i, p in enumerate(phases) if p.trainable != "head"), None)
    if first is None or first == 0:
        return None
    return first - 1
