"""Savings on the user's fleet as measured factors, each with the workload, device and date it
came from.

    fleet speed-up = steps-to-target ratio  x  cost-per-step ratio  [x GPUs factor]

* The steps-to-target ratio (baseline steps / candidate steps to the target) comes from the
  lab's runs on a named workload, with its interval and verdict. Once confirmed at budget
  (`alto.analysis.budget`) it is the ratio the confirmation proved; until then the saving is
  labelled "not confirmed at budget", and a confirmation that missed takes "saves" away.
* The cost-per-step ratio (baseline time per step / candidate time per step) belongs to the
  fleet's hardware and model shapes: an `alto bench optim --shapes ... --save` result, runs whose
  steps were timed (`time/step_ms`: a tracked job of the user's, or the lab's own runs), or a
  figure typed in and labelled so. A cost measured on one kind of device is refused for a fleet
  of another: a CPU's cost per step says nothing about a GPU's.
* When memory is checked, a candidate that needs more GPUs per job multiplies in baseline GPUs /
  candidate GPUs (`alto.analysis.memory`).

The verdict word of the product comes from `alto.stats.verdict.interval_word` applied to the
steps interval scaled by the other factors (taken as exact: their own spread is not in it).
"""
from __future__ import annotations

import math
import re
import statistics
import time
from dataclasses import dataclass

from alto.stats.verdict import interval_word
from alto.store import Store

from .budget import NOT_CONFIRMED, BudgetCheck, budget_check
from .measured import Measured
from .savings import RoiInputs
from .verdicts import workload_name

BENCH_KIND = "optim_bench"
TYPED = "typed in"
TIMED_POINTS = 2000  # step times read per run (bucket means of longer runs): enough for a median
LOOK_BACK = 20       # newest other experiments searched for timed runs of a pair (a tracked job, say)


def device_kind(device: str | None) -> str | None:
    """"cuda" for "cuda" / "cuda:1" / "cuda (NVIDIA H200)", "cpu", "mps"...; None when unknown."""
    if not device:
        return None
    return str(device).split(" ")[0].split(":")[0].lower() or None


