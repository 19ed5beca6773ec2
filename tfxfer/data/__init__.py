"""Data: sources (built-in datasets, folders, TFDS), decoding, the input pipeline, augmentation
and cached backbone features.

Modules: :mod:`~tfxfer.data.sources`, :mod:`~tfxfer.data.images`,
:mod:`~tfxfer.data.graph_decode` (the same decode as TensorFlow ops, for serving and shards),
:mod:`~tfxfer.data.tfds_source`, :mod:`~tfxfer.data.shard` (one worker's share),
:mod:`~tfxfer.data.pipeline`, :mod:`~tfxfer.data.augment`, :mod:`~tfxfer.data.features`. Imports
flow from here to models, methods, train and deploy, never back.
"""
