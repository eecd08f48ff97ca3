"""Numbers as people read them, one formatter per kind of number.

Missing values (None, NaN, ±inf) read "–" in tables and "-" where a duration or an ROI figure
is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from alto.analysis.savings import Span
from alto.stats.speedup import DiffResult, SpeedupResult

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


def speedup_cell(row: Mapping) -> str:
    """An experiment_table row's speed-up: "2.58× [1.46, 3.96]", "1.2×" (no CI),
    "1× (baseline)", or "–" when there is none."""
    s, lo, hi = row["speedup"], row["speedup_low"], row["speedup_high"]
    if not _finite(s):
        return MISSING
    if row.get("is_baseline"):
        return "1× (baseline)"
    text = f"{s:.3g}×"
    if _finite(lo) and _finite(hi):
        text += f" [{lo:.3g}, {hi:.3g}]"
    return text


def _interval(ci: tuple[float, float] | None, level: float, spec: str) -> str:
    return "" if ci is None else f" [{ci[0]:{spec}}, {ci[1]:{spec}}] ({level:.0%} CI)"


def speedup_result(res: SpeedupResult) -> str:
    """"1.24x [1.11, 1.38] (95% CI) over 2 vs 2 seeds", with " (partial reach)" when some runs
    missed the target; the reason when there is no estimate."""
    if res.estimate is None:
        return res.why_no_ci or "not reached"
    text = f"{res.estimate:.2f}x{_interval(res.ci, res.level, '.2f')}"
    text += f" over {res.reached_baseline} vs {res.reached_candidate} seeds"
    return text + (" (partial reach)" if res.partial else "")


def difference(res: DiffResult, unit: str = "points") -> str:
    """"+3.00 points [+1.00, +5.00] (95% CI) (3 vs 3 seeds)"."""
    return (f"{res.estimate:+.2f} {unit}{_interval(res.ci, res.level, '+.2f')}"
            f" ({res.n_a} vs {res.n_b} seeds)")


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
