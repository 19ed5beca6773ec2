"""Transfer-learning methods that plug into the training core: L2-SP regularisation,
multi-task heads, magnitude pruning and test-time augmentation.

Modules: :mod:`~tfxfer.methods.regularize`, :mod:`~tfxfer.methods.tasks`,
:mod:`~tfxfer.methods.prune`, :mod:`~tfxfer.methods.tta`.
"""
