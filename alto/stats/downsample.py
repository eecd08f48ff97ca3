"""Index-based downsampling that keeps the first and last points (plots stay <= max_points)."""

from __future__ import annotations

import numpy as np

MAX_POINTS = 2000  # per trace, in every figure: keeps pages and the report responsive


def downsample_indices(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """At most `max_points` evenly spaced indices into range(n), first and last included."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    if max_points == 1:
        return np.array([n - 1])
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def downsample(*arrays: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, ...]:
    """The same evenly spaced points of several equally long arrays (axis 0)."""
    if not arrays:
        return ()
    n = len(arrays[0])
    for a in arrays[1:]:
        if len(a) != n:
            raise ValueError(f"arrays must have equal length, got {n} and {len(a)}")
    idx = downsample_indices(n, max_points)
    return tuple(np.asarray(a)[idx] for a in arrays)
