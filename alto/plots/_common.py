"""Helpers shared by the figure builders."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def arr(values: object, field: str) -> np.ndarray:
    """A 1-D float array, ValueError naming `field` otherwise."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{field} must be 1-D, got shape {a.shape}")
    return a


def layout(fig: go.Figure, *, title: str, x_label: str = "", y_label: str = "",
           log_y: bool = False) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", hovermode="x unified",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      margin=dict(l=60, r=20, t=70, b=50))
    fig.update_xaxes(title_text=x_label)
    fig.update_yaxes(title_text=y_label, type="log" if log_y else "linear")
    return fig
