"""Heatmap of per-layer values over steps, bars with CIs, and the ROI sensitivity curve."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from alto.stats.downsample import MAX_POINTS, downsample, downsample_indices

from ._common import arr, layout
from .palette import color_for


def heatmap(
    matrix: np.ndarray,
    x: np.ndarray,
    y_labels: Sequence[str],
    title: str = "",
    *,
    x_label: str = "step",
    colorbar_title: str = "",
    log_color: bool = False,
) -> go.Figure:
    """Rows = y_labels (e.g. layers), columns = x (steps); at most 2,000 columns are kept.

    log_color shows log10 of the values (values <= 0 become gaps).
    """
    z = np.asarray(matrix, dtype=np.float64)
    xa = arr(x, "x")
    if z.ndim != 2 or z.shape != (len(y_labels), xa.size):
        raise ValueError(f"matrix must have shape (len(y_labels), len(x)) = "
                         f"({len(y_labels)}, {xa.size}), got {z.shape}")
    cols = downsample_indices(xa.size, MAX_POINTS)
    z, xa = z[:, cols], xa[cols]
    if log_color:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(z > 0, np.log10(np.where(z > 0, z, 1.0)), np.nan)
        colorbar_title = f"log10 {colorbar_title}".strip()
    fig = go.Figure(go.Heatmap(z=z, x=xa, y=list(y_labels), colorscale="Viridis",
                               colorbar=dict(title=dict(text=colorbar_title))))
    fig = layout(fig, title=title, x_label=x_label)
    fig.update_yaxes(type="category")  # layer names: the shared layout's linear axis cannot place them
    fig.update_layout(hovermode="closest")
    return fig


def bar_with_ci(
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    title: str = "",
    *,
    y_label: str = "",
    reference: float | None = None,
    reference_label: str = "",
) -> go.Figure:
    """One bar per label in its optimizer's colour, with asymmetric CI whiskers.

    A None/NaN bound draws no whisker (hover says "no CI"). `reference` adds a dashed
    horizontal line, e.g. 1.0 for speed-ups.
    """
    v = arr(values, "values")
    lo = arr([np.nan if b is None else b for b in lows], "lows")
    hi = arr([np.nan if b is None else b for b in highs], "highs")
    if not (len(labels) == v.size == lo.size == hi.size):
        raise ValueError(f"labels, values, lows, highs must have equal length, got "
                         f"{len(labels)}, {v.size}, {lo.size}, {hi.size}")
    has_ci = np.isfinite(lo) & np.isfinite(hi)
    ci_text = [f"[{a:.3g}, {b:.3g}]" if ok else "no CI" for a, b, ok in zip(lo, hi, has_ci)]
    fig = go.Figure(go.Bar(
        x=list(labels), y=v, marker_color=[color_for(str(lab)) for lab in labels],
        error_y=dict(type="data", symmetric=False, array=np.where(has_ci, hi - v, 0.0),
                     arrayminus=np.where(has_ci, v - lo, 0.0), visible=True),
        customdata=ci_text, hovertemplate="%{x}: %{y:.4g} %{customdata}<extra></extra>",
        name=y_label or "value",
    ))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dash", line_color="#555",
                      annotation_text=reference_label)
    fig = layout(fig, title=title, y_label=y_label)
    fig.update_layout(hovermode="closest", showlegend=False)
    return fig


def _at(speedups: np.ndarray, savings: np.ndarray, s: float, field: str) -> float:
    if not speedups[0] <= s <= speedups[-1]:
        raise ValueError(f"{field} speed-up {s} is outside the speedups range "
                         f"[{speedups[0]:.3g}, {speedups[-1]:.3g}] (see alto.analysis.savings.speedup_grid)")
    return float(np.interp(s, speedups, savings))


def sensitivity(
    speedups: np.ndarray,
    savings: np.ndarray,
    measured: tuple[float, float | None, float | None] | None = None,
    paper: float | None = None,
    *,
    title: str = "Annual saving vs speed-up",
    x_label: str = "speed-up (x)",
    y_label: str = "saved per year",
    paper_label: str = "Paper's claim (not measured here)",
) -> go.Figure:
    """Savings over a range of speed-ups, the measured speed-up with its CI as a horizontal
    whisker, and the paper's claimed speed-up as a separate, labelled marker.

    measured = (estimate, low, high); low/high may be None (no CI). Both points must lie
    within the speedups range (ValueError naming measured/paper otherwise).
    """
    s, y = arr(speedups, "speedups"), arr(savings, "savings")
    if s.size != y.size or s.size < 2:
        raise ValueError(f"speedups and savings need equal length >= 2, got {s.size}, {y.size}")
    order = np.argsort(s)
    s, y = downsample(s[order], y[order], max_points=MAX_POINTS)
    fig = go.Figure(go.Scatter(x=s, y=y, mode="lines", name="saving at this speed-up",
                               line=dict(color="#444", width=2)))
    fig.add_hline(y=0, line_color="#999", line_width=1)
    fig.add_vline(x=1.0, line_dash="dot", line_color="#999", annotation_text="break-even (1x)")
    if measured is not None:
        est, lo, hi = measured
        ym = _at(s, y, est, "measured")
        err = None
        name = "measured here (point estimate, no CI)"
        if lo is not None and hi is not None:
            err = dict(type="data", symmetric=False, array=[hi - est], arrayminus=[est - lo])
            name = f"measured here: {est:.2f}x [{lo:.2f}, {hi:.2f}]"
        fig.add_trace(go.Scatter(x=[est], y=[ym], mode="markers", name=name, error_x=err,
                                 marker=dict(color=color_for("alto"), size=12)))
    if paper is not None:
        yp = _at(s, y, paper, "paper")
        fig.add_trace(go.Scatter(
            x=[paper], y=[yp], mode="markers+text", name=paper_label,
            text=[f"paper claim {paper:.2f}x"], textposition="top left",
            marker=dict(symbol="diamond-open", size=14, color="#555", line=dict(width=2)),
        ))
    fig = layout(fig, title=title, x_label=x_label, y_label=y_label)
    fig.update_layout(hovermode="closest")
    return fig


def seed_dots(
    arms: dict[str, list[tuple[float | None, float]]],
    title: str = "",
    *,
    x_label: str = "",
    estimate_lines: dict[str, float] | None = None,
) -> go.Figure:
    """One row per arm, one dot per run at its time to target; a miss is an open cross at the
    time it ran (it reached nothing). `arms` maps a label to [(time or None, spent), ...];
    `estimate_lines` marks each arm's cost per success."""
    fig = go.Figure()
    for label, runs in arms.items():
        color = color_for(label)
        hit = [t for t, _ in runs if t is not None]
        miss = [s for t, s in runs if t is None]
        fig.add_trace(go.Scatter(x=hit, y=[label] * len(hit), mode="markers", name=f"{label} reached",
                                 marker=dict(color=color, size=11, line=dict(width=1, color="white")),
                                 hovertemplate="%{x:.4g}<extra>" + label + "</extra>"))
        if miss:
            fig.add_trace(go.Scatter(x=miss, y=[label] * len(miss), mode="markers", name=f"{label} missed",
                                     marker=dict(color=color, size=12, symbol="x-open"),
                                     hovertemplate="missed after %{x:.4g}<extra>" + label + "</extra>"))
        if estimate_lines and label in estimate_lines:
            fig.add_trace(go.Scatter(x=[estimate_lines[label]] * 2, y=[label, label], mode="markers",
                                     marker=dict(color=color, size=18, symbol="line-ns-open"),
                                     name=f"{label} per success", hovertemplate="per success %{x:.4g}<extra></extra>"))
    fig = layout(fig, title=title, x_label=x_label)
    fig.update_yaxes(type="category")
    fig.update_layout(hovermode="closest", showlegend=False, height=120 + 45 * len(arms))
    return fig
