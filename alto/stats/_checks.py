"""Small input checks shared by the statistics and analysis modules (each error names the offending field)."""

from __future__ import annotations

import math

import numpy as np


def as_1d(values: object, field: str) -> np.ndarray:
    """`values` as a 1-D float array; ValueError naming `field` otherwise."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} must be numbers: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{field} must be 1-D, got shape {arr.shape}")
    return arr


def same_length(a: np.ndarray, b: np.ndarray, field_a: str, field_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{field_b} has {b.shape[0]} points but {field_a} has {a.shape[0]}")


def check_fraction(value: float, field: str, *, lo_open: bool = False) -> float:
    """A finite number in [0, 1) ((0, 1) with lo_open)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} must be a number, got {value!r}") from exc
    ok = math.isfinite(v) and (v > 0 if lo_open else v >= 0) and v < 1
    if not ok:
        span = "(0, 1)" if lo_open else "[0, 1)"
        raise ValueError(f"{field} must be in {span}, got {value!r}")
    return v


def check_choice(value: str, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_finite(value: float, field: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} must be a number, got {value!r}") from exc
    if not math.isfinite(v):
        raise ValueError(f"{field} must be finite, got {value!r}")
    return v
