"""ROI that transfers to the user's fleet, on constructed runs and benchmark rows in a real store:
the two factors and their labels, the refusal of a cost measured on another kind of device, the
budget confirmation (queued runs, their schedule, the check, what ROI then uses), seeds needed in
`alto compare --json` against a simulation, and the state bytes there."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from alto.analysis.budget import BUDGET_KIND, budget_check, plan_budget
from alto.analysis.factors import (bench_results, cost_from_bench, cost_from_runs, cost_options, default_cost,
                                   fleet_speedup, save_bench, steps_factor, typed_cost)
from alto.analysis.measured import measure
from alto.analysis.verdicts import compare
from alto.presentation import views
from alto.runner.queue import queue_budget_confirmation
from alto.stats.speedup import speedup
from alto.stats.verdict import interval_word
from alto.store import BUDGET_TAG, Store
from alto.train.config import RunConfig

EVERY = 10  # steps between evaluations
TODAY = time.strftime("%Y-%m-%d")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "fleet.db")
    yield s
    s.close()


def experiment(store: Store, threshold: float = 0.5) -> int:
    return store.create_experiment("fleet", config={"targets": {"metric": "val/acc", "mode": "max",
                                                                "thresholds": [threshold]}})


def config(optimizer: str, seed: int, steps: int) -> dict:
    return RunConfig(optimizer=optimizer, seed=seed, lr=0.01, max_steps=steps, warmup_steps=30,
                     schedule="cosine").to_dict()


def add_run(store: Store, e: int, optimizer: str, seed: int, *, reach: int | None, steps: int = 300,
            ms_per_step: float = 10.0, device: str = "cpu", mem_mb: float = 100.0) -> int:
    """A finished run whose val/acc reaches 0.5 exactly at step `reach` (None: never), timed at
    `ms_per_step` per step on `device`."""
    rid = store.add_run(e, name=f"{optimizer}-{seed}", optimizer=optimizer, seed=seed, lr=0.01,
                        config=config(optimizer, seed, steps), total_steps=steps)
    fill(store, rid, reach=reach, steps=steps, ms_per_step=ms_per_step, device=device, mem_mb=mem_mb)
    return rid


def fill(store: Store, rid: int, *, reach: int | None, steps: int, ms_per_step: float = 10.0, device: str = "cpu",
         mem_mb: float = 100.0, status: str = "finished") -> None:
    """What the engine records for a run (metrics, params, status), without training it."""
    with store.writer(rid, flush_every_s=math.inf) as w:
        for step in range(steps):
            values = {"train/loss": 2.0 - step / steps, "time/step_ms": ms_per_step}
            if step % EVERY == 0 or step == steps - 1:
                values["val/acc"] = 0.4 if reach is None else min(0.9, 0.5 * step / reach)
                values["mem_mb"] = mem_mb
            w.log(step, values, wall_time=(step + 1) * ms_per_step / 1e3)
    store.set_params(rid, {"train_s": steps * ms_per_step / 1e3, "steps_run": steps})
    store.update_run(rid, status=status, device=device, finished_at=time.time(), last_step=steps - 1)


def pair(store: Store, *, device: str = "cpu", lamb_reach=(190, 200, 210), alto_reach=(95, 100, 105),
         lamb_ms: float = 10.0, alto_ms: float = 12.5) -> int:
    e = experiment(store)
    for seed, (b, c) in enumerate(zip(lamb_reach, alto_reach)):
        add_run(store, e, "lamb", seed, reach=b, ms_per_step=lamb_ms, device=device, mem_mb=300.0)
        add_run(store, e, "alto", seed, reach=c, ms_per_step=alto_ms, device=device, mem_mb=340.0)
    return e


BENCH = [{"bench": "optim", "what": "copy_bandwidth", "device": "cuda"},
         *({"bench": "optim", "optimizer": name, "device": "cuda", "params": 354_823_168, "tensors": 292, "ms": ms}
           for name, ms in (("adamw", 3.0), ("alto", 5.0), ("lamb", 4.0), ("alto_fused", 2.0), ("lamb_fused", 1.6))),
         {"bench": "optim", "optimizer": "lion", "device": "cuda", "error": "RuntimeError('boom')"}]


def test_two_factors_multiply_and_say_where_each_was_measured(store):
    e = pair(store)
    m = measure(store, e)
    steps = steps_factor(store, m)
    # after step k has run, k + 1 steps count: times to target are reach + 1
    expected = speedup([191.0, 201.0, 211.0], [96.0, 101.0, 106.0])
    assert steps.measured == pytest.approx(expected.estimate) and steps.estimate == steps.measured
    assert (steps.low, steps.high) == pytest.approx((expected.low, expected.high)) and steps.calibrated
    assert steps.word == "faster" and steps.budget is None and steps.budget_label() == "not confirmed at budget"
    assert steps.provenance.workload == f"digits (mlp), val/acc ≥ 0.5, experiment #{e}"
    assert (steps.provenance.source, steps.provenance.device, steps.provenance.date) == ("lab runs", "cpu", TODAY)

    own = cost_from_runs(store, e, "alto", "lamb")
    assert own.ratio == pytest.approx(10.0 / 12.5) and own.device_kind == "cpu" and own.key == f"runs:{e}"
    assert own.provenance.device == "cpu" and own.provenance.date == TODAY

    save_bench(store, BENCH, shapes="gpt2-medium", device_name="NVIDIA H100 80GB HBM3", torch_version="2.x")
    (bench,) = bench_results(store)
    assert set(bench["rows"]) == {"adamw", "alto", "lamb", "alto_fused", "lamb_fused"}  # the failed row is left out
    gpu = cost_from_bench(bench, "alto", "lamb")
    assert gpu.ratio == pytest.approx(1.6 / 2.0)  # both fused rows when the bench has both
    assert "alto_fused vs lamb_fused, optimizer step alone" in gpu.provenance.workload
    assert gpu.provenance.device == "cuda (NVIDIA H100 80GB HBM3)" and gpu.provenance.date == TODAY
    full = cost_from_bench(bench, "alto", "lamb", rest_ms=8.0)  # forward + backward typed in
    assert full.ratio == pytest.approx((1.6 + 8) / (2.0 + 8)) and "+ 8 ms typed in" in full.provenance.workload
    assert cost_from_bench(bench, "adamw", "lamb").ratio == pytest.approx(4.0 / 3.0)
    with pytest.raises(ValueError, match="no rows for lion"):
        cost_from_bench(bench, "lion", "lamb")

    fleet = fleet_speedup(steps, gpu, fleet_kind="cuda", fleet_name="H100")
    assert fleet.estimate == pytest.approx(steps.measured * 0.8)
    assert (fleet.low, fleet.high) == pytest.approx((steps.low * 0.8, steps.high * 0.8))
    assert fleet.word == interval_word(fleet.low, fleet.high, calibrated=True)
    assert fleet.sentence().startswith(f"On your fleet (H100 (cuda)): {fleet.estimate:.2f}x = {steps.measured:.2f}x "
                                       "fewer steps to val/acc ≥ 0.5 (not confirmed at budget) × 0.80x cost per step")
    assert not [w for w in fleet.warnings if "measured on" in w]  # an H100 bench for an H100 fleet
    assert any("not on L4" in w for w in fleet_speedup(steps, gpu, fleet_name="L4").warnings)
    inputs = fleet.roi_inputs(gpu_hourly_price=2.0, gpus_per_job=8, baseline_hours_per_job=10.0, jobs_per_year=10)
    assert (inputs.speedup, inputs.speedup_low, inputs.evidence) == (fleet.estimate, fleet.low, fleet.word)
    halved = fleet_speedup(steps, gpu, fleet_name="H100", gpus=0.5)  # the candidate needs twice the GPUs
    assert halved.estimate == pytest.approx(fleet.estimate / 2)

    table = views.factor_table(steps, gpu, fleet).set_index("factor")
    assert table.loc["steps to target (baseline / candidate)", "device"] == "cpu"
    assert table.loc["cost per step (baseline / candidate)", "device"] == "cuda (NVIDIA H100 80GB HBM3)"
    assert table.loc["cost per step (baseline / candidate)", "date"] == TODAY
    assert table.loc["your fleet: the product", "value"].startswith(f"{fleet.estimate:.2f}x")
    assert [c.key for c in cost_options(store, e, "alto", "lamb")] == [f"bench:{bench['id']}", f"runs:{e}"]
    assert default_cost(store, e, "alto", "lamb").key == f"bench:{bench['id']}"


def test_a_cost_from_another_kind_of_device_is_refused_and_a_typed_one_is_labelled(store):
    e = pair(store)
    steps = steps_factor(store, measure(store, e))
    cpu = cost_from_runs(store, e, "alto", "lamb")
    with pytest.raises(ValueError, match="measured on cpu and your fleet trains on cuda"):
        fleet_speedup(steps, cpu, fleet_kind="cuda")
    assert fleet_speedup(steps, cpu, fleet_kind="cpu").estimate == pytest.approx(steps.measured * 0.8)
    fallback = default_cost(store, e, "alto", "lamb", fleet_kind="cuda")  # nothing measured on a GPU
    assert fallback.ratio == 1.0 and not fallback.measured and "assumed equal" in fallback.note
    typed = typed_cost(0.9)
    fleet = fleet_speedup(steps, typed, fleet_name="H100")
    assert typed.provenance.source == "typed in" and typed.provenance.device == "not measured"
    assert any("typed in" in w for w in fleet.warnings) and "(typed in)" in fleet.sentence()
    with pytest.raises(ValueError, match="ratio"):
        typed_cost(0)
    mixed = experiment(store)
    add_run(store, mixed, "lamb", 0, reach=100, device="cuda:0")
    add_run(store, mixed, "alto", 0, reach=100, device="cpu")
    with pytest.raises(ValueError, match="one kind of device"):
        cost_from_runs(store, mixed, "alto", "lamb")
    with pytest.raises(ValueError, match="no sgd run"):
        cost_from_runs(store, mixed, "sgd", "lamb")
    # a job of the user's, timed on the fleet's GPUs in an experiment of its own, is found and preferred
    tracked = experiment(store)
    add_run(store, tracked, "lamb", 0, reach=100, ms_per_step=20.0, device="cuda:0")
    add_run(store, tracked, "alto", 0, reach=100, ms_per_step=25.0, device="cuda:0")
    found = default_cost(store, e, "alto", "lamb", fleet_kind="cuda")
    assert found.key == f"runs:{tracked}" and found.ratio == pytest.approx(0.8) and found.device_kind == "cuda"
    assert found.provenance.source == f"timed runs of experiment #{tracked}" and found.provenance.device == "cuda:0"


def test_confirm_at_budget_queues_shortened_runs_and_roi_uses_what_they_show(store):
    e = pair(store)
    before = compare(store, e).rows[0]
    plan, ids = queue_budget_confirmation(store, e, 2)
    expected = speedup([191.0, 201.0, 211.0], [96.0, 101.0, 106.0]).estimate
    assert (plan.candidate, plan.baseline, plan.baseline_steps) == ("alto", "lamb", 300)
    assert plan.steps_speedup == pytest.approx(expected) and plan.budget_steps == math.ceil(300 / expected)
    (artifact,) = store.artifacts(kind=BUDGET_KIND, experiment_id=e)
    assert artifact["payload"]["run_ids"] == ids
    for rid, seed in zip(ids, (3, 4)):  # fresh seeds
        run = store.get_run(rid)
        assert run["tags"] == [BUDGET_TAG] and run["optimizer"] == "alto" and run["seed"] == seed
        cfg = run["config"]
        # the schedule sees the shorter run; the warmup keeps its share of it
        assert cfg["max_steps"] == plan.budget_steps and cfg["schedule"] == "cosine"
        assert cfg["warmup_steps"] == round(30 * plan.budget_steps / 300)
    # the shortened runs never enter a verdict, nor its left-out count
    after = compare(store, e)
    assert after.rows[0].result == before.result and after.left_out == {}
    check = budget_check(store, e, candidate="alto", baseline="lamb", metric="val/acc", threshold=0.5)
    assert check.status == "running" and "not confirmed at budget yet: 0/2" in check.label()

    # both reach the target inside the budget: confirmed, and the steps factor is the budget's
    for rid in ids:
        fill(store, rid, reach=100, steps=plan.budget_steps, ms_per_step=12.5)
    check = budget_check(store, e, candidate="alto", baseline="lamb", metric="val/acc", threshold=0.5)
    assert check.confirmed and (check.reached, check.counted) == (2, 2)
    shown = views.default_run_ids(store.list_runs(experiment_id=e))
    assert len(shown) == 6 and not set(ids) & set(shown)  # finished, yet kept off Compare's default curves
    assert check.steps_to_target == (101.0, 101.0)
    assert check.label() == (f"confirmed at budget: 2/2 alto runs given {plan.budget_steps} steps "
                             f"(300 / {expected:.2f}x, fresh seeds) reached val/acc ≥ 0.5")
    steps = steps_factor(store, measure(store, e))
    assert steps.confirmed_at_budget and steps.estimate == pytest.approx(300 / plan.budget_steps)
    fleet = fleet_speedup(steps, typed_cost(1.0), fleet_name="H100")
    assert fleet.word == "faster" and "(confirmed at budget: 2/2 alto runs" in fleet.sentence()

    # a third run at the same budget misses: not confirmed, and the fleet saving is no longer "faster"
    (third,) = queue_budget_confirmation(store, e, 1)[1]
    fill(store, third, reach=None, steps=plan.budget_steps)
    check = budget_check(store, e, candidate="alto", baseline="lamb", metric="val/acc", threshold=0.5)
    assert check.status == "missed" and check.label().startswith("not confirmed at budget: only 2/3 alto runs")
    steps = steps_factor(store, measure(store, e))
    assert not steps.confirmed_at_budget and steps.estimate == steps.measured
    fleet = fleet_speedup(steps, typed_cost(1.0), fleet_name="H100")
    assert fleet.word == "not enough evidence" and check.label() in fleet.flags
    # other targets and pairs have no confirmation of their own
    assert budget_check(store, e, candidate="alto", baseline="lamb", metric="val/acc", threshold=0.6) is None


def test_nothing_to_confirm_at_budget_is_said_plainly(store):
    e = pair(store)
    with pytest.raises(ValueError, match="a speed-up of at most 1 has no shorter budget"):
        plan_budget(measure(store, e, candidate="lamb", baseline="alto"))
    with pytest.raises(ValueError, match="not reached"):
        plan_budget(measure(store, e, threshold=0.95))
    with pytest.raises(ValueError, match="seeds"):
        queue_budget_confirmation(store, e, 0)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alto.cli", *args], capture_output=True, text=True, timeout=300)


def test_compare_json_seeds_needed_match_a_simulation_and_memory_is_there(store):
    """Five seeds per arm whose log times spread by about 0.15; the seeds per arm `alto compare
    --json` asks for to resolve 1.2x must give about 80% power in a simulation at that spread."""
    e = experiment(store)
    z = [-1.2, -0.5, 0.0, 0.6, 1.1]
    for seed, zs in enumerate(z):
        add_run(store, e, "lamb", seed, reach=100, ms_per_step=10.0 * math.exp(0.15 * zs), mem_mb=300.0)
        add_run(store, e, "alto", seed, reach=100, ms_per_step=10.0 * math.exp(0.15 * z[::-1][seed]), mem_mb=340.0)
    proc = run_cli("compare", "--experiment", str(e), "--json", "--db", str(store.path))
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    log_sd = compare(store, e).rows[0].result.log_sd
    n = row["seeds_needed"]
    assert n == row["seeds_needed_for"]["1.2"] and row["seeds_needed_for"]["1.1"] > n > row["seeds_needed_for"]["1.3"]
    rng = np.random.default_rng(4)

    def power(seeds: int) -> float:
        hits = 0
        for _ in range(800):
            b = np.exp(rng.normal(math.log(100), log_sd, seeds))
            c = np.exp(rng.normal(math.log(100 / 1.2), log_sd, seeds))
            hits += speedup(list(b), list(c)).low > 1
        return hits / 800
    assert 0.72 <= power(n) <= 0.9, f"power at the {n} seeds it asked for"
    assert power(max(2, n - 3)) < 0.72  # and fewer would not do
    assert row["optimizer_state_bytes_per_param"] == {"candidate": 16.0, "baseline": 8.0}
    assert row["peak_memory_mb"] == {"candidate": 340.0, "baseline": 300.0}
    factors = row["factors"]
    assert factors["steps_to_target"]["source"] == "lab runs" and factors["steps_to_target"]["device"] == "cpu"
    assert factors["steps_to_target"]["budget"] == "not confirmed at budget"
    assert factors["cost_per_step"]["source"] == "this experiment's timed runs"
    text = run_cli("compare", "--experiment", str(e), "--db", str(store.path)).stdout
    assert "steps to target:" in text and "cost per step:" in text and "16 vs 8" in text


def test_bench_saves_its_rows_for_the_roi(store, tmp_path):
    e = pair(store, device="cuda:0")  # timed runs of the user's job on a GPU
    proc = run_cli("bench", "optim", "--shapes", "mlp-digits", "--device", "cpu", "--repeats", "1",
                   "--optimizers", "alto,lamb", "--threads", "1", "--save", "--db", str(store.path))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads(proc.stdout.strip().splitlines()[-1])
    assert saved["what"] == "saved" and saved["shapes"] == "mlp-digits" and saved["device"].startswith("cpu (")
    (bench,) = bench_results(store)
    assert bench["shapes"] == "mlp-digits" and bench["params"] == 85_002 and set(bench["rows"]) == {"alto", "lamb"}
    options = cost_options(store, e, "alto", "lamb", fleet_kind="cuda")
    assert [c.key for c in options] == [f"runs:{e}", f"bench:{bench['id']}"]  # the GPU measurement first
    with pytest.raises(ValueError, match="measured on cpu"):
        fleet_speedup(steps_factor(store, measure(store, e)), options[1], fleet_kind="cuda")
    bad = run_cli("bench", "optim", "--shapes", "gpt5", "--db", str(store.path))
    assert bad.returncode != 0 and "shapes must be one of gpt2-small" in bad.stderr
    helptext = run_cli("bench", "optim", "--help").stdout
    from alto.models.shapes import shape_names
    assert all(name in helptext for name in shape_names())


# -- the pages and the report ------------------------------------------------------------------

def page(name: str, store: Store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT
    monkeypatch.setenv("ALTO_DB", str(store.path))
    at = AppTest.from_file(str(ROOT / "app" / "sections" / f"{name}.py"), default_timeout=120).run()
    assert not at.exception
    return at


def test_launch_shows_the_seeds_a_comparison_needs_beside_its_run_count(store, monkeypatch):
    fresh = page("launch", store, monkeypatch)
    (plan,) = [i.value for i in fresh.info if i.value.startswith("Seeds per arm")]
    assert "1.1x 19, 1.2x 6, 1.3x 4 (spread 0.10 of log time to target, assumed before any run" in plan
    assert "With 3 seeds per arm a true 1.2x is resolved about" in plan
    assert fresh.success[0].value.startswith("**12 runs**")
    e = store.create_experiment("earlier demo", preset="demo-digits",
                                config={"targets": {"metric": "val/acc", "mode": "max", "thresholds": [0.5]}})
    for seed, (b, c) in enumerate(zip((190, 200, 230), (95, 100, 110))):
        add_run(store, e, "lamb", seed, reach=b)
        add_run(store, e, "alto", seed, reach=c)
    measured = page("launch", store, monkeypatch)
    (plan,) = [i.value for i in measured.info if i.value.startswith("Seeds per arm")]
    log_sd = compare(store, e).rows[0].result.log_sd
    assert f"spread {log_sd:.2f} of log time to target, measured on experiment #{e}, digits (mlp)" in plan


def test_roi_page_refuses_a_cpu_cost_for_a_gpu_fleet_and_checks_memory(store, monkeypatch):
    e = pair(store)
    save_bench(store, [{**r, "device": "cpu"} for r in BENCH], shapes="gpt2-medium", device_name="AMD EPYC",
               torch_version="2.x")
    at = page("roi", store, monkeypatch)
    assert at.markdown[0].value == measure(store, e).row.verdict.sentence  # the lab's verdict opens the page
    source = next(s for s in at.sidebar.selectbox if s.label == "Measured on")
    assert source.value == "typed in" and len(source.options) == 3  # nothing measured on a GPU: typed first
    assert any(m.value.startswith("On your fleet (H200 (cuda))") for m in at.markdown)
    assert any(o.startswith("optimizer benchmark: gpt2-medium shapes") for o in source.options)
    source.set_value(f"bench:{bench_results(store)[0]['id']}").run()
    assert not at.exception
    assert at.error and "measured on cpu (AMD EPYC) and your fleet trains on cuda" in at.error[0].value
    assert not any(m.value.startswith("On your fleet") for m in at.markdown)
    source.set_value("typed in").run()
    next(c for c in at.sidebar.checkbox if c.label.startswith("Check that the model")).check().run()
    next(n for n in at.sidebar.number_input if n.label.startswith("Model parameters")).set_value(4000.0).run()
    next(n for n in at.sidebar.number_input if n.label.startswith("GiB per GPU")).set_value(139.0).run()
    assert not at.exception  # 4B parameters: ALTO's 8 extra bytes each are 29.8 GiB more on a 141 GiB H200
    assert any("Does not fit" in e.value for e in at.error)
    next(c for c in at.sidebar.checkbox if c.label.startswith("Optimizer state sharded")).check().run()
    # sharded over 8: 3.7 GiB more per GPU does not fit either, 11 GPUs hold ALTO's 59.6 GiB of state
    fleet = next(m.value for m in at.markdown if m.value.startswith("On your fleet"))
    assert "× 0.73x from the GPUs per job" in fleet
    assert "Needs 11 GPUs instead of 8" in at.table[0].value.loc["GPUs per job (baseline / candidate)", "status"]


def test_report_shows_both_factors_with_their_provenance(store):
    from alto.presentation.report import build_report

    e = pair(store)
    html = build_report(store, e)
    assert "The factors and where each was measured" in html and "not confirmed at budget" in html
    assert f"digits (mlp), val/acc ≥ 0.5, experiment #{e}" in html and TODAY in html
    assert "assumed equal: nothing was measured on cuda" in html and "On your fleet (H100 (cuda))" in html
    refused = build_report(store, e, cost=cost_from_runs(store, e, "alto", "lamb"))
    assert "Not computed for your fleet: the cost-per-step factor was measured on cpu" in refused
    assert "Your fleet (steps × cost per step)" not in refused


def test_report_prices_the_fleet_on_the_gpus_the_memory_check_leaves(store):
    """The ROI page's download: the same fleet figure as the page, memory check included."""
    from html import escape

    from alto.analysis.memory import memory_fit
    from alto.presentation.report import build_report

    e = pair(store)
    m = measure(store, e)
    steps, cost = steps_factor(store, m), typed_cost(1.0)
    row = m.row
    # 7B parameters sharded over 8 H100s at 75 GiB each: ALTO's extra state needs more GPUs
    memory = memory_fit(n_params=7e9, baseline_gib_per_gpu=75.0, gpu_gib=80.0,
                        candidate_bytes_per_param=row.state_bytes("alto"),
                        baseline_bytes_per_param=row.state_bytes("lamb"), gpus_per_job=8, sharded=True)
    assert memory.factor is not None and memory.factor < 1
    on_page = fleet_speedup(steps, cost, fleet_kind="cuda", fleet_name="H100", gpus=memory.factor)
    html = build_report(store, e, cost=cost, fleet_gpu="H100", measured=m, steps=steps, memory=memory)
    assert escape(on_page.sentence()) in html
    assert f"{on_page.estimate:.2f}x" in html and "GPUs per job (baseline / candidate)" in html
    assert escape(fleet_speedup(steps, cost, fleet_kind="cuda", fleet_name="H100").sentence()) not in html

    too_big = memory_fit(n_params=7e9, baseline_gib_per_gpu=79.0, gpu_gib=80.0,
                         candidate_bytes_per_param=row.state_bytes("alto"),
                         baseline_bytes_per_param=row.state_bytes("lamb"), gpus_per_job=1, sharded=False)
    assert too_big.factor is None
    refused = build_report(store, e, cost=cost, measured=m, steps=steps, memory=too_big)
    assert "Not computed for your fleet: Does not fit" in refused and "Your fleet (steps × cost per step)" not in refused


