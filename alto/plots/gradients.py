"""Per-layer trust ratios over steps: a heatmap with layers as categories and a log colour
scale labelled in real values (the Gradients page and the report)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from alto.stats.downsample import MAX_POINTS, downsample_indices

from ._common import arr, layout


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 values between lo and hi (both > 0) for a log colour bar; at least lo and hi."""
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return []
    lo, hi = min(lo, hi), max(lo, hi)
    ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0**e <= hi]
    if len(ticks) < 2:
        ticks = sorted({lo, hi} | set(ticks))
    return ticks


def layer_heatmap(
    matrix: np.ndarray,
    steps: np.ndarray,
    layers: Sequence[str],
    title: str = "",
    *,
    value_label: str = "trust ratio",
) -> go.Figure:
    """Rows = layers (first layer on top), columns = steps (at most 2,000 kept).

    The colour is log10 of the value (values <= 0 or NaN are gaps) but the colour bar and
    the hover show the values themselves.
    """
    z = np.asarray(matrix, dtype=np.float64)
    x = arr(steps, "steps")
    if z.ndim != 2 or z.shape != (len(layers), x.size):
        raise ValueError(f"matrix must have shape (len(layers), len(steps)) = "
                         f"({len(layers)}, {x.size}), got {z.shape}")
    cols = downsample_indices(x.size, MAX_POINTS)
    z, x = z[:, cols], x[cols]
    positive = np.isfinite(z) & (z > 0)
    logz = np.where(positive, np.log10(np.where(positive, z, 1.0)), np.nan)
    ticks = log_ticks(float(z[positive].min()), float(z[positive].max())) if positive.any() else []
    fig = go.Figure(go.Heatmap(
        z=logz, x=x, y=list(layers), customdata=z, colorscale="Viridis",
        colorbar=dict(title=dict(text=value_label), tickvals=[math.log10(t) for t in ticks],
                      ticktext=[f"{t:g}" for t in ticks]),
        hovertemplate=f"%{{y}}<br>step %{{x}}<br>{value_label} %{{customdata:.3g}}<extra></extra>",
    ))
    fig = layout(fig, title=title, x_label="step")
    fig.update_yaxes(type="category", autorange="reversed", title_text="")
    fig.update_layout(hovermode="closest", height=max(280, 120 + 26 * len(layers)))
    return fig
