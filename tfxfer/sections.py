"""The config's nested tables: phases, output tasks, pruning, domain adaptation and zero-shot.

They live apart from :class:`tfxfer.config.Config` to keep each module small; import them from
:mod:`tfxfer.config`, their public home.

Example:
    >>> from tfxfer.config import Phase, Prune
    >>> Phase(lr_range=(1e-6, 1e-4)).rates()[0], Prune(sparsity=0.5).sparsity
    (0.0001, 0.5)
    >>> Adapt(target="mnist_m").method, ZeroShot(unseen=("Bag",)).methods
    ('dann', ('dap', 'eszsl'))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfxfer.errors import UserError
from tfxfer.schema import check_choice, check_min

TRAINABLE_SCOPES = ("head", "partial", "all", "gradual")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "anneal")
ADAPT_METHODS = ("dann", "source_only")
ZERO_SHOT_METHODS = ("dap", "eszsl")
TASK_LOSSES = ("crossentropy", "focal")


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
class Task:
    """One output head of a multi-task model.

    Attributes:
        name: The head's name: its output key in the model and the exported signature.
        groups: Empty: the dataset's own classes. Otherwise a coarse label set defined on them,
            ``{group: [dataset class, ...]}``; every dataset class must be in exactly one group.
        loss: ``crossentropy`` (with the config's ``label_smoothing``) or ``focal``.
        loss_weight: Weight of this head's loss in the total loss.
    """

    name: str = "label"
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    loss: str = "crossentropy"
    loss_weight: float = 1.0

    def __post_init__(self):
        check_choice(f"tasks loss (task {self.name!r})", self.loss, TASK_LOSSES)
        check_min(f"loss_weight (task {self.name!r})", self.loss_weight, 0.0)
        if not self.name.isidentifier():
            raise UserError(
                "a task name must be an identifier (letters, digits, _)",
                got=self.name,
                fix='rename the task, e.g. name = "coarse"',
            )


@dataclass(frozen=True)
class Prune:
    """Magnitude pruning during the phases that train the backbone (:mod:`tfxfer.methods.prune`).

    Attributes:
        sparsity: Final fraction of zero weights in every prunable kernel; 0 turns pruning off.
        begin: Fraction of the pruning steps at which sparsity starts to rise.
        end: Fraction at which it reaches ``sparsity`` (the rest recovers at that sparsity).
        power: Exponent of the polynomial schedule (3: Zhu & Gupta, 2017).
        frequency: Steps between two mask updates; 0: about 50 updates over the schedule.
    """

    sparsity: float = 0.0
    begin: float = 0.0
    end: float = 0.75
    power: int = 3
    frequency: int = 0

    def __post_init__(self):
        if not 0.0 <= self.sparsity < 1.0:
            raise UserError(
                "prune.sparsity must be in [0, 1): the fraction of weights zeroed",
                got=self.sparsity,
                fix="pass e.g. --set prune.sparsity=0.5",
            )
        if not 0.0 <= self.begin < self.end <= 1.0:
            raise UserError(
                "prune.begin and prune.end must satisfy 0 <= begin < end <= 1 "
                "(fractions of the pruning steps)",
                got=(self.begin, self.end),
                fix="pass e.g. --set prune.end=0.75",
            )
        check_min("prune.power", self.power, 1)
        check_min("prune.frequency", self.frequency, 0)


@dataclass(frozen=True)
class Adapt:
    """Unsupervised domain adaptation (:mod:`tfxfer.train.adapt`): the ``domain_adapt`` recipe.

    The config's ``data`` is the labelled source; ``target`` is trained on without its labels.

    Attributes:
        target: The target domain: anything ``data`` accepts, or a folder of unlabelled images.
            Only its images are used for training (its training split when it has labels).
        target_val: Labelled target data, for evaluation only. None: the target's own validation
            split when it has labels, else no target accuracy is reported.
        method: ``dann`` (gradient reversal against a domain classifier) or ``source_only`` (the
            same code path with the reversal weight held at 0: the baseline).
        gamma: Steepness of the reversal weight ``lambda_p = 2 / (1 + exp(-gamma p)) - 1``.
        weight: Final reversal weight (multiplies ``lambda_p``).
        domain_hidden: Widths of the domain classifier's hidden ReLU layers.
    """

    target: str | None = None
    target_val: str | None = None
    method: str = "dann"
    gamma: float = 10.0
    weight: float = 1.0
    domain_hidden: tuple[int, ...] = (1024, 1024)

    def __post_init__(self):
        check_choice("adapt.method", self.method, ADAPT_METHODS)
        check_min("adapt.gamma", self.gamma, 0.0, strict=True)
        check_min("adapt.weight", self.weight, 0.0)
        for width in self.domain_hidden:
            check_min("adapt.domain_hidden", width, 1)


@dataclass(frozen=True)
class ZeroShot:
    """Zero-shot classification by attributes (:mod:`tfxfer.methods.zero_shot`).

    Attributes:
        attributes: CSV file: a header ``class,attr1,attr2,...`` and one row per class, binary
            or continuous values. None: the built-in table of the data, if it has one.
        unseen: Classes whose images are never used in training, recognised by their row.
        methods: Any of ``dap`` (Lampert et al.) and ``eszsl`` (Romera-Paredes & Torr 2015).
        eszsl_gamma: ESZSL's regulariser on the feature side (``gamma`` in the paper).
        eszsl_lambda: ESZSL's regulariser on the attribute side (``lambda`` in the paper).
        dap_c: Inverse L2 strength of DAP's per-attribute logistic regressions.
        calibration: Subtracted from seen classes' scores in generalised ZSL (Chao et al.
            2016's calibrated stacking); 0: plain GZSL.
    """

    attributes: str | None = None
    unseen: tuple[str, ...] = ()
    methods: tuple[str, ...] = ZERO_SHOT_METHODS
    eszsl_gamma: float = 1.0
    eszsl_lambda: float = 1.0
    dap_c: float = 1.0
    calibration: float = 0.0

    def __post_init__(self):
        for method in self.methods:
            check_choice("zero_shot.methods", method, ZERO_SHOT_METHODS)
        check_min("zero_shot.eszsl_gamma", self.eszsl_gamma, 0.0, strict=True)
        check_min("zero_shot.eszsl_lambda", self.eszsl_lambda, 0.0, strict=True)
        check_min("zero_shot.dap_c", self.dap_c, 0.0, strict=True)


@dataclass(frozen=True)
class Auto:
    """Automatic recipe choice (:mod:`tfxfer.train.auto`): the ``auto`` recipe.

    The thresholds minimise the summed regret (best recipe's accuracy minus the chosen one's,
    ties to the cheaper recipe) over the six calibration datasets of ``bench/auto.py``, whose
    table also judges each dataset by thresholds fitted on the other five. On them, at equal
    budgets of 1-6 epochs, ``small_different`` had the best accuracy on every dataset; on
    hymenoptera ``small_similar`` tied it at a quarter of the time, so ``similar_distance`` sits
    between hymenoptera's 0.033 and cats_and_dogs_filtered's 0.065, and ``large_per_class`` at
    twice the largest calibration size (6,000 per class): no calibration set made a large
    recipe win. ``similar_logme`` was set by hand (see its entry), not fitted.

    Attributes:
        dry_run: Measure, print and write ``plan.json``, train nothing (``--dry-run``).
        compare: Also run a short version of every candidate recipe and pick the best by
            validation accuracy: the slow path, for when the signals sit near a threshold.
        compare_epochs: Epochs of each phase in the comparison runs.
        epochs: Epochs of every phase of the chosen recipe; None keeps the recipe's own.
        lr_find: Run the learning-rate finder for every phase of the chosen recipe
            (``phases.N.lr=auto``) instead of its hand-set rates.
        probe_images: Training images (stratified by class) the measurements read.
        large_per_class: Median training images per class from which the data count as large.
        similar_distance: BatchNorm-statistics distance to ImageNet
            (:mod:`tfxfer.methods.bn_distance`) at or below which the data count as similar.
        similar_logme: For backbones without BatchNorm statistics (ConvNeXt): LogME at or above
            which the data count as similar. -0.118 (between hymenoptera's and cats_and_dogs'
            MobileNetV2 LogME) makes the same six choices as ``similar_distance``; LogME's scale
            differs between backbones, and no BN-free backbone was calibrated.
    """

    dry_run: bool = False
    compare: bool = False
    compare_epochs: int = 1
    epochs: int | None = None
    lr_find: bool = False
    probe_images: int = 256
    large_per_class: float = 12000.0
    similar_distance: float = 0.046
    similar_logme: float = -0.118

    def __post_init__(self):
        check_min("auto.compare_epochs", self.compare_epochs, 1)
        check_min("auto.epochs", self.epochs, 1)
        check_min("auto.probe_images", self.probe_images, 2)
        check_min("auto.large_per_class", self.large_per_class, 1.0)
        check_min("auto.similar_distance", self.similar_distance, 0.0)
