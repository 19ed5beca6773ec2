"""Training: the one core every recipe calls, its optimisers, checkpoints, run directory,
``tf.distribute`` strategy, validation and result.

Modules: :mod:`~tfxfer.train.loop` (``run``), :mod:`~tfxfer.train.optim`,
:mod:`~tfxfer.train.lr_find`, :mod:`~tfxfer.train.checkpoint`, :mod:`~tfxfer.train.rundir`,
:mod:`~tfxfer.train.distribute`, :mod:`~tfxfer.train.validate`, :mod:`~tfxfer.train.result`;
the cores of the other recipes: :mod:`~tfxfer.train.adapt`, :mod:`~tfxfer.train.zero_shot`
and :mod:`~tfxfer.train.auto` (which plans, then calls ``loop.run``).
"""