def _date(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%Y-%m-%d", time.localtime(ts))


def _dates(stamps: list[float | None]) -> str:
    days = sorted({_date(t) for t in stamps if t})
    if not days:
        return "-"
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


@dataclass(frozen=True)
class Provenance:
    source: str       # "lab runs", "optimizer benchmark", "timed runs", "typed in"
    workload: str     # what was run: "digits (mlp), val/acc ≥ 0.9, experiment #1"
    device: str       # "cpu", "cuda (NVIDIA H200)", "not measured"
    date: str         # "2025-06-01", a range of days, or "-"

    def label(self) -> str:
        return f"{self.source}: {self.workload}; on {self.device}; {self.date}"


# ------------------------------------------------------------------------ steps to target

@dataclass(frozen=True)
class StepsFactor:
    """Baseline steps / candidate steps to the target, from the lab's runs."""

    measured: float               # the lab's estimate
    low: float
    high: float
    calibrated: bool              # (low, high) is a calibrated CI
    flags: tuple[str, ...]        # why the steps verdict is not decisive, beyond its interval
    word: str                     # the steps verdict
    target: str                   # "val/acc ≥ 0.9"
    provenance: Provenance
    budget: BudgetCheck | None

    @property
    def confirmed_at_budget(self) -> bool:
        return self.budget is not None and self.budget.confirmed

    @property
    def estimate(self) -> float:
        """The ratio the savings use: the one a budget confirmation proved, else the measured one."""
        return self.budget.plan.factor if self.confirmed_at_budget else self.measured

    def budget_label(self) -> str:
        return NOT_CONFIRMED if self.budget is None else self.budget.label()


def steps_factor(store: Store, measured: Measured) -> StepsFactor | None:
    """The lab's steps-to-target ratio of a measured pair with its budget confirmation, if any
    (None when the target was not reached)."""
    row = measured.steps_row
    result = row.result
    if result.estimate is None:
        return None
    budget = budget_check(store, measured.comparison.experiment_id, candidate=row.candidate, baseline=row.baseline,
                          metric=row.metric, threshold=row.threshold)
    runs = [store.get_run(o.run_id) for arm in row.arms.values() for o in arm]
    devices = sorted({run["device"] for run in runs if run.get("device")}) or ["unknown device"]
    target = f"{row.metric} {'≥' if row.mode == 'max' else '≤'} {row.threshold:g}"
    where = f"{workload_name(runs)}, {target}, experiment #{measured.comparison.experiment_id}"
    provenance = Provenance("lab runs", where, ", ".join(devices), _dates([run.get("finished_at") for run in runs]))
    low, high = (result.low, result.high) if result.low is not None else (result.estimate, result.estimate)
    calibrated = result.interval_kind == "ci" and not result.partial
    return StepsFactor(result.estimate, low, high, calibrated, row.verdict.flags, row.verdict.word, target,
                       provenance, budget)


# ------------------------------------------------------------------------- cost per step

@dataclass(frozen=True)
class CostFactor:
    """Baseline time per step / candidate time per step (> 1: the candidate's steps are cheaper)."""

    ratio: float
    provenance: Provenance
    device_kind: str | None          # None for a typed-in figure
    key: str = TYPED                 # what it was read from: "bench:<artifact id>", "runs:<experiment id>"
    candidate_ms: float | None = None
    baseline_ms: float | None = None
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.device_kind is not None


def typed_cost(ratio: float, note: str = "") -> CostFactor:
    """A cost-per-step ratio typed in: labelled as such wherever it is shown."""
    if not (isinstance(ratio, (int, float)) and 0 < ratio < float("inf")):
        raise ValueError(f"ratio must be a finite number > 0, got {ratio!r}")
    return CostFactor(float(ratio), Provenance(TYPED, "not measured", "not measured", "-"), None,
                      note=note or "typed in, not measured")


def cost_from_runs(store: Store, experiment_id: int, candidate: str, baseline: str, *,
                   source: str = "timed runs") -> CostFactor:
    """From the training clock of each step (`time/step_ms`) of an experiment's runs: the median
    over each run's steps, then over each optimizer's runs. ValueError when an optimizer has no
    timed step or the runs mix kinds of device."""
    runs = [r for r in store.list_runs(experiment_id=experiment_id) if r["optimizer"] in (candidate, baseline)
            and r["status"] not in ("queued",)]
    ids = [r["id"] for r in runs]
    series = store.series_many(ids, "time/step_ms", x="step", max_points=TIMED_POINTS) if ids else {}
    per_arm: dict[str, list[float]] = {candidate: [], baseline: []}
    timed = []
    for r in runs:
        values = [float(v) for v in series[r["id"]]["value"] if math.isfinite(v) and v > 0]
        if values:
            per_arm[r["optimizer"]].append(statistics.median(values))
            timed.append(r)
    for name, medians in per_arm.items():
        if not medians:
            raise ValueError(f"experiment {experiment_id} has no {name} run with timed steps (time/step_ms)")
    kinds = {device_kind(r.get("device")) for r in timed}
    if len(kinds) != 1 or None in kinds:
        raise ValueError(f"experiment {experiment_id}'s timed runs ran on {', '.join(sorted(map(str, kinds)))}: "
                         "one kind of device is needed for a cost per step")
    cand, base = statistics.median(per_arm[candidate]), statistics.median(per_arm[baseline])
    devices = ", ".join(sorted({r["device"] for r in timed}))
    provenance = Provenance(source, f"{workload_name(timed)}, experiment #{experiment_id}, full training step",
                            devices, _dates([r.get("finished_at") or r.get("started_at") for r in timed]))
    return CostFactor(base / cand, provenance, kinds.pop(), f"runs:{experiment_id}", cand, base,
                      note=f"{candidate} {cand:.3g} ms vs {baseline} {base:.3g} ms per step (medians)")


# A benchmark result is stored as an artifact (no experiment): the rows of one `alto bench optim`.

def save_bench(store: Store, records: list[dict], *, shapes: str, device_name: str, torch_version: str) -> int:
    """Store the rows of one optimizer benchmark with its device, date and shapes; returns the id."""
    rows = {r["optimizer"]: r for r in records if r.get("optimizer") and "ms" in r}
    if not rows:
        raise ValueError("records: no optimizer row with a time (ms) to save")
    first = next(iter(rows.values()))
    payload = {"shapes": shapes, "params": first.get("params"), "tensors": first.get("tensors"),
               "device": first.get("device"), "device_name": device_name, "torch": torch_version,
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
    return store.put_artifact(kind=BENCH_KIND, name=f"{shapes} on {device_name}", payload=payload)


def bench_results(store: Store) -> list[dict]:
    """Stored benchmark results, newest first: each {"id", "created_at", **payload}."""
    return [{"id": a["id"], "created_at": a["created_at"], **a["payload"]} for a in store.artifacts(kind=BENCH_KIND)]


def bench_rows(bench: dict, candidate: str, baseline: str) -> tuple[str, str] | None:
    """The two rows of a benchmark to compare: both Triton-fused when it has both, else the
    optimizers' own rows; None when it lacks either optimizer."""
    rows = bench.get("rows") or {}
    if f"{candidate}_fused" in rows and f"{baseline}_fused" in rows:
        return f"{candidate}_fused", f"{baseline}_fused"
    if candidate in rows and baseline in rows:
        return candidate, baseline
    return None


def cost_from_bench(bench: dict, candidate: str, baseline: str, *, rest_ms: float = 0.0) -> CostFactor:
    """From a stored benchmark: the optimizer step's time of each, plus `rest_ms` (forward,
    backward and data of the user's model, typed in) when given. Without it the ratio is the
    optimizer step's alone; a full step's ratio lies between it and 1."""
    pair = bench_rows(bench, candidate, baseline)
    if pair is None:
        raise ValueError(f"benchmark {bench.get('id')} has no rows for {candidate} and {baseline}; it has "
                         f"{', '.join(sorted(bench.get('rows') or {}))}")
    if not rest_ms >= 0:
        raise ValueError(f"rest_ms must be >= 0, got {rest_ms!r}")
    cand, base = (float(bench["rows"][name]["ms"]) for name in pair)
    part = (f"optimizer step + {rest_ms:g} ms typed in for forward and backward" if rest_ms else
            "optimizer step alone")
    device = f"{bench.get('device')} ({bench.get('device_name')})"
    provenance = Provenance("optimizer benchmark",
                            f"{bench.get('shapes')} shapes, {(bench.get('params') or 0) / 1e6:,.1f}M parameters, "
                            f"{pair[0]} vs {pair[1]}, {part}", device, str(bench.get("date", "-"))[:10])
    note = (f"{pair[0]} {cand:.3g} ms vs {pair[1]} {base:.3g} ms per optimizer step"
            + ("" if rest_ms else "; forward and backward would move the ratio towards 1"))
    return CostFactor((base + rest_ms) / (cand + rest_ms), provenance, device_kind(bench.get("device")),
                      f"bench:{bench.get('id')}", cand + rest_ms, base + rest_ms, note)


def cost_options(store: Store, experiment_id: int, candidate: str, baseline: str, *,
                 fleet_kind: str = "cuda", rest_ms: float = 0.0) -> list[CostFactor]:
    """Every measured cost-per-step factor for the pair, those measured on the fleet's kind of
    device first: the newest benchmark first, then this experiment's timed runs, then those of
    the newest other experiments that timed both (a job of the user's tracked into the lab, say);
    `rest_ms` as for `cost_from_bench`."""
    options = [cost_from_bench(bench, candidate, baseline, rest_ms=rest_ms) for bench in bench_results(store)
               if bench_rows(bench, candidate, baseline)]
    others = [e["id"] for e in store.list_experiments() if e["id"] != experiment_id][:LOOK_BACK]
    for eid in [experiment_id, *others]:
        try:
            options.append(cost_from_runs(store, eid, candidate, baseline, source=(
                "this experiment's timed runs" if eid == experiment_id else f"timed runs of experiment #{eid}")))
        except ValueError:
            pass
    return sorted(options, key=lambda c: c.device_kind != fleet_kind)


def default_cost(store: Store, experiment_id: int, candidate: str, baseline: str, *,
                 fleet_kind: str = "cuda") -> CostFactor:
    """The first measured factor from the fleet's kind of device, else 1.00 typed in and said so."""
    usable = [c for c in cost_options(store, experiment_id, candidate, baseline, fleet_kind=fleet_kind)
              if c.device_kind == fleet_kind]
    return usable[0] if usable else typed_cost(1.0, note=f"assumed equal: nothing was measured on {fleet_kind}")


# ------------------------------------------------------------------------------ the product

@dataclass(frozen=True)
class FleetSpeedup:
    steps: StepsFactor
    cost: CostFactor
    gpus: float                   # baseline GPUs / candidate GPUs per job (1: memory not a constraint)
    fleet: str                    # "H100 (cuda)"
    warnings: tuple[str, ...]

    @property
    def factor(self) -> float:
        return self.cost.ratio * self.gpus

    @property
    def estimate(self) -> float:
        return self.steps.estimate * self.factor

    @property
    def low(self) -> float:
        return self.steps.low * self.factor

    @property
    def high(self) -> float:
        return self.steps.high * self.factor

    @property
    def flags(self) -> tuple[str, ...]:
        budget = self.steps.budget
        missed = (budget.label(),) if budget is not None and budget.status == "missed" else ()
        return self.steps.flags + missed

    @property
    def word(self) -> str:
        return interval_word(self.low, self.high, calibrated=self.steps.calibrated, flags=self.flags)

    def sentence(self) -> str:
        """"On your fleet (H100 (cuda)): 1.55x = 1.60x fewer steps to val/acc ≥ 0.9 (not confirmed
        at budget) × 0.97x cost per step (optimizer benchmark): not enough evidence."""
        gpus = f" × {self.gpus:.2f}x from the GPUs per job" if self.gpus != 1 else ""
        return (f"On your fleet ({self.fleet}): {self.estimate:.2f}x = {self.steps.estimate:.2f}x fewer steps to "
                f"{self.steps.target} ({self.steps.budget_label()}) × {self.cost.ratio:.2f}x cost per step "
                f"({self.cost.provenance.source}){gpus}: {self.word}.")

    def roi_inputs(self, **costs) -> RoiInputs:
        """The product with its interval (the estimate alone when the steps have none) and word."""
        low, high = (self.low, self.high) if self.steps.low < self.steps.high else (self.estimate, self.estimate)
        return RoiInputs(speedup=self.estimate, speedup_low=low, speedup_high=high, evidence=self.word, **costs)


def _words(name: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", name.lower()))


def same_gpu_model(fleet_name: str, device: str) -> bool:
    """Whether `device` (as torch names it, "NVIDIA A100-SXM4-80GB") is the GPU `fleet_name`
    ("A100 80GB"): every word of the fleet's name is a whole word of the device's, so an L4 is
    not an L40S, and a memory size given (80GB) must match: a 40GB A100 moves memory at
    another rate."""
    return _words(fleet_name) <= _words(device)


def fleet_speedup(steps: StepsFactor, cost: CostFactor, *, fleet_kind: str = "cuda", fleet_name: str = "",
                  gpus: float = 1.0) -> FleetSpeedup:
    """Multiply the factors for a fleet of `fleet_kind` devices (named `fleet_name`, e.g. "H100").

    ValueError when the cost per step was measured on another kind of device; a warning when it
    was measured on another model of GPU."""
    if cost.device_kind is not None and cost.device_kind != fleet_kind:
        raise ValueError(
            f"the cost-per-step factor was measured on {cost.provenance.device} and your fleet trains on "
            f"{fleet_kind}: a cost per step does not carry over between kinds of device. Measure it on the "
            f"fleet's hardware (`alto bench optim --shapes ... --device {fleet_kind} --save`, or timed runs of "
            "your job) or type a figure in.")
    if not gpus > 0:
        raise ValueError(f"gpus must be > 0, got {gpus!r}")
    warnings = [f"the steps to target were counted on {steps.provenance.workload}: a ratio of steps does not "
                "depend on the device, but it may not hold for another model, dataset or batch size"]
    if cost.measured and fleet_name and not same_gpu_model(fleet_name, cost.provenance.device):
        warnings.append(f"the cost per step was measured on {cost.provenance.device}, not on {fleet_name}: "
                        "another GPU model moves memory and arithmetic at other rates")
    if not cost.measured:
        warnings.append(f"the cost-per-step factor is {cost.note or 'typed in'}")
    name = f"{fleet_name} ({fleet_kind})" if fleet_name else fleet_kind
    return FleetSpeedup(steps, cost, float(gpus), name, tuple(warnings))
