"""Training: the one core every recipe calls, its optimisers, checkpoints, run directory,
``tf.distribute`` strategy, validation and result.

Modules: :mod:`~tfxfer.train.loop` (``run``), :mod:`~tfxfer.train.stage`,
:mod:`~tfxfer.train.optim`, :mod:`~tfxfer.train.lr_find`, :mod:`~tfxfer.train.checkpoint`,
:mod:`~tfxfer.train.rundir`, :mod:`~tfxfer.train.distribute`, :mod:`~tfxfer.train.validate`,
:mod:`~tfxfer.train.result`, :mod:`~tfxfer.train.prebuild`; the trainers of the other recipes
live in their homes (:mod:`tfxfer.adapt.train`, :mod:`tfxfer.zero_shot.train`,
:mod:`tfxfer.auto.train`, :mod:`tfxfer.text.train`).
"""
