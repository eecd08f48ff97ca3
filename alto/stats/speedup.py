"""Speed-up and metric differences over seeds, with percentile-bootstrap CIs.

Seeds are resampled with replacement within each arm, independently (the arms' seeds are
not paired). Runs that never reached the target are never turned into numbers: they are
counted, and
  * if an arm has no run that reached it, the result is "not reached" with no estimate;
  * if only some runs reached it, the estimate uses the reached runs only and is flagged
    `partial`. This flatters the arm with misses (its slowest runs are the ones left out),
    so read a partial result as optimistic for that arm;
  * with fewer than 2 reached runs in an arm, only the point estimate is given (ci=None,
    `why_no_ci` says why).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ._checks import check_finite, check_fraction
from .targets import TargetResult

Stat = Callable[[np.ndarray, np.ndarray], float]


def bootstrap_ci(
    samples_a: Sequence | np.ndarray,
    samples_b: Sequence | np.ndarray,
    stat: Stat,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of stat(a, b), resampling rows of a and of b independently.

    Each sample set needs >= 2 rows (1-D values, or 2-D with one row per seed so that
    columns measured on the same run stay together). Deterministic for a given seed.
    """
    a, b = np.asarray(samples_a, dtype=np.float64), np.asarray(samples_b, dtype=np.float64)
    for name, arr in (("samples_a", a), ("samples_b", b)):
        if arr.ndim not in (1, 2) or arr.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 samples (rows), got shape {arr.shape}")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    lvl = check_fraction(level, "level", lo_open=True)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.shape[0], size=(int(n_boot), a.shape[0]))
    ib = rng.integers(0, b.shape[0], size=(int(n_boot), b.shape[0]))
    stats = np.array([stat(a[i], b[j]) for i, j in zip(ia, ib)], dtype=np.float64)
    tail = (1.0 - lvl) / 2.0 * 100.0
    lo, hi = np.percentile(stats, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _times(values: Sequence[float | None], field: str) -> tuple[np.ndarray, int]:
    """The reached values (finite, > 0) and the number of runs; None = not reached."""
    if len(values) == 0:
        raise ValueError(f"{field} is empty: give one entry per seed (None = not reached)")
    out = []
    for v in values:
        if v is None:
            continue
        t = check_finite(v, field)
        if t <= 0:
            raise ValueError(
                f"{field} must be > 0, got {v!r} (a target met at x = 0 is trivially met: "
                "choose a harder threshold)"
            )
        out.append(t)
    return np.array(out, dtype=np.float64), len(values)


def _reach(nb_reached: int, nb: int, nc_reached: int, nc: int) -> tuple[str | None, str]:
    """(why there is no estimate or None, note about partial reach or '')."""
    counts = f"baseline {nb_reached}/{nb}, candidate {nc_reached}/{nc} runs reached the target"
    if nb_reached == 0 or nc_reached == 0:
        return f"not reached: {counts}", ""
    if nb_reached < nb or nc_reached < nc:
        return None, (f"partial reach: {counts}; computed on the reached runs only, which "
                      "flatters the arm with misses")
    return None, ""


def _no_ci_reason(nb: int, nc: int) -> str | None:
    small = [f"{arm} has {n}" for arm, n in (("baseline", nb), ("candidate", nc)) if n < 2]
    if not small:
        return None
    return f"point estimate only: {' and '.join(small)} reached run(s); a CI needs >= 2 per arm"


@dataclass(frozen=True)
class SpeedupResult:
    """mean(baseline time) / mean(candidate time); > 1 means the candidate is faster."""

    estimate: float | None
    ci: tuple[float, float] | None
    level: float
    why_no_ci: str | None
    note: str
    n_baseline: int
    n_candidate: int
    reached_baseline: int
    reached_candidate: int
    baseline_mean: float | None
    candidate_mean: float | None

    @property
    def reached(self) -> bool:
        return self.estimate is not None

    @property
    def partial(self) -> bool:
        return self.reached and bool(self.note)

    @property
    def time_saved(self) -> float | None:
        """Share of the baseline's time saved: 1 - 1/speedup (the paper's "29.68%")."""
        return None if self.estimate is None else 1.0 - 1.0 / self.estimate

    @property
    def ci_includes_1(self) -> bool | None:
        return None if self.ci is None else self.ci[0] <= 1.0 <= self.ci[1]


def speedup(
    baseline_times: Sequence[float | None],
    candidate_times: Sequence[float | None],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> SpeedupResult:
    """Speed-up of candidate over baseline from per-seed times to target (None = not reached)."""
    b, nb = _times(baseline_times, "baseline_times")
    c, nc = _times(candidate_times, "candidate_times")
    lvl = check_fraction(level, "level", lo_open=True)
    missing, note = _reach(b.size, nb, c.size, nc)
    if missing:
        return SpeedupResult(None, None, lvl, missing, note, nb, nc, b.size, c.size,
                             float(b.mean()) if b.size else None,
                             float(c.mean()) if c.size else None)
    why = _no_ci_reason(b.size, c.size)
    ci = None if why else bootstrap_ci(b, c, lambda x, y: x.mean() / y.mean(),
                                       n_boot=n_boot, level=lvl, seed=seed)
    return SpeedupResult(float(b.mean() / c.mean()), ci, lvl, why, note, nb, nc, b.size, c.size,
                         float(b.mean()), float(c.mean()))


@dataclass(frozen=True)
class SplitResult:
    """total = fewer_steps x cost_per_step (exactly, up to float rounding).

    fewer_steps = mean(baseline steps) / mean(candidate steps): > 1 when the candidate
    needs fewer steps. cost_per_step = baseline s/step / candidate s/step, each arm's
    s/step being mean(seconds) / mean(steps) (a ratio of means, which makes the product
    exact): < 1 when the candidate's steps are more expensive.
    """

    total: float | None
    total_ci: tuple[float, float] | None
    fewer_steps: float | None
    fewer_steps_ci: tuple[float, float] | None
    cost_per_step: float | None
    cost_per_step_ci: tuple[float, float] | None
    baseline_s_per_step: float | None
    candidate_s_per_step: float | None
    level: float
    why_no_ci: str | None
    note: str
    n_baseline: int
    n_candidate: int
    reached_baseline: int
    reached_candidate: int

    @property
    def reached(self) -> bool:
        return self.total is not None


def _steps_and_seconds(results: Sequence[TargetResult], field: str) -> tuple[np.ndarray, int]:
    if len(results) == 0:
        raise ValueError(f"{field} is empty: give one TargetResult per seed")
    rows = []
    for r in results:
        if not r.reached or r.steps is None or r.wall_s is None:
            continue
        steps, secs = check_finite(r.steps, field), check_finite(r.wall_s, field)
        if steps <= 0 or secs <= 0:
            raise ValueError(f"{field}: steps and wall_s to target must be > 0, got "
                             f"{r.steps!r} steps, {r.wall_s!r} s (choose a harder threshold)")
        rows.append((steps, secs))
    return np.array(rows, dtype=np.float64).reshape(-1, 2), len(results)


def _split_stats(b: np.ndarray, c: np.ndarray) -> tuple[float, float, float]:
    (sb, tb), (sc, tc) = b.mean(axis=0), c.mean(axis=0)
    total, fewer = tb / tc, sb / sc
    return total, fewer, total / fewer


def split_speedup(
    baseline: Sequence[TargetResult],
    candidate: Sequence[TargetResult],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> SplitResult:
    """Decompose the wall-clock speed-up into fewer steps x cost per step (paper Table 18).

    Each run contributes its (steps, wall_s) to target as one row, resampled together.
    """
    b, nb = _steps_and_seconds(baseline, "baseline")
    c, nc = _steps_and_seconds(candidate, "candidate")
    lvl = check_fraction(level, "level", lo_open=True)
    counts = (nb, nc, b.shape[0], c.shape[0])
    missing, note = _reach(b.shape[0], nb, c.shape[0], nc)
    if missing:
        return SplitResult(None, None, None, None, None, None, None, None, lvl, missing, note,
                           *counts)
    total, fewer, cost = _split_stats(b, c)
    why = _no_ci_reason(b.shape[0], c.shape[0])
    cis: list[tuple[float, float] | None] = [None, None, None]
    if why is None:
        cis = [bootstrap_ci(b, c, lambda x, y, k=k: _split_stats(x, y)[k], n_boot=n_boot,
                            level=lvl, seed=seed) for k in range(3)]
    (sb, tb), (sc, tc) = b.mean(axis=0), c.mean(axis=0)
    return SplitResult(float(total), cis[0], float(fewer), cis[1], float(cost), cis[2],
                       float(tb / sb), float(tc / sc), lvl, why, note, *counts)


@dataclass(frozen=True)
class DiffResult:
    """mean(a) - mean(b) in the metric's own units (points for accuracy in %)."""

    estimate: float
    ci: tuple[float, float] | None
    level: float
    why_no_ci: str | None
    n_a: int
    n_b: int

    @property
    def ci_excludes_0(self) -> bool | None:
        return None if self.ci is None else not (self.ci[0] <= 0.0 <= self.ci[1])


def metric_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> DiffResult:
    """Mean difference a - b over seeds (a = candidate, b = baseline) with a bootstrap CI.

    Every value must be finite (a diverged run has no accuracy: decide before calling).
    """
    arrs = []
    for name, vals in (("a", a), ("b", b)):
        if len(vals) == 0:
            raise ValueError(f"{name} is empty: give one value per seed")
        arrs.append(np.array([check_finite(v, name) for v in vals], dtype=np.float64))
    xa, xb = arrs
    lvl = check_fraction(level, "level", lo_open=True)
    small = [f"{n} has {len(x)} value(s)" for n, x in (("a", xa), ("b", xb)) if len(x) < 2]
    why = f"point estimate only: {' and '.join(small)}; a CI needs >= 2 per arm" if small else None
    ci = None if why else bootstrap_ci(xa, xb, lambda x, y: x.mean() - y.mean(),
                                       n_boot=n_boot, level=lvl, seed=seed)
    return DiffResult(float(xa.mean() - xb.mean()), ci, lvl, why, len(xa), len(xb))
