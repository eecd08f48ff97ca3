"""scikit-learn's bundled 8x8 digits: offline, 1797 images."""
from __future__ import annotations

import torch
from torch import Tensor

from .splits import stratified_split
from .types import DatasetUnavailable

TEST_FRACTION = 0.2
TEST_SEED = 0  # fixed, so every run (whatever its seed) reports on the same test images


def load_digits_arrays() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_pool, y_pool, x_test, y_test); x is float32 (N, 1, 8, 8) in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DatasetUnavailable("digits needs scikit-learn: pip install scikit-learn") from e
    bunch = load_digits()
    x = torch.from_numpy(bunch.data / 16.0).float().reshape(-1, 1, 8, 8)
    y = torch.from_numpy(bunch.target).long()
    pool, test = stratified_split(y, TEST_FRACTION, TEST_SEED)
    return x[pool], y[pool], x[test], y[test]
