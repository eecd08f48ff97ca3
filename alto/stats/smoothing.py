"""TensorBoard-style debiased exponential moving average."""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_1d, check_fraction


def ema_debiased(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased EMA: s_k = m_k / (1 - weight**c_k), m_k = weight*m_{k-1} + (1-weight)*v_k.

    c_k counts the finite values seen so far, so the first output equals the first
    finite input (no pull towards 0). `weight` is in [0, 1); 0 returns the input.
    Non-finite inputs (NaN, ±inf) are skipped: the output there is the input itself and
    the average carries on from the last finite value. Apply before downsampling.
    """
    v = as_1d(values, "values")
    w = check_fraction(weight, "weight")
    if w == 0.0:
        return v.copy()
    out = v.copy()
    m, count, isfinite = 0.0, 0, math.isfinite
    for i, x in enumerate(v.tolist()):
        if not isfinite(x):
            continue
        m = w * m + (1.0 - w) * x
        count += 1
        out[i] = m / (1.0 - w**count)
    return out
