"""alto.presentation: what the Compare, Gradients, Runs and ROI pages and the report show
(views), the formatters (fmt), and the layer heatmap."""
import math

import numpy as np
import pandas as pd
import pytest

from alto.analysis.experiment import grouped_series
from alto.analysis.verdicts import compare
from alto.analysis.savings import RoiInputs, Span, roi
from alto.plots.gradients import layer_heatmap, log_ticks
from alto.presentation import fmt, views
from alto.stats.aggregate import group_labels, group_runs
from alto.stats.smoothing import ema_debiased
from alto.stats.speedup import metric_difference, speedup
from alto.store import Store
from val_error_db import THRESHOLD, make_val_error_db


def run(i, opt, seed=0, lr=0.01, status="finished", **extra):
    return {"id": i, "optimizer": opt, "seed": seed, "lr": lr, "status": status, "name": f"r{i}",
            "experiment_id": 1, **extra}


def series(steps, values, x=None):
    steps = np.asarray(steps)
    return {"step": steps, "x": np.asarray(steps if x is None else x, dtype=float),
            "value": np.asarray(values, dtype=float)}


@pytest.fixture(scope="module")
def store(filled_db):
    s = Store(filled_db)
    yield s
    s.close()


@pytest.fixture(scope="module")
def runs(store):
    return store.list_runs()


# -- choosing what to plot ---------------------------------------------------------------

def test_curve_keys_puts_eval_metrics_first_and_drops_non_curves():
    keys = ["lr", "train/loss", "val/acc", "layer_trust/net.1.weight", "params/count", "a_norm",
            "test/acc"]
    assert views.curve_keys(keys) == ["val/acc", "test/acc", "train/loss", "a_norm", "lr"]


@pytest.mark.parametrize("keys, expected", [
    (["lr", "val/loss", "val/acc"], "val/acc"), (["val/ppl", "val/loss"], "val/ppl"),
    (["train/loss", "lr"], "train/loss"), (["lr"], "lr"), ([], None)])
def test_default_metric(keys, expected):
    assert views.default_metric(keys) == expected


def test_default_threshold_only_for_the_targets_metric():
    targets = {"metric": "val/acc", "mode": "max", "thresholds": [0.9, 0.95]}
    assert views.default_threshold("val/acc", targets) == 0.9
    assert views.default_threshold("val/loss", targets) is None
    assert views.default_threshold("val/acc", {}) is None
    assert views.default_threshold("val/acc", {"metric": "val/acc", "thresholds": []}) is None


def test_default_runs():
    rs = [run(1, "a"), run(2, "a", status="diverged"), run(3, "a", status="failed"),
          run(4, "a", status="running")]
    assert views.default_run_ids(rs) == [1, 2]
    live = [run(1, "a", status="queued"), run(2, "a", status="running"), run(3, "a", status="failed")]
    assert views.default_run_ids(live) == [2, 3]


def test_keep_best_lr_keeps_one_lr_per_decided_optimizer():
    rs = [run(1, "alto", lr=0.1), run(2, "alto", lr=0.01), run(3, "sgd", lr=0.5),
          run(4, "lion", lr=1e-3), run(5, "lion", lr=1e-4)]
    kept, undecided = views.keep_best_lr(rs, {"alto": 0.01, "sgd": 0.5})
    assert [r["id"] for r in kept] == [2, 3, 4, 5]
    assert undecided == ["lion"]


def test_step_limits():
    assert views.step_limits([run(1, "a", last_step=9), run(2, "a", last_step=29)]) == (0, 29)
    assert views.step_limits([run(1, "a", last_step=None)]) == (0, 0)


# -- grouping ---------------------------------------------------------------------------

def test_group_labels_add_lr_only_when_an_optimizer_has_several():
    rs = [run(1, "alto", lr=0.1), run(2, "alto", lr=0.01), run(3, "sgd", lr=0.5),
          run(4, "sgd", lr=0.5, seed=1)]
    assert group_labels(rs) == {1: "alto (lr=0.1)", 2: "alto (lr=0.01)", 3: "sgd", 4: "sgd"}


