"""Put several runs on one x grid and summarise them per grid point."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from ._checks import as_1d, same_length
from .downsample import MAX_POINTS, downsample
from .smoothing import ema_debiased


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


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of the finite values; None, NaN and ±inf are left out.

    NaN for the mean when no value is left, for the std when fewer than two are.
    """
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    mean = float(v.mean()) if v.size else math.nan
    return mean, float(v.std(ddof=1)) if v.size >= 2 else math.nan


def group_labels(runs: Sequence[dict]) -> dict[int, str]:
    """run id -> its group: the optimizer, or "name (lr=...)" when the runs hold several
    LRs of that optimizer (the labels grouped_series uses)."""
    lrs: dict[str, set[float]] = defaultdict(set)
    for r in runs:
        lrs[r["optimizer"]].add(float(r["lr"]))
    return {int(r["id"]): r["optimizer"] if len(lrs[r["optimizer"]]) == 1
            else f"{r['optimizer']} (lr={float(r['lr']):g})" for r in runs}


def group_runs(
    runs: Sequence[dict],
    data: Mapping[int, Mapping[str, np.ndarray]],
    *,
    smoothing: float = 0.0,
    first_step: int | None = None,
    max_points: int = MAX_POINTS,
) -> dict[str, dict]:
    """Per-run series grouped by optimizer and summarised on one grid.

    `data` maps run id -> {"step", "x", "value"} (as Store.series returns). Each run is
    smoothed (debiased EMA) at the resolution given, then cut to steps >= first_step, then
    downsampled to max_points; so pass full-resolution data when smoothing. Returns
    {label: {"grid", "mean", "std", "min", "max", "n", "runs"}} like grouped_series, with
    "runs" = {run_id: {"x", "y", "seed", "lr"}}; runs without data and empty groups are
    left out.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    labels = group_labels(runs)
    members: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        members[labels[int(r["id"])]].append(r)
    out = {}
    for label, rs in members.items():
        per_run = {}
        for r in rs:
            d = data.get(int(r["id"]))
            if d is None or len(d["x"]) == 0:
                continue
            xs = np.asarray(d["x"], dtype=np.float64)
            ys = np.asarray(d["value"], dtype=np.float64)
            if smoothing:
                ys = ema_debiased(ys, smoothing)
            if first_step is not None:
                keep = np.asarray(d["step"]) >= first_step
                xs, ys = xs[keep], ys[keep]
            if xs.size == 0:
                continue
            xs, ys = downsample(xs, ys, max_points=max_points)
            per_run[int(r["id"])] = {"x": xs, "y": ys, "seed": r["seed"], "lr": float(r["lr"])}
        if not per_run:
            continue
        grid, matrix = align_runs([v["x"] for v in per_run.values()],
                                  [v["y"] for v in per_run.values()])
        stats = band(matrix)
        arrays = downsample(grid, *(stats[k] for k in ("mean", "std", "min", "max", "n")),
                            max_points=max_points)
        out[label] = dict(zip(("grid", "mean", "std", "min", "max", "n"), arrays))
        out[label]["runs"] = per_run
    return out
