"""Per-feature standardisation of frozen features, fitted on the training features only.

Example:
    >>> import numpy as np
    >>> scale = Standardizer().fit(np.array([[0.0, 10.0], [2.0, 14.0]]))
    >>> scale(np.array([[1.0, 12.0], [3.0, 16.0]]))
    array([[0., 0.],
           [2., 2.]])
"""

from __future__ import annotations

import numpy as np


class Standardizer:
    """Per-feature mean and standard deviation of the training features."""

    def fit(self, x: np.ndarray) -> Standardizer:
        self.mean = x.mean(axis=0)
        self.std = np.maximum(x.std(axis=0), 1e-6)
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std
