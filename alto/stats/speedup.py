"""Speed-ups and metric differences over a handful of seeds, with intervals that mean what they say.

The rules (README, "Honesty rules"; borrowed from MLCommons AlgoPerf and adapted to 2-5 seeds):

* Every run reached the target: speed-up = ratio of the geometric-mean times, with Welch's t
  interval on log times (Welch-Satterthwaite degrees of freedom). That interval is a "ci": a
  simulation kept in the test suite shows it covers the true speed-up at least 93% of the time
  (nominal 95%) at 2, 3 and 5 seeds per arm, for log-time spreads of 0.1 and 0.3, equal or not.
  With a single run in an arm no interval is calibrated: the range of the pairwise ratios is
  shown and called a "range".
* Some run missed: a miss costs the time it ran. An arm's cost is its expected time per success,
  (time spent by all its runs, misses included) / (runs that reached), and the speed-up is the
  ratio of the two costs. No interval is calibrated for that ("none"); the reach counts carry an
  exact Clopper-Pearson interval instead (3/3 only proves a rate of at least 0.29).
* An arm with no success has no cost: "not reached".
* Probability of improvement: the chance that a candidate run beats a baseline run (a miss loses
  to any reach; ties count half), from 4 seeds per arm up, with Newcombe's score interval for
  this statistic using a t quantile on m + n - 2 degrees of freedom (also checked by the
  simulation; below 4 seeds per arm no valid 95% interval can exclude 0.5, so none is given).
* Seeds needed: per arm, to detect a given speed-up at 80% power with the interval above, at
  the spread of log times just measured; `welch_power` is the chance at a given number of seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from ._checks import check_finite, check_fraction

INTERVAL_KINDS = ("ci", "range", "none")
MIN_SEEDS_FOR_P_IMPROVEMENT = 4


# ---------------------------------------------------------------------------------- inputs

def _times(values: Sequence[float | None], field: str) -> list[float | None]:
    """Per-run times to target (None = not reached): finite and > 0, at least one run."""
    if len(values) == 0:
        raise ValueError(f"{field} is empty: give one entry per seed (None = not reached)")
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        t = check_finite(v, field)
        if t <= 0:
            raise ValueError(f"{field} must be > 0, got {v!r} (a target met at x = 0 is trivially met: "
                             "choose a harder threshold)")
        out.append(t)
    return out


def _spent(values: Sequence[float] | None, times: list[float | None], field: str) -> list[float] | None:
    """Per-run time spent in total (what a miss costs); a reached run costs its time to target."""
    if values is None:
        return None
    if len(values) != len(times):
        raise ValueError(f"{field} has {len(values)} entries but there are {len(times)} runs")
    out = []
    for v, t in zip(values, times):
        s = check_finite(v, field)
        if s < 0:
            raise ValueError(f"{field} must be >= 0, got {v!r}")
        out.append(t if t is not None else s)
    return out


# -------------------------------------------------------------------------------- intervals

def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for a success rate (e.g. 3 of 3 runs reached: [0.29, 1])."""
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    alpha = 1 - check_fraction(level, "level", lo_open=True)
    lo = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    hi = 1.0 if successes == trials else float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return lo, hi


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Welch's t interval for mean(a) - mean(b): (low, high, degrees of freedom). >= 2 values each."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se2 = va + vb
    diff = float(a.mean() - b.mean())
    if se2 == 0:
        return diff, diff, math.inf
    df = se2 ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(se2)
    return diff - half, diff + half, float(df)


def _wins(baseline: list[float | None], candidate: list[float | None]) -> float:
    """Share of (baseline run, candidate run) pairs the candidate wins: faster, or reached
    where the baseline missed; ties and double misses count half."""
    total = 0.0
    for b in baseline:
        for c in candidate:
            if b is None and c is None:
                total += 0.5
            elif b is None or c is None:
                total += 1.0 if b is None else 0.0
            else:
                total += 1.0 if c < b else 0.5 if c == b else 0.0
    return total / (len(baseline) * len(candidate))


