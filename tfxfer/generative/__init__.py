"""Generative augmentation (issue 16, in progress): so far the metric the generator will be
judged by, :mod:`~tfxfer.generative.kid` (Kernel Inception Distance on the run's own backbone
features)."""
