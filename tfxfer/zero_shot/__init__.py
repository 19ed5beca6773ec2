"""Zero-shot classification by attributes, the ``zero_shot`` recipe's home: the class-attribute
tables (:mod:`~tfxfer.zero_shot.attributes`), the DAP and ESZSL classifiers and their ZSL/GZSL
evaluation (:mod:`~tfxfer.zero_shot.methods`) and the trainer (:mod:`~tfxfer.zero_shot.train`).
Its config section is :class:`tfxfer.config.ZeroShot`.
"""
