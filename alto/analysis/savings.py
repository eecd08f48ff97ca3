"""What a speed-up is worth per year: GPU-hours, money, energy and CO2e.

Assumes each job is run until it reaches the same target, so a speed-up s turns a
baseline job of H GPU-hours into H / s GPU-hours. Savings are never clipped: a speed-up
below 1 gives negative savings (the candidate costs more). The verdict words follow the
measurement's own verdict (README, "Honesty rules"): "saves" only when the speed-up was
called faster; otherwise the range of outcomes, stated neutrally.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from alto.stats._checks import as_1d

# Typical on-demand cloud list prices and board power, as editable starting points (assumptions,
# not measurements; the page says so). kWh per GPU-hour ~ board power at high utilisation.
# Memory per GPU from the data sheets, in GiB (what the memory check compares against).
GPU_TYPES = {
    "H200": {"price": 3.80, "kwh": 0.70, "mem_gib": 141},
    "H100": {"price": 3.00, "kwh": 0.70, "mem_gib": 80},
    "A100 80GB": {"price": 1.80, "kwh": 0.40, "mem_gib": 80},
    "L40S": {"price": 1.20, "kwh": 0.35, "mem_gib": 48},
    "L4": {"price": 0.70, "kwh": 0.072, "mem_gib": 24},
    "RTX 4090": {"price": 0.40, "kwh": 0.45, "mem_gib": 24},
}
DEFAULT_CARBON_KG_PER_KWH = 0.40  # a grid average; edit to your region's


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float range
        v = math.inf
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _count(name: str, value: object) -> int:
    v = _number(name, value)
    if not v.is_integer() or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(v)


EVIDENCE = ("faster", "slower", "no meaningful difference", "not enough evidence", "claim")


@dataclass(frozen=True)
class RoiInputs:
    """A measured (or claimed) speed-up with its interval, and what the jobs cost.

    speedup_low/high bound the speed-up (pass speedup for both when there is no interval); an
    interval need not contain the estimate (a miss-priced cost ratio, say). `evidence` is the
    measurement's verdict word, or "claim" for a number that was not measured here.
    gpus_per_job and jobs_per_year are integers >= 1; prices, hours and factors are finite
    and >= 0 (hours > 0); energy/carbon factors may be None (not reported).
    """

    speedup: float
    speedup_low: float
    speedup_high: float
    evidence: str
    gpu_hourly_price: float
    gpus_per_job: int
    baseline_hours_per_job: float
    jobs_per_year: int
    energy_kwh_per_gpu_hour: float | None = None
    carbon_kg_per_kwh: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the validated values in place
        for name in ("speedup", "speedup_low", "speedup_high"):
            v = _number(name, getattr(self, name))
            if v <= 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
            set_(self, name, v)
        if not self.speedup_low <= self.speedup_high:
            raise ValueError(f"speedup_low ({self.speedup_low}) must be <= speedup_high "
                             f"({self.speedup_high})")
        if self.evidence not in EVIDENCE:
            raise ValueError(f"evidence must be one of {', '.join(map(repr, EVIDENCE))}, got {self.evidence!r}")
        for name in ("gpus_per_job", "jobs_per_year"):
            set_(self, name, _count(name, getattr(self, name)))
        price = _number("gpu_hourly_price", self.gpu_hourly_price)
        if price < 0:
            raise ValueError(f"gpu_hourly_price must be >= 0, got {price!r}")
        set_(self, "gpu_hourly_price", price)
        hours = _number("baseline_hours_per_job", self.baseline_hours_per_job)
        if hours <= 0:
            raise ValueError(f"baseline_hours_per_job must be > 0, got {hours!r}")
        set_(self, "baseline_hours_per_job", hours)
        for name in ("energy_kwh_per_gpu_hour", "carbon_kg_per_kwh"):
            raw = getattr(self, name)
            if raw is None:
                continue
            v = _number(name, raw)
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
            set_(self, name, v)

    @property
    def has_ci(self) -> bool:
        return self.speedup_low < self.speedup_high

    @property
    def baseline_gpu_hours(self) -> float:
        """GPU-hours a year spent on these jobs with the baseline optimizer."""
        return self.baseline_hours_per_job * self.gpus_per_job * self.jobs_per_year


@dataclass(frozen=True)
class Span:
    """A quantity at the speed-up estimate and at its low / high bound.

    low and high name the speed-up bound used, not the order of the numbers (the new
    GPU-hours at speedup_low are the larger ones).
    """

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class RoiResult:
    baseline_gpu_hours: float
    new_gpu_hours: Span
    gpu_hours_saved: Span
    cost_saved: Span
    energy_kwh_saved: Span | None
    co2e_kg_saved: Span | None
    verdict: str


def _saved_hours(inputs: RoiInputs, speedups: np.ndarray) -> np.ndarray:
    return inputs.baseline_gpu_hours * (1.0 - 1.0 / speedups)


def sensitivity(inputs: RoiInputs, speedups: np.ndarray) -> np.ndarray:
    """Annual money saved at each speed-up in `speedups` (negative below 1), other inputs kept."""
    s = as_1d(speedups, "speedups")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("speedups must all be finite and > 0")
    return _saved_hours(inputs, s) * inputs.gpu_hourly_price


def speedup_grid(*points: float | None, n: int = 200) -> np.ndarray:
    """Speed-ups for a sensitivity curve: 0.5x..2x widened to cover every given point."""
    given = [float(p) for p in points if p is not None and math.isfinite(p) and p > 0]
    lo, hi = min([0.5, *given]) * 0.9, max([2.0, *given]) * 1.1
    return np.linspace(lo, hi, n)


def _money(x: float) -> str:
    return f"${abs(x):,.0f}"


def _verdict(inputs: RoiInputs, cost: Span, hours: Span) -> str:
    s, lo, hi = inputs.speedup, inputs.speedup_low, inputs.speedup_high
    priced = inputs.gpu_hourly_price > 0

    def amount(money: float, gpu_hours: float) -> str:
        text = f"{abs(gpu_hours):,.0f} GPU-hours {'saved' if gpu_hours >= 0 else 'extra'} a year"
        return f"{_money(money)} and {text}" if priced else text

    spread = ""
    if inputs.has_ci:
        spread = (f"; {_signed(cost.low) if priced else f'{hours.low:+,.0f} GPU-hours'} to "
                  f"{_signed(cost.high) if priced else f'{hours.high:+,.0f} GPU-hours'} a year "
                  f"over {lo:.2f}x to {hi:.2f}x")
    if inputs.evidence == "faster":
        return f"{'Saves money' if priced else 'Saves GPU time'}: about {amount(cost.estimate, hours.estimate)} at {s:.2f}x{spread}."
    if inputs.evidence == "slower":
        return f"{'Costs money' if priced else 'Costs GPU time'}: about {amount(cost.estimate, hours.estimate)} at {s:.2f}x{spread}."
    if inputs.evidence == "claim":
        return f"If the claim held for these jobs: {amount(cost.estimate, hours.estimate)} at {s:.2f}x (not measured here)."
    if inputs.evidence == "no meaningful difference":
        return f"No meaningful saving: the speed-up is within the equivalence margin ({s:.2f}x{spread})."
    return (f"Not established: the measurement does not settle whether it saves or costs "
            f"(estimate {s:.2f}x{spread or ', no interval'}).")


def _signed(x: float) -> str:
    """Money saved with its sign: negative = extra cost."""
    return f"-{_money(x)}" if x < 0 else _money(x)


def roi(inputs: RoiInputs) -> RoiResult:
    """GPU-hours, cost, energy and CO2e saved a year, at the speed-up and its CI bounds."""
    s = np.array([inputs.speedup, inputs.speedup_low, inputs.speedup_high])
    base = inputs.baseline_gpu_hours
    saved = _saved_hours(inputs, s)

    def span(v: np.ndarray) -> Span:
        return Span(float(v[0]), float(v[1]), float(v[2]))

    hours = span(saved)
    cost = span(saved * inputs.gpu_hourly_price)
    energy = co2 = None
    if inputs.energy_kwh_per_gpu_hour is not None:
        kwh = saved * inputs.energy_kwh_per_gpu_hour
        energy = span(kwh)
        if inputs.carbon_kg_per_kwh is not None:
            co2 = span(kwh * inputs.carbon_kg_per_kwh)
    return RoiResult(base, span(base / s), hours, cost, energy, co2,
                     _verdict(inputs, cost, hours))


def with_speedup(inputs: RoiInputs, speedup: float, low: float | None = None,
                 high: float | None = None, *, evidence: str | None = None) -> RoiInputs:
    """The same cost assumptions with another speed-up (e.g. the paper's claim, no interval)."""
    values = {f.name: getattr(inputs, f.name) for f in fields(inputs)}
    values.update(speedup=speedup, speedup_low=speedup if low is None else low,
                  speedup_high=speedup if high is None else high,
                  evidence=inputs.evidence if evidence is None else evidence)
    return RoiInputs(**values)
