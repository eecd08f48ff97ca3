"""Time to target: the first x at which a (smoothed) metric crosses a threshold.

Interpolation choice: when the metric crosses the threshold between two logged points,
the crossing x is interpolated linearly between them, i.e. we assume the metric moved
linearly between two evaluations. Taking the later evaluation instead would overstate
the time by up to one evaluation interval, and that bias differs between optimizers whose
steps take different times. When the very first usable point already satisfies the
threshold, that point's x is returned. Only points where both x and the smoothed value are
finite are used, so the answer always lies within the data's x range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._checks import as_1d, check_choice, check_finite, same_length
from .metrics import MODES
from .smoothing import ema_debiased


def time_to_target(
    x: np.ndarray,
    values: np.ndarray,
    threshold: float,
    *,
    mode: str = "max",
    smoothing: float = 0.0,
) -> float | None:
    """First x where the smoothed metric reaches `threshold`; None if it never does.

    mode "max": reached when value >= threshold (accuracy); "min": value <= threshold
    (loss, perplexity). `smoothing` is the ema_debiased weight, applied before the search.
    x must be non-decreasing over the usable points (ValueError naming x otherwise).
    """
    xv, v = as_1d(x, "x"), as_1d(values, "values")
    same_length(xv, v, "x", "values")
    thr = check_finite(threshold, "threshold")
    check_choice(mode, "mode", MODES)
    s = ema_debiased(v, smoothing)
    keep = np.isfinite(xv) & np.isfinite(s)
    xv, s = xv[keep], s[keep]
    if xv.size and np.any(np.diff(xv) < 0):
        raise ValueError("x must be non-decreasing (sorted in time)")
    hit = s >= thr if mode == "max" else s <= thr
    if not hit.any():
        return None
    i = int(np.argmax(hit))
    if i == 0:
        return float(xv[0])
    x0, x1, s0, s1 = xv[i - 1], xv[i], s[i - 1], s[i]
    frac = (thr - s0) / (s1 - s0)  # s0 misses and s1 hits, so s1 != s0 and 0 < frac <= 1
    return float(min(max(x0 + frac * (x1 - x0), x0), x1))


@dataclass(frozen=True)
class TargetResult:
    """Cost of one run to reach a target, on every x axis it logged (None: not reached or
    axis not available). device_hours = wall_s / 3600 * n_devices."""

    reached: bool
    steps: float | None
    wall_s: float | None
    samples: float | None
    epochs: float | None
    device_hours: float | None
    n_devices: int = 1

    def on_axis(self, x: str) -> float | None:
        """The cost on one of the store's x axes: step, wall_time, samples or epoch."""
        field = {"step": "steps", "wall_time": "wall_s", "samples": "samples",
                 "epoch": "epochs"}.get(x)
        if field is None:
            raise ValueError(f"x must be one of step, wall_time, samples, epoch, got {x!r}")
        return getattr(self, field)


def target_result(
    steps: np.ndarray,
    values: np.ndarray,
    threshold: float,
    *,
    wall_time: np.ndarray | None = None,
    samples: np.ndarray | None = None,
    epochs: np.ndarray | None = None,
    mode: str = "max",
    smoothing: float = 0.0,
    n_devices: int = 1,
) -> TargetResult:
    """time_to_target on each of a run's x axes; `steps` decides `reached`.

    The values are smoothed once; an axis with a NaN at some point skips that point only.
    """
    if isinstance(n_devices, bool) or int(n_devices) != n_devices or n_devices < 1:
        raise ValueError(f"n_devices must be an integer >= 1, got {n_devices!r}")
    smoothed = ema_debiased(as_1d(values, "values"), smoothing)

    def on(axis: np.ndarray | None) -> float | None:
        if axis is None:
            return None
        return time_to_target(axis, smoothed, threshold, mode=mode)

    n_steps = on(steps)
    wall = on(wall_time)
    hours = None if wall is None else wall / 3600.0 * int(n_devices)
    return TargetResult(
        reached=n_steps is not None, steps=n_steps, wall_s=wall, samples=on(samples),
        epochs=on(epochs), device_hours=hours, n_devices=int(n_devices),
    )