def test_report_curves_leave_out_the_budget_confirmation_runs(store):
    """Like Compare's default curves: a shortened run has another schedule, so it is not averaged in."""
    from alto.presentation.report import build_report

    e = pair(store)
    rid = store.add_run(e, name="alto-budget", optimizer="alto", seed=9, lr=0.02, config=config("alto", 9, 150),
                        total_steps=150, tags=[BUDGET_TAG])
    fill(store, rid, reach=100, steps=150, ms_per_step=12.5)
    html = build_report(store, e)
    # at another LR the budget run would split alto's curve into "alto (lr=...)" groups
    assert '"name":"alto"' in html and "alto (lr=" not in html


@pytest.mark.parametrize("fleet_name, device, same", [
    ("H100", "cuda (NVIDIA H100 80GB HBM3)", True),
    ("A100 80GB", "cuda (NVIDIA A100-SXM4-80GB)", True),
    ("RTX 4090", "cuda (NVIDIA GeForce RTX 4090)", True),
    ("L4", "cuda (NVIDIA L4)", True),
    ("L4", "cuda (NVIDIA L40S)", False),
    ("RTX 4090", "cuda (NVIDIA GeForce RTX 3090)", False),
    # the memory size is part of the model: the 40GB A100 moves memory at another rate
    ("A100 80GB", "cuda (NVIDIA A100-SXM4-40GB)", False),
    ("H100", "cuda (NVIDIA H200)", False),
])
def test_a_cost_from_another_gpu_model_is_flagged(store, fleet_name, device, same):
    from alto.analysis.factors import CostFactor, Provenance

    steps = steps_factor(store, measure(store, pair(store)))
    cost = CostFactor(0.8, Provenance("optimizer benchmark", "gpt2-medium shapes", device, TODAY), "cuda",
                      key="bench:1")
    flagged = [w for w in fleet_speedup(steps, cost, fleet_name=fleet_name).warnings if f"not on {fleet_name}" in w]
    assert bool(flagged) is not same
