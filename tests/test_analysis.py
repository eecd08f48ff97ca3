"""alto.analysis: smoothing, aggregation, time to target, speed-up CIs, ROI, store_io."""

from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alto.analysis import (
    PAPER_CLAIMS, RoiInputs, TargetResult, align_runs, band, bootstrap_ci, downsample,
    downsample_indices, ema_debiased, metric_difference, paper_scenario, roi, sensitivity,
    speedup, speedup_grid, split_speedup, target_result, time_to_target, with_speedup,
)
from alto.analysis.store_io import (
    best_lr_per_optimizer, experiment_table, grouped_series, save_experiment_table,
    target_results,
)
from alto.store import Store

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
    assert "2.00x" in res.text()


def test_speedup_not_reached_partial_and_single_seed():
    none = speedup([None, None], [5.0, 6.0])
    assert none.estimate is None and not none.reached and none.ci is None
    assert "not reached" in none.why_no_ci and "baseline 0/2" in none.why_no_ci

    part = speedup([10.0, None, 30.0], [5.0, 10.0, 15.0])
    assert part.estimate == pytest.approx(2.0) and part.partial
    assert (part.reached_baseline, part.n_baseline) == (2, 3)
    assert "partial reach" in part.note and "(partial reach)" in part.text()

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
    assert res.ci_excludes_0 and res.text().startswith("+3.00 points")
    one = metric_difference([60.0], [58.0, 59.0])
    assert one.ci is None and "a has 1" in one.why_no_ci
    with pytest.raises(ValueError, match="b must be finite"):
        metric_difference([1.0, 2.0], [math.nan, 1.0])


# -- ROI ---------------------------------------------------------------------------------

BASE = dict(speedup=2.0, speedup_low=1.5, speedup_high=2.5, gpu_hourly_price=3.0,
            gpus_per_job=4, baseline_hours_per_job=10.0, jobs_per_year=50,
            energy_kwh_per_gpu_hour=0.5, carbon_kg_per_kwh=0.4)


def test_roi_hand_computed():
    r = roi(RoiInputs(**BASE))
    assert r.baseline_gpu_hours == 2000.0  # 10 h x 4 GPUs x 50 jobs
    assert (r.new_gpu_hours.estimate, r.new_gpu_hours.high) == (1000.0, 800.0)
    assert r.new_gpu_hours.low == pytest.approx(2000 / 1.5)
    assert r.gpu_hours_saved.estimate == 1000.0 and r.gpu_hours_saved.high == 1200.0
    assert r.cost_saved.estimate == 3000.0 and r.cost_saved.low == pytest.approx(2000.0)
    assert r.energy_kwh_saved.estimate == 500.0 and r.co2e_kg_saved.estimate == 200.0
    assert r.verdict.startswith("Saves money: about $3,000")
    none = roi(RoiInputs(**{**BASE, "energy_kwh_per_gpu_hour": None}))
    assert none.energy_kwh_saved is None and none.co2e_kg_saved is None


def test_roi_negative_savings_are_not_clipped():
    r = roi(RoiInputs(**{**BASE, "speedup": 0.8, "speedup_low": 0.7, "speedup_high": 0.9}))
    assert r.gpu_hours_saved.estimate == pytest.approx(-500.0)
    assert r.cost_saved.estimate == pytest.approx(-1500.0)
    assert r.verdict.startswith("Costs money")


def test_roi_verdict_when_ci_includes_one_and_without_ci():
    r = roi(RoiInputs(**{**BASE, "speedup": 1.1, "speedup_low": 0.9, "speedup_high": 1.3}))
    assert r.verdict.startswith("The CI includes 1: no measurable saving")
    single = roi(RoiInputs(**{**BASE, "speedup": 1.4, "speedup_low": 1.4, "speedup_high": 1.4}))
    assert "single estimate, no CI" in single.verdict
    free = roi(RoiInputs(**{**BASE, "gpu_hourly_price": 0.0}))
    assert free.verdict.startswith("Saves GPU time") and free.cost_saved.estimate == 0.0


def test_sensitivity_matches_roi_and_grid_covers_points():
    inputs = RoiInputs(**BASE)
    np.testing.assert_allclose(sensitivity(inputs, np.array([0.5, 1.0, 2.0])),
                               [-6000.0, 0.0, 3000.0])
    with pytest.raises(ValueError, match="speedups"):
        sensitivity(inputs, np.array([1.0, 0.0]))
    g = speedup_grid(3.2, None, 0.3)
    assert g.min() < 0.3 and g.max() > 3.2


