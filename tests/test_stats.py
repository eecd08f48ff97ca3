"""alto.stats: smoothing, downsampling, aggregation, time to target, speed-up CIs, metric rules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alto.stats.aggregate import align_runs, band, mean_std
from alto.stats.downsample import downsample, downsample_indices
from alto.stats.metrics import metric_mode, selection_metric
from alto.stats.smoothing import ema_debiased
from alto.stats.speedup import metric_difference, speedup
from alto.stats.targets import time_to_target

# -- smoothing ---------------------------------------------------------------------------


def test_ema_matches_hand_computed_sequence_and_skips_nan():
    out = ema_debiased(np.array([1.0, 2.0, np.nan, 4.0]), 0.5)
    # m: 0.5, 1.25, (skip), 2.625; debias by 1 - 0.5**c with c = 1, 2, 3
    np.testing.assert_allclose(out, [1.0, 1.25 / 0.75, np.nan, 2.625 / 0.875])
    assert math.isnan(out[2])


def test_ema_weight_zero_is_identity_and_first_value_is_unbiased():
    v = np.array([3.0, np.nan, -1.0, 7.0])
    np.testing.assert_array_equal(ema_debiased(v, 0.0), v)
    assert ema_debiased(np.array([np.nan, 5.0, 5.0]), 0.99)[1] == pytest.approx(5.0)
    np.testing.assert_allclose(ema_debiased(np.full(50, 2.5), 0.9), 2.5)


@pytest.mark.parametrize("weight", [1.0, -0.1, math.nan, 2])
def test_ema_rejects_bad_weight(weight):
    with pytest.raises(ValueError, match="weight"):
        ema_debiased(np.ones(3), weight)


def test_downsample_keeps_ends_and_limit():
    idx = downsample_indices(10_001, 2000)
    assert len(idx) <= 2000 and idx[0] == 0 and idx[-1] == 10_000
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(downsample_indices(5, 2000), np.arange(5))
    x, y = downsample(np.arange(5000), np.arange(5000) * 2.0, max_points=100)
    assert len(x) <= 100 and np.array_equal(y, 2.0 * x)


# -- aggregate ---------------------------------------------------------------------------


def test_align_runs_interpolates_and_leaves_nan_outside_each_range():
    grid, m = align_runs([np.array([0.0, 1, 2]), np.array([1.0, 2, 3])],
                         [np.array([0.0, 10, 20]), np.array([5.0, 15, 25])])
    np.testing.assert_array_equal(grid, [0, 1, 2, 3])
    np.testing.assert_array_equal(m, [[0, 10, 20, np.nan], [np.nan, 5, 15, 25]])
    grid, m = align_runs([np.array([0.0, 2]), np.array([1.0, 3])],
                         [np.array([0.0, 20]), np.array([10.0, 30])], grid=np.array([0.5, 2.5]))
    np.testing.assert_array_equal(m, [[5, np.nan], [np.nan, 25]])


def test_align_runs_drops_nan_points_and_checks_lengths():
    _, m = align_runs([np.array([0.0, 1, 2])], [np.array([0.0, np.nan, 20])],
                      grid=np.array([1.0]))
    assert m[0, 0] == 10.0  # the NaN point is bridged
    with pytest.raises(ValueError, match=r"ys\[0\]"):
        align_runs([np.arange(3.0)], [np.arange(2.0)])


def test_band_statistics_without_warnings():
    m = np.array([[1.0, 2.0, np.nan], [3.0, np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = band(m)
    np.testing.assert_array_equal(b["n"], [2, 1, 0])
    np.testing.assert_allclose(b["mean"], [2.0, 2.0, np.nan])
    np.testing.assert_allclose(b["std"], [math.sqrt(2.0), np.nan, np.nan])
    np.testing.assert_allclose(b["min"], [1.0, 2.0, np.nan])
    np.testing.assert_allclose(b["max"], [3.0, 2.0, np.nan])


# -- time to target ----------------------------------------------------------------------

X = np.array([0.0, 10.0, 20.0, 30.0])


def test_time_to_target_interpolates_between_bracketing_points():
    acc = np.array([0.1, 0.3, 0.5, 0.7])
    assert time_to_target(X, acc, 0.4) == pytest.approx(15.0)
    assert time_to_target(X, acc, 0.3) == pytest.approx(10.0)  # exactly on a point
    assert time_to_target(X, acc, 0.05) == 0.0  # first point already satisfies it
    assert time_to_target(X, acc, 0.8) is None  # not reached: a value, not an error
    loss = np.array([2.0, 1.5, 1.0, 0.5])
    assert time_to_target(X, loss, 1.2, mode="min") == pytest.approx(16.0)
    assert time_to_target(X, loss, 0.1, mode="min") is None


def test_time_to_target_reads_raw_values_and_skips_nan():
    spiky = np.array([0.0, 1.0, 0.0, 0.0])
    assert time_to_target(X, spiky, 0.9) == pytest.approx(10.0 * 0.9)
    assert time_to_target(X[:3], np.array([0.1, np.nan, 0.5]), 0.3) == pytest.approx(10.0)
    with pytest.raises(TypeError):  # no display smoothing can reach a time to target
        time_to_target(X, spiky, 0.9, smoothing=0.5)


def test_time_to_target_rejects_bad_input():
    with pytest.raises(ValueError, match="x must be non-decreasing"):
        time_to_target(np.array([0.0, 2, 1]), np.array([0.0, 0, 1]), 0.5)
    with pytest.raises(ValueError, match="values"):
        time_to_target(X, np.ones(3), 0.5)
    with pytest.raises(ValueError, match="mode"):
        time_to_target(X, np.ones(4), 0.5, mode="maximum")
    with pytest.raises(ValueError, match="threshold"):
        time_to_target(X, np.ones(4), math.nan)


finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    xs=st.lists(finite, min_size=1, max_size=30),
    vals=st.lists(st.one_of(finite, st.just(math.nan)), min_size=30, max_size=30),
    threshold=finite,
    mode=st.sampled_from(["max", "min"]),
)
def test_time_to_target_stays_within_the_data_range(xs, vals, threshold, mode):
    x = np.sort(np.array(xs))
    v = np.array(vals[: len(xs)])
    t = time_to_target(x, v, threshold, mode=mode)
    if t is not None:
        assert x.min() <= t <= x.max()


# -- speed-up (the calibration itself is simulated in test_intervals.py) --------------------


def test_speedup_of_two_with_a_welch_interval():
    res = speedup([19.0, 20.0, 21.0], [9.5, 10.0, 10.5])
    assert res.estimate == pytest.approx(2.0, rel=1e-3) and res.reached and not res.partial
    assert res.interval_kind == "ci" and res.low <= 2.0 <= res.high and res.ci == (res.low, res.high)
    assert res.time_saved == pytest.approx(0.5, rel=1e-3)
    wide = speedup([10.0, 20.0, 30.0], [5.0, 10.0, 15.0])  # same 2x, noisier seeds
    assert wide.low < 1 < wide.high and wide.high - wide.low > res.high - res.low
    exact = speedup([10.0, 10.0], [5.0, 5.0])
    assert exact.ci == (pytest.approx(2.0), pytest.approx(2.0))


def test_speedup_not_reached_partial_and_single_seed():
    none = speedup([None, None], [5.0, 6.0])
    assert none.estimate is None and not none.reached and none.ci is None and none.interval_kind == "none"
    assert "not reached" in none.note and "baseline 0/2" in none.note

    part = speedup([10.0, None, 30.0], [5.0, 10.0, 15.0], baseline_spent=[10.0, 40.0, 30.0],
                   candidate_spent=[5.0, 10.0, 15.0])
    assert part.estimate == pytest.approx((10 + 40 + 30) / 2 / 10.0) and part.partial
    assert (part.reached_baseline, part.n_baseline) == (2, 3) and part.interval_kind == "none"
    assert "partial reach" in part.note

    one = speedup([10.0], [5.0, 5.0])
    assert one.estimate == pytest.approx(2.0) and one.ci is None and one.interval_kind == "range"


def test_speedup_rejects_bad_input():
    with pytest.raises(ValueError, match="baseline_times"):
        speedup([], [1.0])
    with pytest.raises(ValueError, match="candidate_times must be > 0"):
        speedup([1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="candidate_times must be finite"):
        speedup([1.0, 2.0], [math.inf, 1.0])
    with pytest.raises(ValueError, match="candidate_spent has 1 entries"):
        speedup([1.0, 2.0], [1.0, None], baseline_spent=[1.0, 2.0], candidate_spent=[3.0])


def test_paper_numbers_through_speedup():
    res = speedup([864.7], [608.0])
    assert res.estimate == pytest.approx(1.4222, abs=1e-4)
    assert res.time_saved == pytest.approx(0.2968, abs=1e-4) and res.ci is None


def test_metric_difference():
    res = metric_difference([60.0, 62.0, 64.0], [58.0, 59.0, 60.0])
    assert res.estimate == pytest.approx(3.0) and res.ci[0] <= 3.0 <= res.ci[1] and res.interval_kind == "ci"
    assert not res.ci_excludes_0  # three noisy seeds each: Welch's t does not exclude 0 (a bootstrap did)
    assert metric_difference([60.0, 60.5, 61.0], [58.0, 58.5, 59.0]).ci_excludes_0
    one = metric_difference([60.0], [58.0, 59.0])
    assert one.ci is None and one.interval_kind == "range" and (one.low, one.high) == (1.0, 2.0)
    with pytest.raises(ValueError, match="b must be finite"):
        metric_difference([1.0, 2.0], [math.nan, 1.0])


def test_mean_std_leaves_out_missing_values():
    assert mean_std([1.0, None, 3.0, math.nan, math.inf]) == (2.0, pytest.approx(math.sqrt(2)))
    mean, std = mean_std([5.0])
    assert mean == 5.0 and math.isnan(std)
    assert all(math.isnan(v) for v in mean_std([None, math.nan]))


# -- metric rules ------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["val/acc", "test/accuracy", "val/top1", "val/top5", "val/f1",
                                    "val/auc", "train/acc", "acc", "val/ACC"])
def test_higher_is_better_metrics_are_max(metric):
    assert metric_mode(metric) == "max"


@pytest.mark.parametrize("metric", ["val/loss", "train/loss", "val/ppl", "test/perplexity",
                                    "val/error", "val/err", "test/error", "loss"])
def test_lower_is_better_metrics_are_min(metric):
    assert metric_mode(metric) == "min"


def test_unknown_metrics_are_min_and_targets_decide_for_their_own_metric():
    assert metric_mode("grad_norm") == metric_mode("val/mse") == "min"
    assert metric_mode("grad_norm", {"metric": "grad_norm", "mode": "max"}) == "max"
    assert metric_mode("val/error", {"metric": "val/error", "mode": "max"}) == "max"
    # the targets speak for their own metric only, and only with a valid mode
    assert metric_mode("val/acc", {"metric": "val/loss", "mode": "min"}) == "max"
    assert metric_mode("val/acc", {"metric": "val/acc", "mode": "up"}) == "max"


def test_selection_metric_is_always_a_logged_validation_metric():
    logged = {"val/acc", "val/loss", "test/acc", "train/loss"}
    assert selection_metric("val/loss", logged) == ("val/loss", "min")
    assert selection_metric("test/acc", logged) == ("val/acc", "max")
    assert selection_metric("train/loss", {"val/ppl", "test/ppl"}) == ("val/ppl", "min")
    assert selection_metric("train/loss", {"train/loss", "test/acc"}) is None
    assert selection_metric("val/error", {"val/error", "val/acc"}) == ("val/error", "min")
    assert selection_metric("val/error", {"val/acc"}) == ("val/acc", "max")  # not logged
    assert selection_metric("val/score", {"val/score"}, "max") == ("val/score", "max")
    with pytest.raises(ValueError, match="mode must be one of"):
        selection_metric("val/acc", logged, "up")
