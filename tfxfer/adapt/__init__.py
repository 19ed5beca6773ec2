"""Unsupervised domain adaptation, the ``domain_adapt`` recipe's home: the DANN layer and
losses (:mod:`~tfxfer.adapt.dann`), the pairing of a labelled source with an unlabelled target
(:mod:`~tfxfer.adapt.domains`) and the trainer (:mod:`~tfxfer.adapt.train`). Its config section
is :class:`tfxfer.config.Adapt`.
"""
