"""Performance profiles across workloads: the MLCommons AlgoPerf scoring (README, "Across workloads").

For optimizers o and workloads w, with cost(o, w) the expected time per success (inf for a miss):

    r(o, w)    = cost(o, w) / min over o of cost(·, w)          (1 for the best; inf for a miss)
    rho_o(tau) = share of workloads with r(o, w) <= tau,          tau in [1, TAU_MAX]
    area_o     = integral of rho_o over [1, TAU_MAX] / (TAU_MAX - 1)

The area is one score per optimizer in [0, 1]: 1 when it was the fastest on every workload, 0
when it was never within TAU_MAX times the fastest. Since rho is a step function, a workload
adds max(0, TAU_MAX - r) / (TAU_MAX - 1) to the area's mean, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

TAU_MAX = 4.0


def ratios(costs: Mapping[str, float]) -> dict[str, float]:
    """r(o, w) on one workload from each optimizer's cost there (inf: a miss). ValueError when
    no optimizer reached (such a workload is listed, not scored) or a cost is not positive."""
    for name, c in costs.items():
        if not (c > 0):  # also catches NaN
            raise ValueError(f"costs: {name}'s cost must be > 0 (inf for a miss), got {c!r}")
    best = min(costs.values(), default=math.inf)
    if math.isinf(best):
        raise ValueError("costs: every optimizer missed this workload; list it, do not score it")
    return {name: c / best for name, c in costs.items()}


def _check(rs: Sequence[float], tau_max: float) -> np.ndarray:
    r = np.asarray(rs, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("ratios must be a non-empty 1-D sequence, one per workload")
    if np.isnan(r).any() or (r < 1).any():
        raise ValueError("ratios must be >= 1 (inf for a miss)")
    if not (math.isfinite(tau_max) and tau_max > 1):
        raise ValueError(f"tau_max must be a finite number > 1, got {tau_max!r}")
    return r


def profile(rs: Sequence[float], taus: Sequence[float]) -> np.ndarray:
    """rho(tau): the share of workloads whose ratio is <= tau, at each tau."""
    r = _check(rs, TAU_MAX)
    t = np.asarray(taus, dtype=np.float64)
    return (r[None, :] <= t[:, None]).mean(axis=1)


def profile_steps(rs: Sequence[float], tau_max: float = TAU_MAX) -> list[tuple[float, float]]:
    """The profile as the points where it steps, (tau, rho(tau)), from tau = 1 to tau_max."""
    r = _check(rs, tau_max)
    taus = sorted({1.0, tau_max, *(float(x) for x in r if x <= tau_max)})
    return [(t, float(v)) for t, v in zip(taus, profile(r, taus))]


def profile_area(rs: Sequence[float], tau_max: float = TAU_MAX) -> float:
    """Integral of rho over [1, tau_max] divided by tau_max - 1 (see the module docstring)."""
    r = _check(rs, tau_max)
    return float(np.mean(np.clip(tau_max - r, 0.0, tau_max - 1.0)) / (tau_max - 1.0))
