"""Time to target: the first x at which a metric's raw evaluated series crosses a threshold.

The series is never smoothed first: a display smoothing would move the answer (a smoothing of 0.9
once turned a 1.154x speed-up into 1.079x), so Compare, ROI, the report and the CLI all search
the values as logged.

Interpolation choice: when the metric crosses the threshold between two logged points, the
crossing x is interpolated linearly between them, i.e. we assume the metric moved linearly
between two evaluations. Taking the later evaluation instead would overstate the time by up to
one evaluation interval, and that bias differs between optimizers whose steps take different
times. When the very first usable point already satisfies the threshold, that point's x is
returned. Only points where both x and the value are finite are used, so the answer always lies
within the data's x range.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_1d, check_choice, check_finite, same_length
from .metrics import MODES


def time_to_target(x: np.ndarray, values: np.ndarray, threshold: float, *, mode: str = "max") -> float | None:
    """First x where the metric reaches `threshold`; None if it never does.

    mode "max": reached when value >= threshold (accuracy); "min": value <= threshold
    (loss, perplexity). x must be non-decreasing over the usable points (ValueError naming x
    otherwise).
    """
    xv, v = as_1d(x, "x"), as_1d(values, "values")
    same_length(xv, v, "x", "values")
    thr = check_finite(threshold, "threshold")
    check_choice(mode, "mode", MODES)
    keep = np.isfinite(xv) & np.isfinite(v)
    xv, v = xv[keep], v[keep]
    if xv.size and np.any(np.diff(xv) < 0):
        raise ValueError("x must be non-decreasing (sorted in time)")
    hit = v >= thr if mode == "max" else v <= thr
    if not hit.any():
        return None
    i = int(np.argmax(hit))
    if i == 0:
        return float(xv[0])
    x0, x1, v0, v1 = xv[i - 1], xv[i], v[i - 1], v[i]
    frac = (thr - v0) / (v1 - v0)  # v0 misses and v1 hits, so v1 != v0 and 0 < frac <= 1
    return float(min(max(x0 + frac * (x1 - x0), x0), x1))
