"""The ``auto`` recipe's home: the signals it measures, LogME (:mod:`~tfxfer.auto.logme`) and
the BatchNorm-statistics distance to ImageNet (:mod:`~tfxfer.auto.bn_distance`), the plan that
chooses a scenario recipe from them (:mod:`~tfxfer.auto.plan`), and the run that trains it with
the core (:mod:`~tfxfer.auto.train`). Its config section is :class:`tfxfer.config.Auto`.
"""
