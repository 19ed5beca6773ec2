"""Generative augmentation: a class-conditional GAN trained on a run's training split only.

- :mod:`~tfxfer.generative.networks`: the generator (DCGAN) and the spectrally normalised
  projection discriminator, DiffAugment, and why this GAN;
- :mod:`~tfxfer.generative.gan`: both networks, their optimisers and averaged generator, one step;
- :mod:`~tfxfer.generative.train`: the resumable training loop, writing ``generator.keras``;
- :mod:`~tfxfer.generative.sample`: labelled ``uint8`` samples shaped like the data, the
  per-class grid;
- :mod:`~tfxfer.generative.kid` and :mod:`~tfxfer.generative.quality`: Kernel Inception
  Distance on the run's own backbone features;
- :mod:`~tfxfer.generative.synthetic`: ``augment.synthetic_ratio``, the training split extended
  with generated images (validation untouched);
- the ``generative`` recipe (:mod:`tfxfer.recipes.generative`): ``tfxfer generative --data ...
  --output ...``.

Whether it helps is measured in ``bench/generative.py``; docs/methods.md states the result.
"""
