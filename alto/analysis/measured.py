"""What one experiment measured, in the shape the ROI page and the report need.

A candidate against a baseline at one target, from `verdicts.compare` (so the numbers are the
ones Compare and `alto compare` show): the speed-up on the training clock with its verdict, the
same comparison in steps, and their quotient, the cost of a step (the paper's Table 18 splits
its time saving the same way: fewer steps x cost per step).
"""
from __future__ import annotations

from dataclasses import dataclass

from alto.store import Store

from .savings import RoiInputs
from .verdicts import Comparison, Row, compare


@dataclass(frozen=True)
class Measured:
    comparison: Comparison    # every threshold, on the training clock
    row: Row                  # the chosen pair at the chosen threshold
    steps_row: Row            # the same runs, time to target counted in steps

    @property
    def usable(self) -> bool:
        """A speed-up number exists (both arms reached the target at least once)."""
        return self.row.result.estimate is not None

    @property
    def fewer_steps(self) -> float | None:
        """Baseline steps to target / candidate steps to target (> 1: fewer steps)."""
        return self.steps_row.result.estimate

    @property
    def cost_per_step(self) -> float | None:
        """The time speed-up divided by the step speed-up (> 1: the candidate's steps are cheaper)."""
        time, steps = self.row.result.estimate, self.fewer_steps
        return None if time is None or not steps else time / steps

    def roi_inputs(self, **costs) -> RoiInputs | None:
        """The measured speed-up, its interval (the estimate alone when there is none) and
        its verdict, with the given job costs; None when nothing was reached."""
        r = self.row.result
        if r.estimate is None:
            return None
        low, high = (r.low, r.high) if r.low is not None else (r.estimate, r.estimate)
        return RoiInputs(speedup=r.estimate, speedup_low=low, speedup_high=high,
                         evidence=self.row.verdict.word, **costs)


def measure(store: Store, experiment_id: int, *, candidate: str | None = None, baseline: str | None = None,
            metric: str | None = None, threshold: float | None = None) -> Measured:
    """The ROI measurement of `candidate` against `baseline` (defaults: verdicts.default_pair)
    at `threshold` on `metric` (defaults: the experiment's first target)."""
    if candidate is not None and candidate == baseline:
        raise ValueError("candidate and baseline must be different optimizers")
    thresholds = None if threshold is None else [threshold]
    comparison = compare(store, experiment_id, metric=metric, thresholds=thresholds, baseline=baseline,
                         candidates=None if candidate is None else [candidate])
    row = comparison.rows[0] if candidate is None else comparison.row(candidate)
    return measure_row(store, comparison, row)


def measure_row(store: Store, comparison: Comparison, row: Row) -> Measured:
    """The ROI measurement of one row of `comparison`: the same runs (same LRs, same sweep
    value) with time to target counted in steps."""
    in_steps = compare(store, comparison.experiment_id, metric=comparison.metric, thresholds=[row.threshold],
                       mode=comparison.mode, baseline=comparison.baseline, candidates=[row.candidate], axis="step",
                       lrs=comparison.selection.lrs, where=comparison.where or None)
    return Measured(comparison=comparison, row=row, steps_row=in_steps.rows[0])
