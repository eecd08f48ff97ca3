"""Seed planning: how many seeds per arm would resolve a given speed-up, before queuing.

From the run-to-run spread of log times to target measured in an earlier experiment of the same
preset, or a stated default before there is one, the seeds per arm at which the interval on log
times excludes 1 with 80% power (`alto.stats.speedup.seeds_needed`, checked by a simulation in the
test suite). Too few seeds is how an honest comparison ends in "not enough evidence".
"""
from __future__ import annotations

from dataclasses import dataclass

from alto.stats.speedup import seeds_needed, welch_power
from alto.stats.verdict import PLAN_SPEEDUPS, RESOLVE
from alto.store import Store

from .verdicts import compare

POWER = 0.8
DEFAULT_LOG_SD = 0.10  # before any run: a 10% run-to-run spread of time to target (assumed)
LOOK_BACK = 5          # newest experiments of a preset tried for a measured spread


@dataclass(frozen=True)
class SeedPlan:
    log_sd: float                      # spread of log times to target (both arms)
    measured: bool
    source: str                        # where the spread comes from, in words
    power: float
    seeds: dict[float, int | None]     # speed-up -> seeds per arm (None: more than 1,000)

    def detection(self, speedup: float, seeds: int) -> float:
        """Chance that `seeds` per arm resolve a true `speedup` at this spread."""
        return welch_power(speedup, self.log_sd, seeds)

    def sentence(self, planned: int | None = None, at: float = RESOLVE) -> str:
        """How many seeds each speed-up needs at this spread, and with `planned` seeds per arm how
        often a true `at` speed-up would be resolved."""
        figures = ", ".join(f"{s:g}x {'over 1,000' if n is None else n}" for s, n in self.seeds.items())
        text = (f"Seeds per arm to resolve a speed-up at {round(100 * self.power)}% power: {figures} "
                f"(spread {self.log_sd:.2f} of log time to target, {self.source}).")
        if planned is not None:
            text += (f" With {planned} seed{'s' * (planned != 1)} per arm a true {at:g}x is resolved about "
                     f"{100 * self.detection(at, planned):.0f}% of the time.")
        return text


def seed_plan(log_sd: float | None = None, *, source: str | None = None,
              speedups: tuple[float, ...] = PLAN_SPEEDUPS, power: float = POWER) -> SeedPlan:
    """Seeds per arm for each of `speedups` at the spread `log_sd` (None: DEFAULT_LOG_SD, said so)."""
    if log_sd is not None and not log_sd > 0:
        raise ValueError(f"log_sd must be > 0 or None (the default), got {log_sd!r}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power!r}")
    measured = log_sd is not None
    sd = log_sd if measured else DEFAULT_LOG_SD
    text = source or ("measured" if measured else "assumed before any run: no experiment has measured it yet")
    return SeedPlan(sd, measured, text, power, {s: seeds_needed(s, sd, power=power) for s in speedups})


def measured_spread(store: Store, experiment_id: int) -> tuple[float, str] | None:
    """(spread of log times, where it was measured) from an experiment's default comparison at its
    first target; None when it has none (no target, or fewer than 2 runs per arm reached it)."""
    try:
        comparison = compare(store, experiment_id)
    except ValueError:
        return None
    row = comparison.rows[0]
    r = row.result
    if r.log_sd is None or r.log_sd <= 0:
        return None
    return r.log_sd, (f"measured on experiment #{experiment_id}, {comparison.workload}: {row.candidate} vs "
                      f"{row.baseline}, {r.n_candidate} vs {r.n_baseline} seeds")


def plan_for_preset(store: Store, preset: str | None, **kwargs) -> SeedPlan:
    """The seed plan at the spread the newest experiment of `preset` measured (the default before
    one has)."""
    if preset:
        tried = [e for e in store.list_experiments() if e.get("preset") == preset][:LOOK_BACK]
        for experiment in tried:
            found = measured_spread(store, experiment["id"])
            if found:
                return seed_plan(found[0], source=found[1], **kwargs)
    return seed_plan(None, **kwargs)
