"""Numbers as people read them, one formatter per kind of number.

Missing values (None, NaN, ±inf) read "–" in tables and "-" where a duration or an ROI figure
is unknown.
"""

from __future__ import annotations

import math
from alto.analysis.savings import Span
from alto.stats.speedup import DiffResult, SpeedupResult
from alto.stats.verdict import interval_text

MISSING = "–"


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def number(v: float | None, digits: int = 4) -> str:
    """`v` to `digits` significant digits, or "–"."""
    return f"{v:.{digits}g}" if _finite(v) else MISSING


def mean_pm_std(mean: float | None, std: float | None) -> str:
    """"0.9512 ± 0.012": the mean to 4 significant digits and the std to 2; the mean alone
    when there is no std (fewer than two values), "–" when there is no mean."""
    if not _finite(mean):
        return MISSING
    return number(mean) if not _finite(std) else f"{number(mean)} ± {number(std, 2)}"


def speedup(res: SpeedupResult) -> str:
    """"1.31x (5 vs 5 seeds, 95% CI 1.12–1.53)", "0.67x (3 vs 3 seeds, no interval)", or why there
    is no estimate."""
    if res.estimate is None:
        return res.note or "not reached"
    return f"{res.estimate:.2f}x ({interval_text(res)})"


def times(values: tuple[float | None, ...], unit: str) -> str:
    """Per-seed times to target: "25.0, 27.5, miss s"."""
    if not values:
        return MISSING
    return ", ".join("miss" if v is None else f"{v:.3g}" for v in values) + f" {unit}"


def reach(reached: int, runs: int, interval: tuple[float, float]) -> str:
    """"2/3 (95% CI of the rate 0.09–0.99)"."""
    return f"{reached}/{runs} (rate {interval[0]:.2f}–{interval[1]:.2f})"


def is_accuracy(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1].lower() in ("acc", "accuracy", "top1", "top5")


def difference(res: DiffResult, metric: str) -> str:
    """A final-metric difference in the metric's units, accuracies in points:
    "+0.49 points (3 vs 3 seeds, 95% CI -0.70 to +1.40)"."""
    scale, unit = (100.0, " points") if is_accuracy(metric) else (1.0, "")
    bounds = f"{scale * res.low:+.2f} to {scale * res.high:+.2f}"
    kind = f"{round(100 * res.level)}% CI {bounds}" if res.interval_kind == "ci" else f"range {bounds}"
    return f"{scale * res.estimate:+.2f}{unit} ({len(res.a)} vs {len(res.b)} seeds, {kind})"


def duration(seconds: float | None) -> str:
    """"42 s", "3 min 05 s", "2 h 07 min"; "-" for unknown."""
    if not _finite(seconds) or seconds < 0:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def span(value: Span | None, spec: str) -> str:
    """An ROI figure at the speed-up estimate with its range: "1,200 (800 to 1,500)"; the
    estimate alone when the bounds equal it; "-" when there is none."""
    if value is None:
        return "-"
    if value.low == value.high == value.estimate:
        return format(value.estimate, spec)
    lo, hi = sorted((value.low, value.high))
    return f"{format(value.estimate, spec)} ({format(lo, spec)} to {format(hi, spec)})"
