"""alto.analysis: what a speed-up saves (savings), the paper's claims, and an experiment read
from a real temporary store (experiment)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alto.analysis.claims import PAPER_CLAIMS, paper_scenario
from alto.analysis.experiment import (
    best_lr_per_optimizer, experiment_table, grouped_series, save_experiment_table,
    target_results,
)
from alto.analysis.measured import measure
from alto.analysis.savings import RoiInputs, roi, sensitivity, speedup_grid, with_speedup
from alto.store import Store
from val_error_db import make_val_error_db

# -- savings -------------------------------------------------------------------------------

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
    scen = paper_scenario(RoiInputs(**BASE))
    assert scen.speedup == scen.speedup_low == scen.speedup_high == t.speedup
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


def test_direction_defaults_to_the_metric_rule(tmp_path):
    store = Store(make_val_error_db(tmp_path / "errors.db"))
    m = measure(store, 1, candidate="alto", baseline="lamb", metric="val/error", threshold=0.5)
    assert m.mode == "min" and m.speedup.estimate == pytest.approx(2.0)
    assert m.difference.estimate == pytest.approx(-0.1)  # alto ends 0.1 lower
    assert best_lr_per_optimizer(store, 1, "val/error") == {"alto": 0.01, "lamb": 0.01}
    table = experiment_table(store, 1, metric="val/error", threshold=0.5)
    assert table.attrs["mode"] == "min" and table.attrs["select_on"] == ("val/error", "min")
    with pytest.raises(ValueError, match="mode must be one of"):
        experiment_table(store, 1, metric="val/error", mode="lower")
    store.close()


def test_a_baseline_lr_without_a_validation_metric_cannot_be_chosen(tmp_path):
    store = Store(tmp_path / "noval.db")
    e = store.create_experiment("no val")
    for lr in (0.01, 0.1):
        rid = store.add_run(e, name="r", optimizer="lamb", seed=0, lr=lr, config={}, status="finished")
        with store.writer(rid, flush_every_s=math.inf) as w:
            w.log(0, {"train/loss": 1.0}, wall_time=0.0)
    with pytest.raises(ValueError, match="select_on: the 'lamb' runs logged no validation metric"):
        experiment_table(store, e, metric="train/loss")
    with pytest.raises(ValueError, match="select_on: the 'lamb' runs did not log 'val/acc'"):
        experiment_table(store, e, metric="train/loss", select_on=("val/acc", "max"))
    store.close()