@pytest.mark.parametrize("field, bad", [
    ("speedup", 0.0), ("speedup", math.inf), ("speedup", "fast"), ("speedup_low", 2.1),
    ("speedup_high", 1.9), ("gpu_hourly_price", -1.0), ("gpus_per_job", 0),
    ("gpus_per_job", 1.5), ("jobs_per_year", True), ("baseline_hours_per_job", 0.0),
    ("energy_kwh_per_gpu_hour", -0.1), ("carbon_kg_per_kwh", math.nan),
])
def test_invalid_roi_inputs_name_the_field(field, bad):
    with pytest.raises(ValueError, match=field):
        RoiInputs(**{**BASE, field: bad})


def test_roi_inputs_normalise_integral_counts():
    r = RoiInputs(**{**BASE, "gpus_per_job": 8.0, "jobs_per_year": np.int64(3)})
    assert r.gpus_per_job == 8 and isinstance(r.jobs_per_year, int)


bad_values = {
    "speedup": st.sampled_from([0.0, -1.0, math.nan, math.inf]),
    "speedup_low": st.floats(2.0001, 100.0),
    "speedup_high": st.floats(0.01, 1.9999),
    "gpu_hourly_price": st.one_of(st.floats(max_value=-1e-9, allow_infinity=False,
                                            allow_nan=False), st.just(math.nan)),
    "gpus_per_job": st.one_of(st.integers(max_value=0), st.floats(1.01, 1.99)),
    "jobs_per_year": st.one_of(st.integers(max_value=0), st.just(math.inf)),
    "baseline_hours_per_job": st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
    "energy_kwh_per_gpu_hour": st.floats(max_value=-1e-9, allow_nan=False,
                                         allow_infinity=False),
    "carbon_kg_per_kwh": st.just(-math.inf),
}


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(bad_values)).flatmap(
    lambda f: st.tuples(st.just(f), bad_values[f])))
def test_invalid_roi_inputs_property(case):
    field, bad = case
    with pytest.raises(ValueError, match=field):
        RoiInputs(**{**BASE, field: bad})


@settings(max_examples=100, deadline=None)
@given(s1=st.floats(0.05, 20), s2=st.floats(0.05, 20), p1=st.floats(0, 100),
       p2=st.floats(0, 100), hours=st.floats(0.01, 1e4), gpus=st.integers(1, 512),
       jobs=st.integers(1, 10_000))
def test_savings_monotone_in_speedup_and_price(s1, s2, p1, p2, hours, gpus, jobs):
    (s1, s2), (p1, p2) = sorted((s1, s2)), sorted((p1, p2))
    def saved(s, p):
        return roi(RoiInputs(s, s, s, p, gpus, hours, jobs)).cost_saved.estimate
    assert saved(s1, p1) <= saved(s2, p1) + 1e-9 * abs(saved(s2, p1))
    a, b = saved(s1, p1), saved(s1, p2)  # price scales the saving (or the loss)
    assert (a <= b + 1e-9) if s1 >= 1 else (b <= a + 1e-9)
    curve = sensitivity(RoiInputs(s1, s1, s1, p1, gpus, hours, jobs), np.linspace(0.1, 5, 50))
    assert np.all(np.diff(curve) >= -1e-9)


def test_paper_claims_and_scenario():
    t = PAPER_CLAIMS["time_saved"]
    assert t.value == pytest.approx(0.2968, abs=1e-4) and t.speedup == pytest.approx(1.4222, 1e-4)
    assert t.n_runs == 1 and "608.0" in t.how_obtained and "864.7" in t.how_obtained
    assert PAPER_CLAIMS["accuracy_gain"].value == pytest.approx(2.49, abs=0.01)
    roi_module = importlib.import_module("alto.analysis.roi")  # alto.analysis.roi is the function
    assert roi_module.PAPER_CLAIMS is PAPER_CLAIMS  # reachable from the roi module as well
    scen = paper_scenario(RoiInputs(**BASE))
    assert scen.speedup == scen.speedup_low == scen.speedup_high == t.speedup
    assert scen.gpu_hourly_price == BASE["gpu_hourly_price"]
    with pytest.raises(ValueError, match="key"):
        paper_scenario(RoiInputs(**BASE), "accuracy_gain")
    assert with_speedup(RoiInputs(**BASE), 3.0, 2.0, 4.0).speedup_high == 4.0


