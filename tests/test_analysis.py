"""alto.analysis: what a speed-up saves (savings), the paper's claims, and an experiment read
from a real temporary store (experiment)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alto.analysis.claims import PAPER_CLAIMS, paper_scenario
from alto.analysis.experiment import grouped_series
from alto.analysis.savings import RoiInputs, roi, sensitivity, speedup_grid, with_speedup
from alto.store import Store

# -- savings -------------------------------------------------------------------------------

BASE = dict(speedup=2.0, speedup_low=1.5, speedup_high=2.5, evidence="faster", gpu_hourly_price=3.0,
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
    r = roi(RoiInputs(**{**BASE, "speedup": 0.8, "speedup_low": 0.7, "speedup_high": 0.9, "evidence": "slower"}))
    assert r.gpu_hours_saved.estimate == pytest.approx(-500.0)
    assert r.cost_saved.estimate == pytest.approx(-1500.0)
    assert r.verdict.startswith("Costs money")


def test_roi_says_saves_only_for_a_verdict_of_faster():
    """Only "faster" saves; anything else is the range of outcomes, stated neutrally (an
    overconfident CI once turned 1.24x [1.11, 1.38] into "Saves money ... $2,880 to $7,855")."""
    unsure = roi(RoiInputs(**{**BASE, "speedup": 1.24, "speedup_low": 0.8, "speedup_high": 1.9,
                              "evidence": "not enough evidence"}))
    assert unsure.verdict.startswith("Not established") and "Saves" not in unsure.verdict
    assert "0.80x to 1.90x" in unsure.verdict
    same = roi(RoiInputs(**{**BASE, "speedup": 1.0, "speedup_low": 0.95, "speedup_high": 1.05,
                            "evidence": "no meaningful difference"}))
    assert same.verdict.startswith("No meaningful saving")
    partial = roi(RoiInputs(**{**BASE, "speedup": 0.67, "speedup_low": 0.67, "speedup_high": 0.67,
                               "evidence": "not enough evidence"}))  # a miss-priced cost ratio: no interval
    assert "no interval" in partial.verdict and partial.cost_saved.estimate < 0
    claim = roi(RoiInputs(**{**BASE, "evidence": "claim"}))
    assert claim.verdict.startswith("If the claim held") and "not measured here" in claim.verdict
    free = roi(RoiInputs(**{**BASE, "gpu_hourly_price": 0.0}))
    assert free.verdict.startswith("Saves GPU time") and free.cost_saved.estimate == 0.0


def test_an_interval_need_not_contain_the_estimate():
    r = RoiInputs(**{**BASE, "speedup": 0.67, "speedup_low": 0.9, "speedup_high": 1.5,
                     "evidence": "not enough evidence"})
    assert roi(r).gpu_hours_saved.estimate < 0


def test_sensitivity_matches_roi_and_grid_covers_points():
    inputs = RoiInputs(**BASE)
    np.testing.assert_allclose(sensitivity(inputs, np.array([0.5, 1.0, 2.0])),
                               [-6000.0, 0.0, 3000.0])
    with pytest.raises(ValueError, match="speedups"):
        sensitivity(inputs, np.array([1.0, 0.0]))
    g = speedup_grid(3.2, None, 0.3)
    assert g.min() < 0.3 and g.max() > 3.2


@pytest.mark.parametrize("field, bad", [
    ("speedup", 0.0), ("speedup", math.inf), ("speedup", "fast"), ("speedup_low", 2.6),
    ("speedup_high", 1.4), ("evidence", "great"), ("gpu_hourly_price", -1.0), ("gpus_per_job", 0),
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
    "speedup_low": st.floats(2.5001, 100.0),
    "speedup_high": st.floats(0.01, 1.4999),
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
        return roi(RoiInputs(s, s, s, "faster", p, gpus, hours, jobs)).cost_saved.estimate
    assert saved(s1, p1) <= saved(s2, p1) + 1e-9 * abs(saved(s2, p1))
    a, b = saved(s1, p1), saved(s1, p2)  # price scales the saving (or the loss)
    assert (a <= b + 1e-9) if s1 >= 1 else (b <= a + 1e-9)
    curve = sensitivity(RoiInputs(s1, s1, s1, "faster", p1, gpus, hours, jobs), np.linspace(0.1, 5, 50))
    assert np.all(np.diff(curve) >= -1e-9)


def test_paper_claims_and_scenario():
    t = PAPER_CLAIMS["time_saved"]
    assert t.value == pytest.approx(0.2968, abs=1e-4) and t.speedup == pytest.approx(1.4222, 1e-4)
    assert t.n_runs == 1 and "608.0" in t.how_obtained and "864.7" in t.how_obtained
    assert PAPER_CLAIMS["accuracy_gain"].value == pytest.approx(2.49, abs=0.01)
    scen = paper_scenario(RoiInputs(**BASE))
    assert scen.speedup == scen.speedup_low == scen.speedup_high == t.speedup and scen.evidence == "claim"
    assert (t.metric, t.threshold) == ("test/acc", 0.6)
    assert scen.gpu_hourly_price == BASE["gpu_hourly_price"]
    with pytest.raises(ValueError, match="key"):
        paper_scenario(RoiInputs(**BASE), "accuracy_gain")
    assert with_speedup(RoiInputs(**BASE), 3.0, 2.0, 4.0).speedup_high == 4.0


# -- experiment: read from a real temporary store --------------------------------------------

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
