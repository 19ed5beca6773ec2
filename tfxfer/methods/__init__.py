"""Transfer-learning methods that plug into the training core: L2-SP regularisation,
multi-task heads, magnitude pruning and test-time augmentation. The methods with a recipe of
their own live in their own homes: :mod:`tfxfer.adapt`, :mod:`tfxfer.zero_shot`,
:mod:`tfxfer.auto`, :mod:`tfxfer.text` and :mod:`tfxfer.generative`.

Modules: :mod:`~tfxfer.methods.regularize`, :mod:`~tfxfer.methods.tasks`,
:mod:`~tfxfer.methods.prune`, :mod:`~tfxfer.methods.tta`.
"""
