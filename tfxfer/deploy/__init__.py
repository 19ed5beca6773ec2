"""What a finished run ships: the serving SavedModel (in-graph decoding, class names), LiteRT
files, the saved Keras model, metrics and report.

Modules: :mod:`~tfxfer.deploy.export` (a run's artefacts), :mod:`~tfxfer.deploy.serving`,
:mod:`~tfxfer.deploy.litert`, :mod:`~tfxfer.deploy.plots`, and
:mod:`~tfxfer.deploy.savedmodel` (writing a SavedModel whose endpoints each trace once).
``tfxfer predict`` (:mod:`tfxfer.predict`) uses only the exported SavedModel.
"""