# -- store_io on a real temporary store ---------------------------------------------------

EVAL_STEPS = range(0, 1001, 100)


def _acc(step: int, rate: float, cap: float) -> float:
    return min(cap, step * rate)


@pytest.fixture
def exp(tmp_path):
    """lamb @0.01 reaches 0.5 at step 500, alto @0.01 at step 250, lamb @0.1 never;
    lion diverges. s/step = 0.1 * (1 + 0.1 * seed) for every run."""
    store = Store(tmp_path / "alto.db")
    e = store.create_experiment("cmp")
    arms = [("lamb", 0.01, 0.001, 0.9, "finished"), ("lamb", 0.1, 0.0004, 0.4, "finished"),
            ("alto", 0.01, 0.002, 0.95, "finished"), ("lion", 0.01, 0.001, 0.9, "diverged")]
    ids: dict[tuple[str, float], list[int]] = {}
    for opt, lr, rate, cap, status in arms:
        for seed in range(3):
            rid = store.add_run(e, name=f"{opt}-{lr}-{seed}", optimizer=opt, seed=seed, lr=lr,
                                config={"n_devices": 2}, status=status)
            ids.setdefault((opt, lr), []).append(rid)
            sps = 0.1 * (1 + 0.1 * seed)
            with store.writer(rid, flush_every_s=math.inf) as w:
                for step in range(0, 1001, 10):
                    vals = {"train/loss": 2.0 - step / 1000 + 0.1 * seed}
                    if step in EVAL_STEPS:
                        acc = _acc(step, rate, cap)
                        if status == "diverged" and step >= 300:
                            acc = math.nan
                        vals.update({"val/acc": acc, "test/acc": 1 - acc})
                    w.log(step, vals, wall_time=step * sps, samples=step * 64)
    yield store, e, ids
    store.close()


def test_best_lr_only_on_validation_metrics(exp):
    store, e, _ = exp
    assert best_lr_per_optimizer(store, e) == {"lamb": 0.01, "alto": 0.01, "lion": 0.01}
    with pytest.raises(ValueError, match="metric must be a validation metric"):
        best_lr_per_optimizer(store, e, metric="test/acc")


def test_target_results_from_store(exp):
    store, _, ids = exp
    res = target_results(store, ids[("alto", 0.01)], "val/acc", 0.5)
    first = res[ids[("alto", 0.01)][0]]
    assert first.steps == pytest.approx(250) and first.wall_s == pytest.approx(25.0)
    assert first.samples == pytest.approx(250 * 64) and first.device_hours == pytest.approx(
        25.0 / 3600 * 2)
    assert not any(r.reached for r in target_results(store, ids[("lion", 0.01)], "val/acc",
                                                     0.5).values())


