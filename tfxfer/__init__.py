"""tfxfer: transfer learning on images with Keras 3 and TensorFlow.

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
