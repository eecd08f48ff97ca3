"""Figures of where an optimizer helps: the sweep map, LR sensitivity and the performance profile.

Data in as plain marks (the pages and the report build them from alto.analysis), figures out.
An interval is drawn as whiskers only when there is one: a calibrated CI as solid whiskers on a
filled marker, a range over seeds on an open marker, no interval as a lone open diamond; a miss
is an x at the edge of the panel, never a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import layout
from .palette import color_for, rgba

SPREAD = 0.035  # candidates at one x are set apart by this share of a log step, so none hides another


@dataclass(frozen=True)
class Mark:
    """One point of the map: an estimate with its interval, or a miss."""

    x: float
    estimate: float | None       # None: nothing reached (see `miss`)
    low: float | None = None
    high: float | None = None
    kind: str = "none"           # "ci", "range" or "none"
    word: str = ""               # the verdict word shown beside it
    miss: str = ""               # for estimate None: who missed, e.g. "alto missed"
    edge: str = "middle"         # where a miss is drawn: "top" (the baseline missed), "bottom" (the
                                 # candidate missed) or "middle" (both, or nothing to compare)
    hover: str = ""


def _offsets(n: int) -> list[float]:
    return [(i - (n - 1) / 2) * SPREAD for i in range(n)]


def _shift(x: float, offset: float, log_x: bool) -> float:
    return x * math.exp(offset) if log_x else x + offset * max(abs(x), 1.0)


def _edges(marks: Sequence[Mark], log_y: bool, reference: float) -> tuple[float, float]:
    """The panel's y range with room above and below for misses."""
    ys = [v for m in marks for v in (m.estimate, m.low, m.high) if v is not None and math.isfinite(v)]
    ys = [v for v in ys if v > 0] if log_y else ys
    lo, hi = min(ys + [reference]), max(ys + [reference])
    if log_y:
        lo, hi = min(lo, reference / 1.5), max(hi, reference * 1.5)
        return lo / 1.6, hi * 1.6
    pad = 0.15 * (hi - lo or 1.0)
    return lo - 2 * pad, hi + 2 * pad


def _panel(fig: go.Figure, row: int, marks: Mapping[str, Sequence[Mark]], *, log_x: bool, log_y: bool,
           reference: float, unit: str, legend: bool, what: str = "") -> None:
    all_marks = [m for ms in marks.values() for m in ms]
    if not all_marks:
        return
    bottom, top = _edges(all_marks, log_y, reference)
    for (name, ms), offset in zip(marks.items(), _offsets(len(marks))):
        color = color_for(name)
        xs = [_shift(m.x, offset, log_x) for m in ms]
        hit = [(x, m) for x, m in zip(xs, ms) if m.estimate is not None]
        if len(hit) > 1:
            fig.add_trace(go.Scatter(x=[x for x, _ in hit], y=[m.estimate for _, m in hit], mode="lines",
                                     line=dict(color=rgba(color, 0.45), width=1.5, dash="dot"), hoverinfo="skip",
                                     showlegend=False), row=row, col=1)
        for kind, symbol, label in (("ci", "circle", "95% CI"), ("range", "circle-open", "range over seeds"),
                                    ("none", "diamond-open", "no interval")):
            group = [(x, m) for x, m in hit if m.kind == kind]
            if not group:
                continue
            with_bars = kind in ("ci", "range")
            fig.add_trace(go.Scatter(
                x=[x for x, _ in group], y=[m.estimate for _, m in group], mode="markers+text",
                name=f"{name}{what} ({label})", legendgroup=name, showlegend=legend,
                text=[m.word for _, m in group], textposition="middle right", textfont=dict(size=10, color=color),
                cliponaxis=False,
                marker=dict(color=color, size=11, symbol=symbol, line=dict(width=2, color=color)),
                error_y=dict(type="data", symmetric=False, visible=with_bars, thickness=2 if kind == "ci" else 1,
                             width=6, color=color,
                             array=[m.high - m.estimate if with_bars else 0 for _, m in group],
                             arrayminus=[m.estimate - m.low if with_bars else 0 for _, m in group]),
                customdata=[m.hover for _, m in group], hovertemplate="%{customdata}<extra></extra>",
            ), row=row, col=1)
        missed = [(x, m) for x, m in zip(xs, ms) if m.estimate is None and m.miss]
        if missed:
            ys = [{"top": top, "bottom": bottom}.get(m.edge, reference) for _, m in missed]
            fig.add_trace(go.Scatter(
                x=[x for x, _ in missed], y=ys, mode="markers+text", name=f"{name}{what} (missed)", legendgroup=name,
                showlegend=legend, text=[m.miss for _, m in missed], textposition="top center",
                textfont=dict(size=10, color=color), cliponaxis=False,
                marker=dict(color=color, size=13, symbol="x-thin-open", line=dict(width=3, color=color)),
                customdata=[m.hover for _, m in missed], hovertemplate="%{customdata}<extra></extra>",
            ), row=row, col=1)
    fig.add_hline(y=reference, line_dash="dash", line_color="#555", row=row, col=1)
    fig.update_yaxes(type="log" if log_y else "linear", title_text=unit,
                     range=[math.log10(bottom), math.log10(top)] if log_y else [bottom, top], row=row, col=1)
    if log_y:
        ticks = log_ticks(bottom, top)
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], row=row, col=1)


