"""Hyper-parameter checks shared by every optimizer: one ValueError that names the parameter."""
from __future__ import annotations

import math


def finite(owner: str, name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    return value


def non_negative(owner: str, name: str, value: float) -> float:
    value = finite(owner, name, value)
    if value < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value}")
    return value


def beta(owner: str, name: str, value: float) -> float:
    value = finite(owner, name, value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value}")
    return value


def betas(owner: str, values, labels: tuple[str, ...]) -> tuple[float, ...]:
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"{owner}: betas must be a tuple of {len(labels)} numbers, got {values!r}") from None
    if len(values) != len(labels):
        raise ValueError(
            f"{owner}: betas must have {len(labels)} entries {labels}, got {len(values)}: {values!r}"
        )
    return tuple(beta(owner, f"betas[{i}] ({label})", v) for i, (label, v) in enumerate(zip(labels, values)))


def alpha_within_bound(owner: str, alpha: float, beta1: float, allow_unstable: bool,
                       beta_name: str = "beta1") -> float:
    """The paper's stability bound |alpha| < 1/(1 - beta1)."""
    alpha = finite(owner, "alpha", alpha)
    bound = 1.0 / (1.0 - beta1)
    if abs(alpha) >= bound and not allow_unstable:
        raise ValueError(
            f"{owner}: alpha must satisfy |alpha| < 1/(1 - {beta_name}) = {bound:.6g} "
            f"(stability bound), got alpha={alpha} with {beta_name}={beta1}; "
            "pass allow_unstable=True to study violations deliberately"
        )
    return alpha


def choice(owner: str, name: str, value, allowed: tuple) -> object:
    if value not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {allowed}, got {value!r}")
    return value


def optional_positive(owner: str, name: str, value: float | None) -> float | None:
    if value is None:
        return None
    value = finite(owner, name, value)
    if value <= 0:
        raise ValueError(f"{owner}: {name} must be > 0 or None (disabled), got {value}")
    return value
