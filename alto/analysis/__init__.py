"""Analysis: smoothing, aggregation over seeds, time to target, speed-up with CIs, ROI.

Everything here is a pure function of arrays except `store_io`, which reads a Store and
calls the pure functions.
"""

from .aggregate import align_runs, band
from .claims import PAPER_CLAIMS, PaperClaim, paper_scenario
from .downsample import MAX_POINTS, downsample, downsample_indices
from .roi import RoiInputs, RoiResult, Span, roi, sensitivity, speedup_grid, with_speedup
from .smoothing import ema_debiased
from .speedup import (
    DiffResult, SpeedupResult, SplitResult, bootstrap_ci, metric_difference, speedup,
    split_speedup,
)
from .targets import TargetResult, target_result, time_to_target

__all__ = [
    "MAX_POINTS", "PAPER_CLAIMS", "DiffResult", "PaperClaim", "RoiInputs", "RoiResult", "Span",
    "SpeedupResult", "SplitResult", "TargetResult", "align_runs", "band", "bootstrap_ci",
    "downsample", "downsample_indices", "ema_debiased", "metric_difference", "paper_scenario",
    "roi", "sensitivity", "speedup", "speedup_grid", "split_speedup", "target_result",
    "time_to_target", "with_speedup",
]
