"""Plotly figure builders: data in, `plotly.graph_objects.Figure` out (pages and report).

Every line/marker trace is kept to at most 2,000 points; colours come from `palette`.
"""

from .charts import bar_with_ci, heatmap, seed_dots, sensitivity
from .curves import curves, runs_overlay
from .landscape import contour_with_paths
from .palette import OPTIMIZER_COLORS, color_for
from .sweep import lr_sensitivity, performance_profile, sweep_map

__all__ = [
    "OPTIMIZER_COLORS", "bar_with_ci", "color_for", "contour_with_paths", "curves", "heatmap",
    "lr_sensitivity", "performance_profile", "runs_overlay", "seed_dots", "sensitivity", "sweep_map",
]
