"""The method sections of the config, one per method: ``prune``, ``zero_shot``, ``auto`` and
``generative`` (the GAN); ``adapt`` (:mod:`tfxfer.config.adapt`) and ``distill``
(:mod:`tfxfer.config.distill`) have modules of their own. A recipe declares the sections it
reads (:func:`tfxfer.runner.register`); any other, set away from its defaults, is refused.

Import them from :mod:`tfxfer.config`, the public home of every part.

Example:
    >>> from tfxfer.config import Prune, ZeroShot
    >>> Prune(sparsity=0.5).sparsity
    0.5
    >>> ZeroShot(unseen=("Bag",)).methods
    ('dap', 'eszsl', 'class_norm')
"""

from __future__ import annotations

from dataclasses import dataclass

from tfxfer.config.schema import check_choice, check_min
from tfxfer.errors import UserError

ZERO_SHOT_METHODS = ("dap", "eszsl", "class_norm")


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
class ZeroShot:
    """Zero-shot classification by attributes (:mod:`tfxfer.zero_shot.methods`).

    Attributes:
        attributes: CSV file: a header ``class,attr1,attr2,...`` and one row per class, binary
            or continuous values. None: the built-in table of the data, if it has one.
        unseen: Classes whose images are never used in training, recognised by their row.
        methods: Any of ``dap`` (Lampert et al.), ``eszsl`` (Romera-Paredes & Torr 2015) and
            ``class_norm`` (an attribute MLP with class normalisation, after Skorokhodov &
            Elhoseiny 2021: :mod:`tfxfer.zero_shot.class_norm`).
        eszsl_gamma: ESZSL's regulariser on the feature side (``gamma`` in the paper).
        eszsl_lambda: ESZSL's regulariser on the attribute side (``lambda`` in the paper).
        dap_c: Inverse L2 strength of DAP's per-attribute logistic regressions.
        class_norm_hidden: Hidden units of ``class_norm``'s MLP.
        class_norm_steps: Its full-batch Adam steps.
        class_norm_weight_decay: Its L2 penalty on both kernels.
        calibration: Subtracted from seen classes' scores in generalised ZSL (Chao et al.
            2016's calibrated stacking). ``"auto"``: chosen per method on held-out training
            images of the seen classes, some of them playing unseen ones, never on an unseen
            image (:mod:`tfxfer.zero_shot.calibrate`); a number: that constant; 0: plain GZSL.
            Metrics report GZSL both without calibration and with it.
    """

    attributes: str | None = None
    unseen: tuple[str, ...] = ()
    methods: tuple[str, ...] = ZERO_SHOT_METHODS
    eszsl_gamma: float = 1.0
    eszsl_lambda: float = 1.0
    dap_c: float = 1.0
    class_norm_hidden: int = 256
    class_norm_steps: int = 300
    class_norm_weight_decay: float = 1e-4
    calibration: float | str = "auto"

    def __post_init__(self):
        if isinstance(self.calibration, str) and self.calibration != "auto":
            raise UserError(
                'zero_shot.calibration must be a number or "auto" (chosen on held-out seen '
                "classes)",
                got=self.calibration,
                fix="write --set zero_shot.calibration=auto, or a number such as 2.5",
            )
        for method in self.methods:
            check_choice("zero_shot.methods", method, ZERO_SHOT_METHODS)
        check_min("zero_shot.eszsl_gamma", self.eszsl_gamma, 0.0, strict=True)
        check_min("zero_shot.eszsl_lambda", self.eszsl_lambda, 0.0, strict=True)
        check_min("zero_shot.dap_c", self.dap_c, 0.0, strict=True)
        check_min("zero_shot.class_norm_hidden", self.class_norm_hidden, 1)
        check_min("zero_shot.class_norm_steps", self.class_norm_steps, 1)
        check_min("zero_shot.class_norm_weight_decay", self.class_norm_weight_decay, 0.0)


@dataclass(frozen=True)
class Auto:
    """Automatic recipe choice (:mod:`tfxfer.auto.train`): the ``auto`` recipe.

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
            (:mod:`tfxfer.auto.bn_distance`) at or below which the data count as similar.
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


@dataclass(frozen=True)
class Generative:
    """The class-conditional GAN of :mod:`tfxfer.generative`.

    A DCGAN generator (label embedding joined to the noise; nearest-neighbour upsampling and
    3x3 convolutions, batch norm) against a spectrally normalised projection discriminator,
    trained with the hinge loss and DiffAugment; :mod:`tfxfer.generative.networks` says why.

    The defaults are sized for two CPU cores (2,000 steps at 28 px: about 3 minutes) and are
    what ``bench/generative.py`` measured; on a GPU, more ``steps`` and ``width`` (32-64) are
    cheap.

    Attributes:
        steps: Discriminator + generator updates (one each per step).
        batch_size: Real images per step (and as many generated).
        image_size: Side of the generated images; 0 takes the side of the training images as
            decoded (built-in arrays keep their own: Fashion-MNIST 28, MNIST-M 32; folders are
            decoded at the run's input size) when it is at most 64 and a multiple of 4, else
            the next multiple of 4, at most 64. The images are resized to it for the GAN, and
            its samples back to the data's size.
        latent_dim: Width of the noise vector (and of the label embedding).
        width: Channels of the generator's last block; each block before it has twice as many.
            The discriminator mirrors it.
        lr: Adam learning rate of both networks (beta_1 0.5, beta_2 0.999: SN-GAN's setting).
        ema: Decay of the moving average of the generator's weights that is saved and sampled
            (0 saves the raw generator).
        diff_augment: Translate and cut out real and generated images alike before the
            discriminator sees them (DiffAugment); it keeps the discriminator from memorising
            a small training set.
        checkpoint_every: Steps between checkpoints (a killed run resumes from the last).
        kid_images: Generated and real validation images compared by KID after training.
    """

    steps: int = 2000
    batch_size: int = 64
    image_size: int = 0
    latent_dim: int = 64
    width: int = 16
    lr: float = 2e-4
    ema: float = 0.999
    diff_augment: bool = True
    checkpoint_every: int = 250
    kid_images: int = 1000

    def __post_init__(self):
        check_min("generative.steps", self.steps, 1)
        check_min("generative.batch_size", self.batch_size, 2)
        check_min("generative.image_size", self.image_size, 0)
        if self.image_size and (self.image_size % 4 or self.image_size < 8):
            raise UserError(
                "generative.image_size must be 0 (automatic) or a multiple of 4 of at least 8",
                got=self.image_size,
                fix="pass e.g. --set generative.image_size=32",
            )
        check_min("generative.latent_dim", self.latent_dim, 1)
        check_min("generative.width", self.width, 1)
        check_min("generative.lr", self.lr, 0.0, strict=True)
        if not 0.0 <= self.ema < 1.0:
            raise UserError(
                "generative.ema must be in [0, 1)",
                got=self.ema,
                fix="pass e.g. --set generative.ema=0.999, or 0 for no average",
            )
        check_min("generative.checkpoint_every", self.checkpoint_every, 1)
        check_min("generative.kid_images", self.kid_images, 2)
