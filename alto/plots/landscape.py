"""Contour of a 2-D loss surface with optimizer paths, animated over steps by a slider."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from alto.stats.downsample import MAX_POINTS, downsample_indices

from ._common import layout
from .charts import bar_with_ci
from .curves import runs_overlay
from .palette import color_for


def _axes(X: np.ndarray, Y: np.ndarray, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim == 2:  # meshgrid (indexing="xy"): rows share y, columns share x
        X = X[0, :]
    if Y.ndim == 2:
        Y = Y[:, 0]
    if X.ndim != 1 or Y.ndim != 1:
        raise ValueError("X and Y must be 1-D axes or 2-D meshgrids")
    if Z.shape != (Y.size, X.size):
        raise ValueError(f"Z must have shape (len(Y), len(X)) = ({Y.size}, {X.size}), "
                         f"got {Z.shape}")
    return X, Y


def _path_traces(name: str, xy: np.ndarray) -> list[go.Scatter]:
    color = color_for(name)
    head = xy[-1:] if len(xy) else xy
    return [
        go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="lines", name=name, legendgroup=name,
                   line=dict(color=color, width=2)),
        go.Scatter(x=head[:, 0], y=head[:, 1], mode="markers", name=f"{name} now",
                   legendgroup=name, showlegend=False,
                   marker=dict(color=color, size=10, line=dict(color="white", width=1))),
    ]


def contour_with_paths(
    X: np.ndarray,
    Y: np.ndarray,
    Z: np.ndarray,
    paths: dict[str, np.ndarray],
    title: str = "",
    *,
    n_frames: int = 30,
    frame_points: int = 300,
    log_z: bool = False,
    z_floor: float = 1e-12,
) -> go.Figure:
    """Contour of Z over (X, Y) and, per path (name -> array of shape (steps, 2)), a line
    and a marker at its head. The slider/play button animate the paths over steps; the
    figure opens at the last step.

    The still figure draws each path with <= 2,000 points; animation frames draw it with
    <= frame_points points (plus the exact head), which keeps the figure small (about
    0.5 MB for 4 paths x 30 frames). log_z draws log10(Z + z_floor) (for surfaces with a
    zero-loss valley).
    """
    Z = np.asarray(Z, dtype=np.float64)
    xs, ys = _axes(X, Y, Z)
    if n_frames < 1 or frame_points < 1:
        raise ValueError(f"n_frames and frame_points must be >= 1, got {n_frames}, "
                         f"{frame_points}")
    full: dict[str, np.ndarray] = {}
    for name, p in paths.items():
        p = np.asarray(p, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"paths[{name!r}] must have shape (steps, 2), got {p.shape}")
        full[name] = p
    z = np.log10(np.maximum(Z, 0) + z_floor) if log_z else Z
    fig = go.Figure(go.Contour(x=xs, y=ys, z=z, colorscale="Greys", ncontours=40,
                               showscale=True, name="log10 f" if log_z else "f",
                               colorbar=dict(title=dict(text="log10 f" if log_z else "f"))))
    for name, p in full.items():
        fig.add_traces(_path_traces(name, p[downsample_indices(len(p), MAX_POINTS)]))

    last = max((len(p) for p in full.values()), default=0) - 1
    if last >= 0:
        steps = np.unique(np.linspace(0, last, n_frames).round().astype(np.int64))
        coarse = {name: downsample_indices(len(p), frame_points) for name, p in full.items()}

        def upto(name: str, t: int) -> np.ndarray:
            p, idx = full[name], coarse[name]
            head = min(t, len(p) - 1)
            keep = idx[idx < head]
            return p[np.append(keep, head)] if len(p) else p

        fig.frames = [
            go.Frame(name=str(t), traces=list(range(1, 1 + 2 * len(full))), data=[
                tr for name in full for tr in _path_traces(name, upto(name, t))])
            for t in steps
        ]
        anim = dict(mode="immediate", frame=dict(duration=0, redraw=False),
                    transition=dict(duration=0))
        fig.update_layout(
            sliders=[dict(active=len(steps) - 1, currentvalue=dict(prefix="step "),
                          pad=dict(t=40), steps=[
                              dict(method="animate", label=str(t), args=[[str(t)], anim])
                              for t in steps])],
            updatemenus=[dict(type="buttons", showactive=False, x=0, y=0, xanchor="right",
                              yanchor="top", pad=dict(t=40, r=10), buttons=[
                                  dict(label="▶", method="animate", args=[None, dict(
                                      anim, frame=dict(duration=80, redraw=False),
                                      fromcurrent=True)]),
                                  dict(label="❚❚", method="animate", args=[[None], anim]),
                              ])],
        )
    fig = layout(fig, title=title, x_label="x", y_label="y")
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def explorer_figures(ls, runs: dict, grid_arrays: tuple) -> dict[str, go.Figure | None]:
    """The landscape page's figures from its trajectories: the surface (contour with paths and
    an animation slider, or the 1-D curve with visited points), loss and ‖a‖ over steps, and
    the distance along the valley (2-D) or the position over steps (1-D).

    `ls` is an alto.probes.landscape.Landscape, `runs` maps a label to its Trajectory and
    `grid_arrays` is what alto.probes.landscape.grid returned for `ls`.
    """
    paths = {k: t.positions[np.isfinite(t.positions).all(axis=1)] for k, t in runs.items()}
    if ls.dim == 2:
        X, Y, Z = grid_arrays
        main = contour_with_paths(X, Y, Z, paths, ls.title, log_z=True, z_floor=1e-8)
        # a light surface with faint contour lines, so the coloured paths stand out
        main.data[0].update(colorscale=[[0, "#ffffff"], [0.6, "#e4e4e4"], [1, "#9c9c9c"]],
                            line=dict(width=0.5, color="rgba(0, 0, 0, 0.25)"))
        main.update_layout(height=640)
        if ls.valley_curve is not None:
            curve = ls.valley_curve(np.linspace(0, 1, 400))
            main.add_trace(go.Scatter(x=curve[:, 0], y=curve[:, 1], mode="lines", name="valley floor",
                                      line=dict(color="#999", dash="dot", width=1), hoverinfo="skip"))
        if ls.minima:
            m = np.array(ls.minima)
            main.add_trace(go.Scatter(x=m[:, 0], y=m[:, 1], mode="markers", name="minima",
                                      marker=dict(symbol="x", size=9, color="black")))
        main.update_xaxes(range=list(ls.bounds[0]))
        main.update_yaxes(range=list(ls.bounds[1]))
    else:
        x, _, z = grid_arrays
        main = runs_overlay({"f(x)": (x, z)}, title=ls.title, x_label="x", y_label="f(x)")
        main.data[0].line.color = "#555"
        for label, t in runs.items():
            keep = downsample_indices(len(paths[label]), 300)
            px = paths[label][keep, 0]
            main.add_trace(go.Scatter(x=px, y=t.losses[keep], mode="markers", name=f"{label} visited",
                                      marker=dict(color=color_for(label), size=5, opacity=0.35)))
            main.add_trace(go.Scatter(x=px[-1:], y=t.losses[keep][-1:], mode="markers", name=f"{label} end",
                                      marker=dict(color=color_for(label), size=13, line=dict(color="white", width=1))))
        main.update_layout(hovermode="closest")
    steps_x = {k: np.arange(len(t.losses)) for k, t in runs.items()}
    losses = np.concatenate([t.losses for t in runs.values()])
    a_norms = {k: (steps_x[k][1:], t.a_norms) for k, t in runs.items() if np.isfinite(t.a_norms).any()}
    figures = {"main": main,
               "loss": runs_overlay({k: (steps_x[k], t.losses) for k, t in runs.items()}, title="Loss",
                                    x_label="step", y_label="f", log_y=bool(np.nanmin(losses) >= 0)),
               "a": runs_overlay(a_norms, title="‖a‖ (E's history)", x_label="step", y_label="‖a‖",
                                 log_y=True) if a_norms else None}
    if ls.dim == 1:
        figures["position"] = runs_overlay({k: (steps_x[k], t.positions[:, 0]) for k, t in runs.items()},
                                           title="Position over steps", x_label="step", y_label="x")
    else:
        labels = list(runs)
        figures["valley"] = bar_with_ci(labels, [runs[k].valley_arc_length for k in labels],
                                        [None] * len(labels), [None] * len(labels),
                                        title="Distance along the valley" if ls.valley_curve
                                        else f"Distance where f < {ls.valley_tol:g}", y_label="distance")
    for key in ("loss", "a", "position", "valley"):
        if figures.get(key) is not None:
            figures[key].update_layout(showlegend=False)  # colours as in the main plot
    return figures
