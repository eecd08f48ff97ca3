"""One colour per optimizer, the same on every page and in the report."""

from __future__ import annotations

import re
import zlib

OPTIMIZER_COLORS: dict[str, str] = {
    "alto": "#d62728",     # red: the paper's optimizer
    "lamb": "#1f77b4",     # blue: the paper's baseline
    "lamb_bc": "#6baed6",  # light blue: Lamb with bias correction (= ALTO with alpha 0)
    "sgd": "#2ca02c",
    "lion": "#9467bd",
    "adam": "#ff7f0e",
    "adamw": "#8c564b",
    "e_sgd": "#17becf",
    "e_adam": "#e377c2",
    "e_adamw": "#bcbd22",
    "gd": "#7f7f7f",
}
# For names outside the table: picked by a stable hash, so a name keeps its colour.
FALLBACK_COLORS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                   "#31a354", "#756bb1", "#636363", "#e6550d")


def canonical(name: str) -> str:
    """Optimizer key of a trace name: "ALTO", "alto (lr=0.01)", "E-SGD", "Lamb+BC" -> table keys."""
    head = re.split(r"[\s(·,:/]", name.strip().lower(), maxsplit=1)[0]
    return head.replace("-", "_").replace("+", "_")


def color_for(name: str) -> str:
    """Hex colour for an optimizer or a trace named after one."""
    key = canonical(name)
    if key in OPTIMIZER_COLORS:
        return OPTIMIZER_COLORS[key]
    return FALLBACK_COLORS[zlib.crc32(key.encode()) % len(FALLBACK_COLORS)]


def rgba(hex_color: str, alpha: float) -> str:
    """"#rrggbb" -> "rgba(r, g, b, alpha)" for translucent fills."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha})"