def test_experiment_table(exp):
    store, e, _ = exp
    df = experiment_table(store, e, threshold=0.5)
    assert df.attrs["baseline_lr"] == 0.01 and df.attrs["x"] == "wall_time"
    rows = {(r.optimizer, r.lr): r for r in df.itertuples()}
    assert len(df) == 4
    alto = rows[("alto", 0.01)]
    assert alto.n_runs == 3 and alto.n_reached == 3 and alto.final_mean == pytest.approx(0.95)
    assert alto.target_mean == pytest.approx(25 * 1.1)  # 25, 27.5, 30 s
    assert alto.steps_to_target_mean == pytest.approx(250)
    assert alto.speedup == pytest.approx(2.0)
    assert alto.speedup_low <= 2.0 <= alto.speedup_high and alto.speedup_note == ""
    base = rows[("lamb", 0.01)]
    assert base.is_baseline and base.speedup == 1.0 and base.speedup_note == "baseline"
    slow = rows[("lamb", 0.1)]
    assert slow.n_reached == 0 and math.isnan(slow.speedup)
    assert "not reached" in slow.speedup_note
    lion = rows[("lion", 0.01)]
    assert lion.n_diverged == 3 and "not reached" in lion.speedup_note
    assert lion.best_mean == pytest.approx(0.2)

    loss = experiment_table(store, e, metric="train/loss", mode="min", threshold=1.5, x="step")
    assert loss.attrs["select_on"] == ("val/acc", "max") and loss.attrs["baseline_lr"] == 0.01
    # train/loss = 2 - step/1000 + 0.1*seed: steps 500, 600, 700 for every arm
    assert np.allclose(loss["steps_to_target_mean"], 600) and np.allclose(loss["speedup"], 1.0)

    hard = experiment_table(store, e, threshold=0.95).set_index(["optimizer", "lr"])
    assert hard.loc[("lamb", 0.01), "speedup_note"] == "baseline: not reached by any run"
    assert math.isnan(hard.loc[("lamb", 0.01), "speedup"])
    assert hard.loc[("alto", 0.01), "n_reached"] == 3
    assert "not reached: baseline 0/3" in hard.loc[("alto", 0.01), "speedup_note"]

    no_thr = experiment_table(store, e)
    assert (no_thr["speedup_note"] == "no threshold").all()
    steps = experiment_table(store, e, threshold=0.5, x="step")
    assert steps.set_index(["optimizer", "lr"]).loc[("alto", 0.01), "target_mean"] == 250
    with pytest.raises(ValueError, match="x must be one of"):
        experiment_table(store, e, x="time")

    art = save_experiment_table(store, e, df)
    payload = store.artifacts(kind="experiment_table", experiment_id=e)[0]["payload"]
    assert store.artifacts(kind="experiment_table")[0]["id"] == art
    assert payload["settings"]["threshold"] == 0.5 and len(payload["rows"]) == 4


def test_grouped_series(exp):
    store, _, ids = exp
    runs = ids[("alto", 0.01)] + ids[("lamb", 0.01)]
    g = grouped_series(store, runs, "train/loss", max_points=50)
    assert set(g) == {"alto", "lamb"}
    lamb = g["lamb"]
    assert len(lamb["grid"]) <= 50 and set(lamb["runs"]) == set(ids[("lamb", 0.01)])
    # loss = 2 - step/1000 + 0.1*seed, seeds 0..2 -> mean offset 0.1, std 0.1
    np.testing.assert_allclose(lamb["mean"], 2.1 - lamb["grid"] / 1000)
    np.testing.assert_allclose(lamb["std"], 0.1)
    assert (lamb["n"] == 3).all() and lamb["grid"][-1] == 1000
    run = lamb["runs"][ids[("lamb", 0.01)][2]]
    assert run["seed"] == 2 and len(run["x"]) <= 50

    smooth = grouped_series(store, runs, "train/loss", smoothing=0.6, max_points=40)
    assert all(len(v["grid"]) <= 40 for v in smooth.values())
    assert smooth["alto"]["mean"][-1] > g["alto"]["mean"][-1]  # lags the falling loss

    wall = grouped_series(store, ids[("lamb", 0.01)] + ids[("lamb", 0.1)], "val/acc",
                          x="wall_time")
    assert set(wall) == {"lamb (lr=0.01)", "lamb (lr=0.1)"}
    assert wall["lamb (lr=0.01)"]["grid"].max() == pytest.approx(120.0)  # seed 2: 1000 x 0.12
    assert grouped_series(store, runs, "never/logged") == {}


def test_baseline_lr_for_a_language_model_is_chosen_on_val_ppl(tmp_path):
    store = Store(tmp_path / "lm.db")
    e = store.create_experiment("lm")
    for lr, ppl in ((0.01, 90.0), (0.001, 80.0)):
        for seed in range(2):
            rid = store.add_run(e, name="r", optimizer="lamb", seed=seed, lr=lr, config={},
                                status="finished")
            with store.writer(rid, flush_every_s=math.inf) as w:
                w.log(0, {"train/loss": 5.0, "val/ppl": 500.0}, wall_time=0.0)
                w.log(10, {"train/loss": 4.0, "val/ppl": ppl}, wall_time=1.0)
    df = experiment_table(store, e, metric="train/loss", mode="min", threshold=4.5)
    assert df.attrs["select_on"] == ("val/ppl", "min") and df.attrs["baseline_lr"] == 0.001
    with pytest.raises(ValueError, match="select_on"):
        experiment_table(store, e, metric="train/loss", mode="min", threshold=4.5,
                         select_on=("val/acc", "max"))
    store.close()
