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


def _help_only() -> bool:
    """True when this process is the ``tfxfer`` console script asked only for its usage
    (``tfxfer``, ``tfxfer --help``, ``tfxfer RECIPE --help``): it prints and exits, so the
    Keras registrations below, which import TensorFlow (seconds, and its start-up log lines),
    are skipped."""
    import sys

    argv = sys.argv
    if not argv or _os.path.basename(argv[0]) != "tfxfer":
        return False
    return len(argv) == 1 or bool({"-h", "--help"} & set(argv[1:]))


if not _help_only():
    # Registration side effects only (keras.saving.register_keras_serializable).
    from tfxfer.methods import regularize as _regularize  # noqa: F401
    from tfxfer.models import model as _model  # noqa: F401
    from tfxfer.models import stochastic as _stochastic  # noqa: F401
    from tfxfer.text import encoder as _text_encoder  # noqa: F401  (KerasHub not imported)
    from tfxfer.train import optim as _optim  # noqa: F401