def log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks between low and high (a log axis's own minor labels crowd each other)."""
    out = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        out += [m * 10.0 ** exponent for m in (1, 2, 5) if low <= m * 10.0 ** exponent <= high]
    return out


def sweep_map(speedups: Mapping[str, Sequence[Mark]], differences: Mapping[str, Sequence[Mark]], *,
              x_values: Sequence[float], x_label: str, speedup_label: str, difference_label: str, title: str = "",
              log_x: bool = True, margin: tuple[float, float] | None = (0.9, 1.11),
              switches: Sequence[tuple[float, float]] = (), switch_label: str = "") -> go.Figure:
    """Two panels against the swept value: each candidate's speed-up over the baseline (log
    scale, 1 = as fast; `margin` shaded) and its difference in the final metric (0 = the same).
    `switches` are pairs of consecutive swept values between which another setting changed: a
    dotted line marks each, labelled `switch_label`."""
    xs = [float(x) for x in x_values]
    if not xs:
        raise ValueError("x_values must name at least one swept value")
    if log_x and min(xs) <= 0:
        raise ValueError("x_values must be > 0 for a log x axis")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.09, row_heights=[0.56, 0.44],
                        subplot_titles=(speedup_label, difference_label))
    layout(fig, title=title)  # first: it sets every axis, the panels then set their own
    _panel(fig, 1, speedups, log_x=log_x, log_y=True, reference=1.0, unit="speed-up (x)", legend=True)
    _panel(fig, 2, differences, log_x=log_x, log_y=False, reference=0.0, unit="difference", legend=False,
           what=" final difference")
    if margin is not None:  # after the traces: plotly skips a subplot that is still empty
        fig.add_hrect(y0=margin[0], y1=margin[1], fillcolor="#888", opacity=0.18, line_width=0, layer="below",
                      row=1, col=1)
        fig.add_annotation(text=f"no meaningful difference ({margin[0]:g}–{margin[1]:g})", showarrow=False,
                           xref="x domain", x=0, xanchor="left", yref="y", y=math.log10(margin[0]), yanchor="top",
                           font=dict(size=10, color="#666"))  # a log axis places annotations at log10(y)
    for a, b in switches:
        at = math.sqrt(float(a) * float(b)) if log_x else (float(a) + float(b)) / 2
        fig.add_vline(x=at, line_dash="dot", line_color="#b35", line_width=2,
                      annotation_text=switch_label, annotation_position="top", annotation_font_size=10)
    for row in (1, 2):
        fig.update_xaxes(type="log" if log_x else "linear", tickvals=xs, ticktext=[f"{x:g}" for x in xs],
                         row=row, col=1)
    fig.update_xaxes(title_text=x_label, row=2, col=1)
    fig.update_layout(hovermode="closest", height=720, legend=dict(orientation="h", y=-0.12, yanchor="top"),
                      margin=dict(l=70, r=120, t=80, b=120))
    return fig


@dataclass(frozen=True)
class LrArm:
    """One optimizer at one LR: what its runs did."""

    optimizer: str
    lr: float
    finals: tuple[float, ...]            # final validation values of the runs that did not diverge
    diverged: int
    runs: int
    times: tuple[float | None, ...]      # time to target per run (None: missed)
    cost: float | None                   # expected time per success (None: never reached)
    chosen: bool = False


