"""Transfer-learning methods that plug into the training core: L2-SP regularisation,
multi-task heads, magnitude pruning and test-time augmentation; domain adaptation and zero-shot;
and the measurements the ``auto`` recipe plans from.

Modules: :mod:`~tfxfer.methods.regularize`, :mod:`~tfxfer.methods.tasks`,
:mod:`~tfxfer.methods.prune`, :mod:`~tfxfer.methods.tta`, :mod:`~tfxfer.methods.dann`,
:mod:`~tfxfer.methods.zero_shot`, :mod:`~tfxfer.methods.logme`,
:mod:`~tfxfer.methods.bn_distance`.
"""