def test_line_dashes_tell_lrs_of_one_optimizer_apart():
    dashes = views.line_dashes(["alto (lr=0.01)", "alto (lr=0.003)", "lamb", "alto (lr=0.1)"])
    assert dashes == {"alto (lr=0.01)": "solid", "alto (lr=0.003)": "dash", "lamb": "solid",
                      "alto (lr=0.1)": "dot"}
    assert views.dash_for("alto (lr=0.003) seed 1 (run 4)", dashes) == "dash"
    assert views.dash_for("alto (lr=0.003) ±1 std", dashes) == "dash"
    assert views.dash_for("alto (lr=0.01)", dashes) == "solid"
    assert views.dash_for("sgd", dashes) == "solid"


def test_group_runs_mean_std_min_max_over_seeds():
    rs = [run(1, "alto"), run(2, "alto", seed=1), run(3, "sgd")]
    data = {1: series([0, 1, 2], [1.0, 2.0, 3.0]), 2: series([0, 1, 2], [3.0, 4.0, 5.0]),
            3: series([0, 1, 2], [0.0, 0.0, 0.0])}
    g = group_runs(rs, data)
    assert list(g) == ["alto", "sgd"]
    np.testing.assert_allclose(g["alto"]["mean"], [2.0, 3.0, 4.0])
    np.testing.assert_allclose(g["alto"]["std"], [math.sqrt(2)] * 3)
    np.testing.assert_allclose(g["alto"]["min"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(g["alto"]["max"], [3.0, 4.0, 5.0])
    np.testing.assert_array_equal(g["alto"]["n"], [2, 2, 2])
    assert set(g["alto"]["runs"]) == {1, 2} and g["alto"]["runs"][2]["seed"] == 1
    assert np.isnan(g["sgd"]["std"]).all()  # one seed: no std
    assert views.seed_counts(g) == {"alto": 2, "sgd": 1}
    assert views.seeds_sentence(g) == "n seeds: alto 2, sgd 1"
    assert views.seeds_sentence({}) == "no runs with data"


def test_group_runs_leaves_out_runs_and_groups_without_data():
    rs = [run(1, "alto"), run(2, "sgd"), run(3, "alto", seed=1)]
    data = {1: series([0, 1], [1.0, 2.0]), 2: series([], []), 3: series([], [])}
    g = group_runs(rs, data)
    assert list(g) == ["alto"] and list(g["alto"]["runs"]) == [1]


def test_group_runs_smooths_before_cutting_and_downsampling():
    n = 10_000
    rng = np.random.default_rng(0)
    values = rng.normal(size=n)
    rs = [run(1, "alto")]
    g = group_runs(rs, {1: series(np.arange(n), values)}, smoothing=0.9,
                         first_step=5_000, max_points=500)
    xs, ys = g["alto"]["runs"][1]["x"], g["alto"]["runs"][1]["y"]
    assert xs.size <= 500 and g["alto"]["grid"].size <= 500
    assert xs[0] == 5_000 and xs[-1] == n - 1
    smoothed = ema_debiased(values, 0.9)  # over the whole run, not restarted at the cut
    np.testing.assert_allclose(ys, smoothed[xs.astype(int)])


def test_group_runs_rejects_bad_max_points():
    with pytest.raises(ValueError, match="max_points"):
        group_runs([], {}, max_points=0)


def test_overlay_and_frames():
    rs = [run(1, "alto"), run(2, "alto", seed=1)]
    g = group_runs(rs, {1: series([0, 1], [1.0, 2.0]), 2: series([0, 1], [3.0, 4.0])})
    over = views.overlay_series(g, rs)
    assert list(over) == ["alto seed 0 (run 1)", "alto seed 1 (run 2)"]
    frame = views.groups_frame(g, "step")
    assert list(frame.columns) == ["group", "step", "mean", "std", "min", "max", "n_seeds"]
    assert len(frame) == 2 and frame["mean"].tolist() == [2.0, 3.0]
    per_run = views.overlay_frame(g, "wall_time")
    assert list(per_run.columns) == ["group", "run_id", "seed", "lr", "wall_time", "value"]
    assert len(per_run) == 4
    assert views.groups_frame({}, "step").empty and views.overlay_frame({}, "step").empty


@pytest.mark.parametrize("smoothing", [0.0, 0.5])
def test_grouped_series_reads_only_the_step_range(store, runs, smoothing):
    ids = [r["id"] for r in runs]
    g = grouped_series(store, ids, "train/loss", smoothing=smoothing, step_range=(10, 20))
    assert views.seed_counts(g) == {"alto": 2, "lamb": 2, "sgd": 2, "lion": 2}
    for group in g.values():
        assert group["grid"].min() >= 10 and group["grid"].max() <= 20
    assert grouped_series(store, [], "train/loss") == {}
    # smoothing starts at step 0 whatever the range: the smoothed value at a step stays put
    if smoothing:
        whole = grouped_series(store, ids, "train/loss", smoothing=smoothing)
        for label, group in g.items():
            at_15 = whole[label]["mean"][np.searchsorted(whole[label]["grid"], 15)]
            assert group["mean"][np.searchsorted(group["grid"], 15)] == pytest.approx(at_15)


def test_grouped_series_caps_points(store, runs):
    g = grouped_series(store, [r["id"] for r in runs], "train/loss", max_points=7)
    assert all(group["grid"].size <= 7 for group in g.values())


# -- verdict tables ------------------------------------------------------------------------

def test_verdict_and_arm_tables_on_a_real_experiment(store, runs):
    comparison = compare(store, runs[0]["experiment_id"], metric="val/acc", thresholds=[0.5])
    verdicts = views.verdict_table(comparison)
    assert verdicts["candidate"].str.split(" ").str[0].tolist() == ["alto", "lion", "sgd"]
    assert set(verdicts["verdict"]) <= {"faster", "slower", "no meaningful difference", "not enough evidence"}
    arms = views.arm_table(comparison)
    assert arms["optimizer"].tolist() == ["alto", "lamb (baseline)", "lion", "sgd"]
    assert arms["runs"].tolist() == [2, 2, 2, 2] and all(a.endswith("✓") for a in arms["lr"])
    assert "time to target per seed (s)" in arms.columns
    assert all(" ± " in v for v in arms["final val/acc (mean ± std)"])


def test_arm_table_ranks_val_error_as_lower_is_better(tmp_path):
    store = Store(make_val_error_db(tmp_path / "errors.db"))
    comparison = compare(store, 1, metric="val/error", thresholds=[THRESHOLD], baseline="lamb", axis="step")
    assert comparison.mode == "min"
    arms = views.arm_table(comparison).set_index("optimizer")
    assert arms.loc["alto", "time to target per seed (steps)"] == "34.3, 35.2 steps"  # steps 33.3, 34.2 run -> +1
    assert arms.loc["alto", "reached"].startswith("2/2")
    assert comparison.row("alto").result.estimate > 1.9
    store.close()


# -- formatters ---------------------------------------------------------------------------

def test_mean_pm_std_is_the_one_mean_std_formatter():
    assert fmt.mean_pm_std(0.951234, 0.01234) == "0.9512 ± 0.012"
    assert fmt.mean_pm_std(12345.6, math.nan) == "1.235e+04"  # one value: no spread to show
    assert fmt.mean_pm_std(2.0, None) == "2"
    for missing in (None, math.nan, math.inf):
        assert fmt.mean_pm_std(missing, 0.1) == "–"
    assert fmt.number(math.nan) == "–" and fmt.number(1 / 3, 2) == "0.33"


def test_speedup_and_difference_text():
    res = speedup([19.0, 20.0, 21.0], [9.5, 10.0, 10.5])
    assert fmt.speedup(res).startswith("2.00x (3 vs 3 seeds, 95% CI ")
    partial = fmt.speedup(speedup([10.0, None, 30.0], [5.0, 10.0, 15.0], baseline_spent=[10, 40, 30],
                                  candidate_spent=[5, 10, 15]))
    assert partial == "4.00x (3 vs 3 seeds, no interval)"
    assert fmt.speedup(speedup([10.0], [5.0])) == "2.00x (1 vs 1 seeds, range 2.00–2.00)"
    assert "not reached" in fmt.speedup(speedup([None, None], [5.0, 6.0]))
    diff = fmt.difference(metric_difference([0.9549, 0.9551], [0.95, 0.9502]), "val/acc")
    assert diff.startswith("+0.49 points (2 vs 2 seeds, 95% CI ")  # not "+0.00"
    assert fmt.difference(metric_difference([2.5], [3.0]), "val/loss") == "-0.50 (1 vs 1 seeds, range -0.50 to -0.50)"


def test_span_and_roi_rows():
    assert fmt.span(None, ",.0f") == "-"
    assert fmt.span(Span(1000.0, 1000.0, 1000.0), ",.0f") == "1,000"
    assert fmt.span(Span(1000.0, 1200.0, 800.0), ",.0f") == "1,000 (800 to 1,200)"
    inputs = RoiInputs(speedup=2.0, speedup_low=1.5, speedup_high=2.5, evidence="faster", gpu_hourly_price=3.0,
                       gpus_per_job=4, baseline_hours_per_job=10.0, jobs_per_year=50)
    rows = views.roi_rows(roi(inputs), inputs)
    assert rows["speed-up"] == "2.00x (1.50x to 2.50x)"
    assert rows["baseline GPU-hours / year"] == "2,000"
    assert rows["cost saved / year ($)"] == "3,000 (2,000 to 3,600)"
    assert rows["energy saved / year (kWh)"] == "-"  # not estimated
    assert rows["verdict"].startswith("Saves money")


# -- gradients ------------------------------------------------------------------------------

def test_every_panel_has_one_reading_sentence():
    for p in views.GRADIENT_PANELS:
        assert p.how_to_read.count(". ") == 0 and p.how_to_read.endswith(".")
    keys = {k for p in views.GRADIENT_PANELS for k in p.keys}
    assert {"a_norm", "cos_grad_prev", "alpha_a_share", "grad_norm", "update_norm",
            "trust_ratio_min", "trust_ratio_mean", "trust_ratio_max", "step_curvature"} <= keys


def test_missing_optimizers_on_real_runs(store, runs):
    summary = store.summary([r["id"] for r in runs])
    assert views.missing_optimizers(runs, summary, ("a_norm",)) == ["lamb", "lion", "sgd"]
    assert views.missing_optimizers(runs, summary, views.TRUST_KEYS) == ["lion", "sgd"]
    assert views.missing_optimizers(runs, summary, ("grad_norm",)) == []
    have = views.runs_with_keys(runs, summary, ("a_norm",))
    assert {r["optimizer"] for r in have} == {"alto"} and len(have) == 2


def test_trust_band_interpolates_min_max_onto_the_mean_grid():
    mean = {"alto": {"grid": np.array([0.0, 1.0, 2.0, 3.0]), "mean": np.ones(4), "n": np.ones(4)}}
    low = {"alto": {"grid": np.array([0.0, 2.0]), "mean": np.array([0.0, 2.0])}}
    high = {"alto": {"grid": np.array([1.0, 3.0]), "mean": np.array([5.0, 7.0])}}
    g = views.trust_band(mean, low, high)["alto"]
    np.testing.assert_allclose(g["min"], [0.0, 1.0, 2.0, np.nan])
    np.testing.assert_allclose(g["max"], [np.nan, 5.0, 6.0, 7.0])
    assert "std" not in g
    assert "min" not in views.trust_band(mean, {}, high)["alto"]


def test_layer_matrix_from_long_rows():
    df = pd.DataFrame({"key": ["layer_trust/b", "layer_trust/a", "layer_trust/b", "lr"],
                       "step": [0, 0, 5, 0], "value": [1.0, 2.0, 3.0, 9.0]})
    matrix, steps, layers = views.layer_matrix(df)
    assert layers == ["b", "a"]
    np.testing.assert_array_equal(steps, [0, 5])
    np.testing.assert_allclose(matrix, [[1.0, 3.0], [2.0, np.nan]])
    empty = views.layer_matrix(df[df["key"] == "lr"])
    assert empty[0].shape == (0, 0) and empty[2] == []


def test_layer_matrix_on_a_real_run(store, runs):
    alto = next(r for r in runs if r["optimizer"] == "alto")
    matrix, steps, layers = views.layer_matrix(views.layer_trust_frame(store, alto["id"]))
    assert layers and matrix.shape == (len(layers), steps.size) and steps.size >= 2
    assert np.isfinite(matrix).all() and (matrix > 0).all()
    sgd = next(r for r in runs if r["optimizer"] == "sgd")
    assert views.layer_trust_frame(store, sgd["id"]).empty


def test_layer_heatmap_uses_category_rows_and_real_value_ticks():
    matrix = np.array([[0.01, 0.1, 1.0], [0.02, np.nan, 0.0]])
    fig = layer_heatmap(matrix, np.array([0, 10, 20]), ["net.0.weight", "net.2.weight"])
    assert fig.layout.yaxis.type == "category"
    trace = fig.data[0]
    assert list(trace.y) == ["net.0.weight", "net.2.weight"]
    z = np.asarray(trace.z, dtype=float)
    assert z[0, 0] == pytest.approx(-2.0) and np.isnan(z[1, 1]) and np.isnan(z[1, 2])
    assert list(trace.colorbar.ticktext)[0] == "0.01" and list(trace.colorbar.ticktext)[-1] == "1"
    with pytest.raises(ValueError, match="shape"):
        layer_heatmap(matrix, np.array([0, 1]), ["a", "b"])
    wide = layer_heatmap(np.ones((2, 5000)), np.arange(5000), ["a", "b"])
    assert len(wide.data[0].x) <= 2000


def test_log_ticks():
    assert log_ticks(0.03, 0.4) == [0.05, 0.1, 0.2]
    assert log_ticks(0.3, 0.4) == [0.3, 0.4]
    assert log_ticks(0.0, 1.0) == []


# -- runs --------------------------------------------------------------------------------

def test_first_line_and_duration():
    assert views.first_line("\n  Traceback (most recent call last):\n  boom") == \
        "Traceback (most recent call last):"
    assert views.first_line(None) == ""
    assert views.first_line("x" * 300, limit=10) == "x" * 9 + "…"
    assert fmt.duration(None) == "-" and fmt.duration(math.nan) == "-" and fmt.duration(-1) == "-"
    assert fmt.duration(42.4) == "42 s"
    assert fmt.duration(185) == "3 min 05 s"
    assert fmt.duration(7620) == "2 h 07 min"


def test_run_duration_and_steps():
    assert views.run_duration({"started_at": 10.0, "finished_at": 25.0}, now=100.0) == 15.0
    assert views.run_duration({"started_at": 10.0, "status": "running"}, now=100.0) == 90.0
    assert views.run_duration({"started_at": 10.0, "status": "crashed"}, now=100.0) is None
    assert views.run_duration({"started_at": None}, now=100.0) is None
    assert views.steps_text({"last_step": 39, "total_steps": 40}) == "40/40"
    assert views.steps_text({"last_step": None, "total_steps": None}) == "0/?"


def test_runs_table_on_real_runs(runs):
    table = views.runs_table(runs, {runs[0]["experiment_id"]: "Tiny <b>digits</b>"}, now=0.0,
                             fmt_time=lambda t: "T" if t else "-")
    assert len(table) == 8
    assert table.columns.tolist() == ["id", "name", "optimizer", "seed", "lr", "status", "steps",
                                      "started", "duration", "tags", "notes", "error",
                                      "experiment"]
    assert set(table["status"]) == {"finished"}
    assert set(table["steps"]) == {"30/30"}
    assert table["experiment"].iloc[0] == f"#{runs[0]['experiment_id']} Tiny <b>digits</b>"
    assert set(table["error"]) == {""}


def test_tags_and_labels():
    assert views.parse_tags(" b, a,, b ,c d ") == ["a", "b", "c d"]
    assert views.parse_tags("") == []
    assert views.tag_changes(["a", "b"], ["b", "c"]) == (["c"], ["a"])
    assert views.run_label({"id": 3, "name": "x", "status": "finished"}) == "#3 x (finished)"