def lr_sensitivity(arms: Sequence[LrArm], *, metric_label: str, time_label: str, title: str = "") -> go.Figure:
    """Left: the final validation metric against the LR per optimizer (line: mean over seeds;
    band: min to max; a diverged LR is an x on the axis with its count). Right: time to target
    against the LR (dots: seeds that reached; line: expected time per success; a LR where no run
    reached is an x). The LR each verdict uses is circled."""
    if not arms:
        raise ValueError("arms must hold at least one (optimizer, LR)")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=(f"final {metric_label}", f"time to target ({time_label})"))
    finals = [f for a in arms for f in a.finals]
    floor = min(finals) - 0.05 * (max(finals) - min(finals) or 1.0) if finals else 0.0
    times = [t for a in arms for t in a.times if t is not None]
    t_floor = (min(times) * 0.8) if times else 1.0
    for name in sorted({a.optimizer for a in arms}):
        color = color_for(name)
        mine = sorted((a for a in arms if a.optimizer == name), key=lambda a: a.lr)
        ok = [a for a in mine if a.finals]
        lrs = [a.lr for a in ok]
        if ok:
            lo = [min(a.finals) for a in ok]
            hi = [max(a.finals) for a in ok]
            fig.add_trace(go.Scatter(x=lrs + lrs[::-1], y=hi + lo[::-1], fill="toself", fillcolor=rgba(color, 0.15),
                                     line=dict(width=0), hoverinfo="skip", legendgroup=name, showlegend=False,
                                     name=f"{name} min–max"), row=1, col=1)
            fig.add_trace(go.Scatter(
                x=lrs, y=[float(np.mean(a.finals)) for a in ok], mode="lines+markers", name=name, legendgroup=name,
                line=dict(color=color, width=2),
                marker=dict(size=[14 if a.chosen else 8 for a in ok], color=color,
                            symbol=["circle-open-dot" if a.chosen else "circle" for a in ok]),
                customdata=[f"{name} lr {a.lr:g}: mean of {len(a.finals)} of {a.runs} runs"
                            + (f" ({a.diverged} diverged, left out)" if a.diverged else "")
                            + (" — the LR the verdict uses" if a.chosen else "") for a in ok],
                hovertemplate="%{customdata}: %{y:.4g}<extra></extra>"), row=1, col=1)
        bad = [a for a in mine if a.diverged]
        if bad:
            fig.add_trace(go.Scatter(
                x=[a.lr for a in bad], y=[floor] * len(bad), mode="markers+text", legendgroup=name,
                name=f"{name} diverged", text=[f"{a.diverged}/{a.runs} diverged" for a in bad],
                textposition="middle right", textfont=dict(size=10, color=color),
                marker=dict(symbol="x-thin-open", size=14, color=color, line=dict(width=3, color=color)),
                hovertemplate="lr %{x:g}: %{text}<extra>" + name + "</extra>"), row=1, col=1)
        dots = [(a.lr, t) for a in mine for t in a.times if t is not None]
        if dots:
            fig.add_trace(go.Scatter(x=[d[0] for d in dots], y=[d[1] for d in dots], mode="markers",
                                     legendgroup=name, showlegend=False, name=f"{name} per seed",
                                     marker=dict(color=rgba(color, 0.5), size=7),
                                     hovertemplate="lr %{x:g}: %{y:.4g}<extra>" + name + " seed</extra>"),
                          row=1, col=2)
        reached = [a for a in mine if a.cost is not None]
        if reached:
            fig.add_trace(go.Scatter(x=[a.lr for a in reached], y=[a.cost for a in reached], mode="lines+markers",
                                     legendgroup=name, showlegend=False, name=f"{name} per success",
                                     line=dict(color=color, width=2),
                                     marker=dict(size=[14 if a.chosen else 8 for a in reached], color=color,
                                                 symbol=["circle-open-dot" if a.chosen else "circle"
                                                         for a in reached]),
                                     hovertemplate="lr %{x:g}: %{y:.4g} per success<extra>" + name + "</extra>"),
                          row=1, col=2)
        never = [a for a in mine if a.cost is None]
        if never:
            fig.add_trace(go.Scatter(x=[a.lr for a in never], y=[t_floor] * len(never), mode="markers+text",
                                     legendgroup=name, showlegend=False, name=f"{name} never reached",
                                     text=["missed"] * len(never), textposition="top center",
                                     textfont=dict(size=10, color=color),
                                     marker=dict(symbol="x-thin-open", size=14, color=color,
                                                 line=dict(width=3, color=color)),
                                     hovertemplate="lr %{x:g}: no run reached the target<extra>" + name + "</extra>"),
                          row=1, col=2)
    layout(fig, title=title)
    fig.update_xaxes(type="log", title_text="learning rate")
    fig.update_yaxes(title_text=metric_label, row=1, col=1)
    fig.update_yaxes(title_text=time_label, type="log", row=1, col=2)
    if times:
        ticks = log_ticks(t_floor / 1.5, max(times) * 1.5)
        fig.update_yaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], row=1, col=2)
    fig.update_layout(hovermode="closest", height=480, legend=dict(orientation="h", y=-0.18, yanchor="top"),
                      margin=dict(l=70, r=30, t=80, b=90))
    return fig


def performance_profile(steps: Mapping[str, Sequence[tuple[float, float]]], areas: Mapping[str, float], *,
                        tau_max: float, title: str = "") -> go.Figure:
    """rho(tau) per optimizer as a step function on [1, tau_max], its area in the legend."""
    fig = go.Figure()
    for name, points in steps.items():
        taus = [p[0] for p in points]
        rhos = [p[1] for p in points]
        fig.add_trace(go.Scatter(x=taus, y=rhos, mode="lines", line_shape="hv", name=f"{name} (area {areas[name]:.2f})",
                                 line=dict(color=color_for(name), width=3),
                                 hovertemplate="τ %{x:.3g}: %{y:.0%} of workloads<extra>" + name + "</extra>"))
    layout(fig, title=title, x_label="τ: within this factor of the fastest optimizer's cost",
           y_label="share of workloads")
    fig.update_xaxes(range=[1, tau_max])
    fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    fig.update_layout(hovermode="closest")
    return fig
