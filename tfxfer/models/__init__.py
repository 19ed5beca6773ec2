"""Models: the backbone registry, the transfer model (preprocessing, augmentation, heads),
freezable dropout, and the ``trainable`` scopes that freeze blocks.

Modules: :mod:`~tfxfer.models.backbones`, :mod:`~tfxfer.models.model`,
:mod:`~tfxfer.models.stochastic`, :mod:`~tfxfer.models.freeze`.
"""
