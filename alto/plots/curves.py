"""Learning curves: mean ± std band and min/max envelope per optimizer; single-run overlays."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from alto.stats.downsample import MAX_POINTS, downsample

from ._common import arr, layout
from .palette import color_for, rgba


def _positive(a: np.ndarray) -> np.ndarray:
    return np.where(a > 0, a, np.nan)  # a log axis cannot show values <= 0


def _fill_between(fig: go.Figure, x: np.ndarray, upper: np.ndarray, lower: np.ndarray, *,
                  name: str, group: str, fill: str) -> None:
    """Two invisible lines and the area between them (one legend group with the mean)."""
    common = dict(x=x, mode="lines", line=dict(width=0), legendgroup=group, showlegend=False,
                  hoverinfo="skip")
    fig.add_trace(go.Scatter(y=upper, name=f"{name} upper", **common))
    fig.add_trace(go.Scatter(y=lower, name=name, fill="tonexty", fillcolor=fill, **common))


def curves(
    groups: dict[str, dict],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    log_y: bool = False,
    show_band: bool = True,
    show_envelope: bool = True,
) -> go.Figure:
    """One mean line per optimizer (named by it), with a ±1 std band and a min-max envelope.

    `groups` maps a name to {"grid", "mean"} and optionally "std", "min", "max", "n" (as
    from alto.analysis.experiment.grouped_series). Per optimizer the traces are, in order:
    envelope upper + "<name> min-max", band upper + "<name> ±1 std", then the mean "<name>".
    """
    fig = go.Figure()
    for name, g in groups.items():
        for need in ("grid", "mean"):
            if need not in g:
                raise ValueError(f"groups[{name!r}] has no {need!r}")
        keys = [k for k in ("grid", "mean", "std", "min", "max", "n") if k in g]
        data = dict(zip(keys, downsample(*(arr(g[k], f"groups[{name!r}][{k!r}]") for k in keys),
                                         max_points=MAX_POINTS)))
        x, mean = data["grid"], data["mean"]
        clean = _positive if log_y else (lambda a: a)
        color = color_for(name)
        if show_envelope and "min" in data and "max" in data:
            _fill_between(fig, x, clean(data["max"]), clean(data["min"]),
                          name=f"{name} min-max", group=name, fill=rgba(color, 0.08))
        if show_band and "std" in data:
            _fill_between(fig, x, clean(mean + data["std"]), clean(mean - data["std"]),
                          name=f"{name} ±1 std", group=name, fill=rgba(color, 0.22))
        n = data.get("n", np.full(x.shape, np.nan))
        fig.add_trace(go.Scatter(
            x=x, y=clean(mean), mode="lines", name=name, legendgroup=name,
            line=dict(color=color, width=2), customdata=n,
            hovertemplate=f"{name}: %{{y:.4g}} (n=%{{customdata:.0f}})<extra></extra>",
        ))
    return layout(fig, title=title, x_label=x_label, y_label=y_label, log_y=log_y)


def runs_overlay(
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    log_y: bool = False,
) -> go.Figure:
    """One line per run, coloured by the optimizer its name starts with ("alto seed 1")."""
    fig = go.Figure()
    for name, (x, y) in series.items():
        xa, ya = arr(x, f"series[{name!r}] x"), arr(y, f"series[{name!r}] y")
        if xa.shape != ya.shape:
            raise ValueError(f"series[{name!r}]: x has {xa.size} points but y has {ya.size}")
        xa, ya = downsample(xa, ya, max_points=MAX_POINTS)
        fig.add_trace(go.Scatter(x=xa, y=_positive(ya) if log_y else ya, mode="lines",
                                 name=name, line=dict(color=color_for(name), width=1.5)))
    return layout(fig, title=title, x_label=x_label, y_label=y_label, log_y=log_y)
