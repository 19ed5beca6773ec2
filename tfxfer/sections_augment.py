"""The config's augmentation tables: :class:`Augment` (classic and synthetic) and
:class:`Generative` (the GAN that makes the synthetic images).

They live apart from :mod:`tfxfer.sections` to keep each module small; import them from
:mod:`tfxfer.config`, their public home.

Example:
    >>> from tfxfer.config import Augment, Config
    >>> Config(augment="none").augment.preset      # a bare string names the preset
    'none'
    >>> Config().override(["augment.synthetic_ratio=1"]).augment
    Augment(preset='light', synthetic_ratio=1.0, generator=None)
"""

from __future__ import annotations

from dataclasses import dataclass

from tfxfer.errors import UserError
from tfxfer.schema import check_choice, check_min

AUGMENT_PRESETS = ("none", "light", "standard", "strong")


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: a classic preset, and optionally GAN-generated images.

    ``augment=light`` (command line, TOML or Python) is short for ``augment.preset=light``.

    Attributes:
        preset: ``none``, ``light`` (flip), ``standard`` (flip, rotation, zoom, translation,
            contrast) or ``strong`` (flip + RandAugment); :mod:`tfxfer.data.augment`.
        synthetic_ratio: ``r``: add ``r x N`` generated images (``N`` the training images), in
            the training split's class proportions and labelled with their class, to every
            epoch, on top of the preset (which they go through too). They are sampled once per
            run: every epoch sees the same generated images, freshly augmented. 0 disables it. A
            class-conditional GAN is trained on the training split only, into
            ``<output>/generator`` (resumable), unless ``generator`` names one
            (:mod:`tfxfer.generative`). Validation never sees a generated image.
        generator: Directory of a trained generator (``python -m tfxfer.generative`` output, or
            an earlier run's ``<output>/generator``) to sample from instead of training one.
            It must have been trained on these classes, and on none of the run's validation
            images (checked against the digests it stores).
    """

    preset: str = "light"
    synthetic_ratio: float = 0.0
    generator: str | None = None

    def __post_init__(self):
        check_choice("augment.preset", self.preset, AUGMENT_PRESETS)
        check_min("augment.synthetic_ratio", self.synthetic_ratio, 0.0)
        if self.generator is not None and not self.synthetic_ratio:
            raise UserError(
                "augment.generator is sampled only when augment.synthetic_ratio > 0",
                got=dict(generator=self.generator, synthetic_ratio=0.0),
                fix="add --set augment.synthetic_ratio=1 (or drop augment.generator)",
            )


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