def improvement_interval(p: float, m: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's score interval (2006, method 5) for P(candidate beats baseline) from m and n
    runs, with a t quantile on m + n - 2 degrees of freedom in place of the normal one."""
    q = float(stats.t.ppf(0.5 + level / 2, m + n - 2))
    half_n = (m + n) / 2 - 1

    def excess(t: float) -> float:  # (p - t)^2 - q^2 Var(t); the bounds are its roots
        var = t * (1 - t) * (1 + (half_n - 1) * (1 - t) / (2 - t) + (half_n - 1) * t / (1 + t)) / (m * n)
        return (p - t) ** 2 - q * q * var

    tiny = 1e-12
    lo = 0.0 if p <= 0 or excess(0.0) <= 0 else optimize.brentq(excess, 0.0, min(p, 1 - tiny))
    hi = 1.0 if p >= 1 or excess(1.0) <= 0 else optimize.brentq(excess, max(p, tiny), 1.0)
    return float(lo), float(hi)


def seeds_needed(speedup: float, log_sd: float, *, power: float = 0.8, level: float = 0.95,
                 max_seeds: int = 1000) -> int | None:
    """Seeds per arm for the Welch interval on log times to exclude 1 with probability `power`
    when the true speed-up is `speedup` and both arms' log times spread by `log_sd`.
    None when more than max_seeds would be needed (or the spread is unknown)."""
    if not (math.isfinite(log_sd) and log_sd > 0) or speedup <= 0 or speedup == 1:
        return None
    effect = abs(math.log(speedup))
    for n in range(2, max_seeds + 1):
        df = 2 * n - 2
        crit = stats.t.ppf(0.5 + level / 2, df)
        ncp = effect / (log_sd * math.sqrt(2 / n))
        if stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp) >= power:
            return n
    return None


def welch_power(speedup: float, log_sd: float, seeds: int, *, level: float = 0.95, trials: int = 4000,
                seed: int = 0) -> float:
    """Chance that the Welch interval on log times from `seeds` runs per arm (log times spread by
    `log_sd` in both) excludes 1 when the true speed-up is `speedup`, by simulation with a fixed
    seed. Unlike the noncentral-t formula behind `seeds_needed` it holds at 2-3 seeds, where
    Welch's degrees of freedom fall towards 1."""
    if seeds < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    b = rng.normal(0.0, log_sd, (trials, seeds))
    c = rng.normal(-math.log(speedup), log_sd, (trials, seeds))
    vb, vc = b.var(axis=1, ddof=1) / seeds, c.var(axis=1, ddof=1) / seeds
    se2 = vb + vc
    df = se2 ** 2 / ((vb ** 2 + vc ** 2) / (seeds - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * np.sqrt(se2)
    diff = b.mean(axis=1) - c.mean(axis=1)
    return float(np.mean(np.abs(diff) > half))


# --------------------------------------------------------------------------------- results

@dataclass(frozen=True)
class SpeedupResult:
    """Speed-up of a candidate over a baseline: > 1 means the candidate gets there faster.

    `interval_kind` says what (low, high) is: "ci" (calibrated), "range" (min to max over pairs of
    runs, no coverage claimed) or "none". `ci` is (low, high) only for a "ci".
    """

    estimate: float | None
    low: float | None
    high: float | None
    interval_kind: str
    level: float
    method: str
    note: str
    baseline_times: tuple[float | None, ...]
    candidate_times: tuple[float | None, ...]
    baseline_cost: float | None            # expected time per success (mean time when all reached)
    candidate_cost: float | None
    reach_baseline: tuple[float, float]    # Clopper-Pearson interval of the reach rate
    reach_candidate: tuple[float, float]
    p_improvement: float | None
    p_improvement_interval: tuple[float, float] | None
    log_sd: float | None                   # pooled spread of log times (reached runs)

    @property
    def n_baseline(self) -> int:
        return len(self.baseline_times)

    @property
    def n_candidate(self) -> int:
        return len(self.candidate_times)

    @property
    def reached_baseline(self) -> int:
        return sum(t is not None for t in self.baseline_times)

    @property
    def reached_candidate(self) -> int:
        return sum(t is not None for t in self.candidate_times)

    @property
    def reached(self) -> bool:
        return self.estimate is not None

    @property
    def partial(self) -> bool:
        """Some run missed while both arms reached at least once."""
        return self.reached and (self.reached_baseline < self.n_baseline
                                 or self.reached_candidate < self.n_candidate)

    @property
    def ci(self) -> tuple[float, float] | None:
        return (self.low, self.high) if self.interval_kind == "ci" else None

    @property
    def time_saved(self) -> float | None:
        """Share of the baseline's time saved: 1 - 1/speed-up (the paper's "29.68%")."""
        return None if self.estimate is None else 1.0 - 1.0 / self.estimate

    def seeds_needed(self, speedup: float = 1.2, power: float = 0.8) -> int | None:
        """Seeds per arm that would resolve `speedup` at the spread measured here."""
        return None if self.log_sd is None else seeds_needed(speedup, self.log_sd, power=power, level=self.level)


def speedup(
    baseline_times: Sequence[float | None],
    candidate_times: Sequence[float | None],
    *,
    baseline_spent: Sequence[float] | None = None,
    candidate_spent: Sequence[float] | None = None,
    level: float = 0.95,
) -> SpeedupResult:
    """Speed-up of candidate over baseline from per-run times to target (None = not reached).

    `*_spent[i]` is the time run i ran in total; it prices the misses (see the module docstring).
    Without it, an arm with a miss has no cost and the result says so.
    """
    b = _times(baseline_times, "baseline_times")
    c = _times(candidate_times, "candidate_times")
    lvl = check_fraction(level, "level", lo_open=True)
    sb = _spent(baseline_spent, b, "baseline_spent")
    sc = _spent(candidate_spent, c, "candidate_spent")
    rb = [t for t in b if t is not None]
    rc = [t for t in c if t is not None]
    common = dict(level=lvl, baseline_times=tuple(b), candidate_times=tuple(c),
                  reach_baseline=clopper_pearson(len(rb), len(b), lvl),
                  reach_candidate=clopper_pearson(len(rc), len(c), lvl))
    p, p_interval = None, None
    if min(len(b), len(c)) >= MIN_SEEDS_FOR_P_IMPROVEMENT:
        p = _wins(b, c)
        p_interval = improvement_interval(p, len(b), len(c), lvl)
    common.update(p_improvement=p, p_improvement_interval=p_interval)
    log_b, log_c = np.log(rb), np.log(rc)
    log_sd = None
    if len(rb) >= 2 and len(rc) >= 2:
        pooled = ((len(rb) - 1) * log_b.var(ddof=1) + (len(rc) - 1) * log_c.var(ddof=1)) / (len(rb) + len(rc) - 2)
        log_sd = math.sqrt(pooled)
    common["log_sd"] = log_sd
    counts = f"baseline {len(rb)}/{len(b)}, candidate {len(rc)}/{len(c)} runs reached the target"

    if not rb or not rc:
        return SpeedupResult(None, None, None, "none", method="", note=f"not reached: {counts}",
                             baseline_cost=None, candidate_cost=None, **common)
    if len(rb) == len(b) and len(rc) == len(c):
        estimate = math.exp(log_b.mean() - log_c.mean())
        method = "ratio of geometric-mean times"
        if len(rb) >= 2 and len(rc) >= 2:
            lo, hi, _ = welch_interval(log_b, log_c, lvl)
            return SpeedupResult(estimate, math.exp(lo), math.exp(hi), "ci", method=method + ", Welch t on log times",
                                 note="", baseline_cost=float(np.exp(log_b.mean())),
                                 candidate_cost=float(np.exp(log_c.mean())), **common)
        ratios = [x / y for x in rb for y in rc]
        return SpeedupResult(estimate, min(ratios), max(ratios), "range", method=method,
                             note="range over pairs of runs: a calibrated interval needs >= 2 runs per arm",
                             baseline_cost=float(np.exp(log_b.mean())), candidate_cost=float(np.exp(log_c.mean())),
                             **common)
    if sb is None or sc is None:
        missing = [arm for arm, s, t, r in (("baseline", sb, b, rb), ("candidate", sc, c, rc))
                   if s is None and len(r) < len(t)]
        return SpeedupResult(None, None, None, "none", method="",
                             note=f"partial reach ({counts}); what a miss cost is unknown: pass "
                                  f"{' and '.join(m + '_spent' for m in missing)}",
                             baseline_cost=None, candidate_cost=None, **common)
    cost_b, cost_c = sum(sb) / len(rb), sum(sc) / len(rc)
    return SpeedupResult(cost_b / cost_c, None, None, "none", method="ratio of expected times per success",
                         note=f"partial reach ({counts}): misses cost the time they ran; no calibrated interval",
                         baseline_cost=cost_b, candidate_cost=cost_c, **common)


@dataclass(frozen=True)
class DiffResult:
    """mean(a) - mean(b) in the metric's own units (a = candidate, b = baseline)."""

    estimate: float
    low: float | None
    high: float | None
    interval_kind: str
    level: float
    a: tuple[float, ...]
    b: tuple[float, ...]

    @property
    def ci(self) -> tuple[float, float] | None:
        return (self.low, self.high) if self.interval_kind == "ci" else None

    @property
    def ci_excludes_0(self) -> bool | None:
        return None if self.ci is None else not (self.low <= 0.0 <= self.high)


def metric_difference(a: Sequence[float], b: Sequence[float], *, level: float = 0.95) -> DiffResult:
    """Mean difference a - b over seeds with Welch's t interval ("ci", >= 2 values per arm),
    else the range of pairwise differences. Every value must be finite: a diverged run has no
    final metric, leave it out before calling."""
    arrs = []
    for name, vals in (("a", a), ("b", b)):
        if len(vals) == 0:
            raise ValueError(f"{name} is empty: give one value per seed")
        arrs.append(np.array([check_finite(v, name) for v in vals], dtype=np.float64))
    xa, xb = arrs
    lvl = check_fraction(level, "level", lo_open=True)
    estimate = float(xa.mean() - xb.mean())
    if xa.size >= 2 and xb.size >= 2:
        lo, hi, _ = welch_interval(xa, xb, lvl)
        return DiffResult(estimate, lo, hi, "ci", lvl, tuple(xa), tuple(xb))
    diffs = [x - y for x in xa for y in xb]
    return DiffResult(estimate, min(diffs), max(diffs), "range", lvl, tuple(xa), tuple(xb))
