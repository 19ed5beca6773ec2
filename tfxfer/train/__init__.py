"""Training: the one core every recipe calls, its optimisers, checkpoints, run directory and
``tf.distribute`` strategy.

Modules: :mod:`~tfxfer.train.loop` (``run``), :mod:`~tfxfer.train.optim`,
:mod:`~tfxfer.train.checkpoint`, :mod:`~tfxfer.train.rundir`, :mod:`~tfxfer.train.distribute`.
"""
