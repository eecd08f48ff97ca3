"""Put several runs on one x grid and summarise them per grid point."""

from __future__ import annotations

import numpy as np

from ._checks import as_1d, same_length


def align_runs(
    xs: list[np.ndarray], ys: list[np.ndarray], grid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate each run linearly onto a shared grid; returns (grid, matrix runs x grid).

    Points with a non-finite x or y are dropped first (a NaN gap is bridged; a run
    contributes only where it has finite values). Outside a run's own x range its row is
    NaN: nothing is extrapolated. The default grid is the sorted union of all finite x.
    """
    if len(xs) != len(ys):
        raise ValueError(f"ys has {len(ys)} runs but xs has {len(xs)}")
    clean = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        x, y = as_1d(x, f"xs[{i}]"), as_1d(y, f"ys[{i}]")
        same_length(x, y, f"xs[{i}]", f"ys[{i}]")
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        order = np.argsort(x, kind="stable")
        clean.append((x[order], y[order]))
    if grid is None:
        grid = np.unique(np.concatenate([x for x, _ in clean])) if clean else np.empty(0)
    else:
        grid = as_1d(grid, "grid")
    matrix = np.full((len(clean), grid.shape[0]), np.nan)
    for i, (x, y) in enumerate(clean):
        if x.size == 0:
            continue
        inside = (grid >= x[0]) & (grid <= x[-1])
        matrix[i, inside] = np.interp(grid[inside], x, y)
    return grid, matrix


def band(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per column of a runs x grid matrix: mean, std (ddof=1), min, max and n (NaN-aware).

    n counts non-NaN values; mean/min/max are NaN where n == 0 and std where n < 2.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D (runs x grid), got shape {m.shape}")
    ok = ~np.isnan(m)
    n = ok.sum(axis=0)
    filled = np.where(ok, m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, filled.sum(axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(ok, m - mean, 0.0)
        var = (dev * dev).sum(axis=0) / np.maximum(n - 1, 1)
    std = np.where(n >= 2, np.sqrt(var), np.nan)
    vmin = np.where(n > 0, np.where(ok, m, np.inf).min(axis=0, initial=np.inf), np.nan)
    vmax = np.where(n > 0, np.where(ok, m, -np.inf).max(axis=0, initial=-np.inf), np.nan)
    return {"mean": mean, "std": std, "min": vmin, "max": vmax, "n": n}
