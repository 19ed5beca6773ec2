"""Transfer-learning methods that plug into the training core: L2-SP regularisation and
multi-task heads.

Modules: :mod:`~tfxfer.methods.regularize`, :mod:`~tfxfer.methods.tasks`.
"""
