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
from alto.stats.speedup import bootstrap_ci, metric_difference, speedup, split_speedup
from alto.stats.targets import TargetResult, target_result, time_to_target

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


def test_time_to_target_uses_smoothed_values_and_skips_nan():
    spiky = np.array([0.0, 1.0, 0.0, 0.0])
    assert time_to_target(X, spiky, 0.9) == pytest.approx(10.0 * 0.9)
    assert time_to_target(X, spiky, 0.9, smoothing=0.5) is None  # smoothed peak is 2/3
    assert time_to_target(X[:3], np.array([0.1, np.nan, 0.5]), 0.3) == pytest.approx(10.0)


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
    smoothing=st.sampled_from([0.0, 0.5, 0.9]),
)
def test_time_to_target_stays_within_the_data_range(xs, vals, threshold, mode, smoothing):
    x = np.sort(np.array(xs))
    v = np.array(vals[: len(xs)])
    t = time_to_target(x, v, threshold, mode=mode, smoothing=smoothing)
    if t is not None:
        assert x.min() <= t <= x.max()


def test_target_result_on_every_axis():
    r = target_result(np.array([0.0, 100, 200]), np.array([0.1, 0.3, 0.5]), 0.4,
                      wall_time=np.array([0.0, 50, 110]), samples=np.array([0.0, 6400, 12800]),
                      n_devices=4)
    assert r.reached and r.steps == pytest.approx(150) and r.wall_s == pytest.approx(80)
    assert r.samples == pytest.approx(9600) and r.epochs is None
    assert r.device_hours == pytest.approx(80 / 3600 * 4)
    assert r.on_axis("wall_time") == r.wall_s and r.on_axis("step") == r.steps
    miss = target_result(np.array([0.0, 1]), np.array([0.1, 0.2]), 0.9, wall_time=np.ones(2))
    assert not miss.reached and miss.wall_s is None and miss.device_hours is None
    with pytest.raises(ValueError, match="n_devices"):
        target_result(np.ones(2), np.ones(2), 1.0, n_devices=0)


# -- speed-up ----------------------------------------------------------------------------


def test_speedup_of_two_with_ci():
    res = speedup([19.0, 20.0, 21.0], [9.5, 10.0, 10.5])
    assert res.estimate == pytest.approx(2.0) and res.reached and not res.partial
    assert res.ci[0] <= 2.0 <= res.ci[1] and res.why_no_ci is None
    assert res.time_saved == pytest.approx(0.5) and res.ci_includes_1 is False
    assert speedup([19.0, 20.0, 21.0], [9.5, 10.0, 10.5]) == res  # seeded: reproducible
    wide = speedup([10.0, 20.0, 30.0], [5.0, 10.0, 15.0])  # same 2x, noisier seeds
    assert wide.ci_includes_1 and wide.ci[1] - wide.ci[0] > res.ci[1] - res.ci[0]
    exact = speedup([10.0, 10.0], [5.0, 5.0])
    assert exact.ci == (pytest.approx(2.0), pytest.approx(2.0))


def test_speedup_not_reached_partial_and_single_seed():
    none = speedup([None, None], [5.0, 6.0])
    assert none.estimate is None and not none.reached and none.ci is None
    assert "not reached" in none.why_no_ci and "baseline 0/2" in none.why_no_ci

    part = speedup([10.0, None, 30.0], [5.0, 10.0, 15.0])
    assert part.estimate == pytest.approx(2.0) and part.partial
    assert (part.reached_baseline, part.n_baseline) == (2, 3)
    assert "partial reach" in part.note

    one = speedup([10.0], [5.0, 5.0])
    assert one.estimate == pytest.approx(2.0) and one.ci is None
    assert "point estimate only" in one.why_no_ci and "baseline has 1" in one.why_no_ci


def test_speedup_rejects_bad_times():
    with pytest.raises(ValueError, match="baseline_times"):
        speedup([], [1.0])
    with pytest.raises(ValueError, match="candidate_times must be > 0"):
        speedup([1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="candidate_times must be finite"):
        speedup([1.0, 2.0], [math.inf, 1.0])


def test_paper_numbers_through_speedup():
    res = speedup([864.7], [608.0])
    assert res.estimate == pytest.approx(1.4222, abs=1e-4)
    assert res.time_saved == pytest.approx(0.2968, abs=1e-4) and res.ci is None


def test_bootstrap_ci_checks_and_resamples_rows():
    with pytest.raises(ValueError, match="samples_a"):
        bootstrap_ci([1.0], [1.0, 2.0], lambda a, b: 0.0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], [1.0, 2.0], lambda a, b: 0.0, level=1.0)
    rows_a = np.array([[1.0, 10.0], [2.0, 20.0]])  # second column always 10x the first
    lo, hi = bootstrap_ci(rows_a, rows_a, lambda a, b: float(np.all(a[:, 1] == 10 * a[:, 0])))
    assert lo == hi == 1.0  # rows stay together
    wide = bootstrap_ci([1.0, 2.0, 3.0, 4.0], [0.0, 0.0], lambda a, b: a.mean(), level=0.99)
    narrow = bootstrap_ci([1.0, 2.0, 3.0, 4.0], [0.0, 0.0], lambda a, b: a.mean(), level=0.5)
    assert wide[0] <= narrow[0] <= narrow[1] <= wide[1]


def tr(steps: float | None, secs: float | None) -> TargetResult:
    return TargetResult(reached=steps is not None, steps=steps, wall_s=secs, samples=None,
                        epochs=None, device_hours=None if secs is None else secs / 3600)


def test_split_speedup_product_equals_total():
    base = [tr(1000, 100.0), tr(1100, 105.0), tr(900, 95.0)]
    cand = [tr(500, 60.0), tr(520, 63.0), tr(480, 58.0)]
    res = split_speedup(base, cand)
    assert res.total == pytest.approx(100.0 / 60.333333, rel=1e-6)
    assert res.fewer_steps == pytest.approx(1000 / 500)
    assert res.fewer_steps * res.cost_per_step == pytest.approx(res.total, rel=1e-12)
    assert res.cost_per_step < 1  # the candidate's steps cost more, as in the paper
    assert res.baseline_s_per_step == pytest.approx(0.1)
    for ci in (res.total_ci, res.fewer_steps_ci, res.cost_per_step_ci):
        assert ci is not None and ci[0] <= ci[1]
    missing = split_speedup(base, [tr(None, None)] * 2)
    assert not missing.reached and "not reached" in missing.why_no_ci


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 1e5), st.floats(1e-3, 1e5)), min_size=1, max_size=4),
       st.lists(st.tuples(st.floats(1, 1e5), st.floats(1e-3, 1e5)), min_size=1, max_size=4))
def test_split_product_property(base, cand):
    res = split_speedup([tr(*b) for b in base], [tr(*c) for c in cand], n_boot=20)
    assert res.fewer_steps * res.cost_per_step == pytest.approx(res.total, rel=1e-9)


def test_metric_difference():
    res = metric_difference([60.0, 62.0, 64.0], [58.0, 59.0, 60.0])
    assert res.estimate == pytest.approx(3.0) and res.ci[0] <= 3.0 <= res.ci[1]
    assert res.ci_excludes_0
    one = metric_difference([60.0], [58.0, 59.0])
    assert one.ci is None and "a has 1" in one.why_no_ci
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
