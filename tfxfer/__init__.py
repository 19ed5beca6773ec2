"""tfxfer: transfer learning on images with Keras 3 and TensorFlow.

Importing the package registers every Keras object tfxfer saves in a ``.keras`` file (the
preprocessing layer, freezable dropout, optimisers and their schedule, the L2-SP regulariser,
the text models' pooling layer; a text model's KerasHub encoder is imported by Keras itself),
so ``import tfxfer`` is all a process needs before
``keras.saving.load_model(path, safe_mode=True)``.

Example:
    >>> import tfxfer
    >>> tfxfer.__version__
    '0.1.0'
"""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) drowns the run's own report; a user
# who wants it sets TF_CPP_MIN_LOG_LEVEL=0 before importing tfxfer.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def register_keras_objects() -> None:
    """Imports the modules whose Keras objects a ``.keras`` file names (their
    ``keras.saving.register_keras_serializable`` side effects); idempotent.

    ``import tfxfer`` calls it, except on tfxfer's command line, which calls it when work
    starts (:func:`tfxfer.runner.run`, ``export``, ``lr-find``): so ``tfxfer --help`` and
    a mistaken command line answer before TensorFlow is imported (seconds, and its start-up
    log lines).
    """
    from tfxfer.methods import regularize  # noqa: F401
    from tfxfer.models import model, stochastic  # noqa: F401
    from tfxfer.text import encoder  # noqa: F401  (KerasHub not imported)
    from tfxfer.train import optim  # noqa: F401


def _command_line() -> bool:
    """True when this process is tfxfer's command line: the ``tfxfer`` console script, or
    ``python -m tfxfer...`` (``sys.orig_argv``: while ``-m`` imports the package,
    ``sys.argv[0]`` is still ``"-m"``)."""
    import sys

    if sys.argv and _os.path.basename(sys.argv[0]) == "tfxfer":
        return True
    if not sys.argv or sys.argv[0] != "-m":  # not `python -m` importing its module's parents
        return False
    orig = list(getattr(sys, "orig_argv", ()))
    return "-m" in orig[:-1] and orig[orig.index("-m") + 1].split(".")[0] == "tfxfer"


if not _command_line():
    register_keras_objects()
