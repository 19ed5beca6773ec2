"""The ``auto`` recipe's home: the signals it measures, LogME (:mod:`~tfxfer.auto.logme`) and
the BatchNorm-statistics distance to ImageNet (:mod:`~tfxfer.auto.bn_distance`), and the plan
that chooses a scenario recipe from them, then trains it with the core
(:mod:`~tfxfer.auto.train`). Its config section is :class:`tfxfer.config.Auto`.
"""
