"""What a finished run leaves behind: the saved model, SavedModel export, metrics and report.

Modules: :mod:`~tfxfer.deploy.export`, :mod:`~tfxfer.deploy.plots`.
"""
