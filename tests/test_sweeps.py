"""Sweeps over a run setting: one run per value carrying it, the batch-dependent defaults held
fixed (or declared to switch), batches larger than the training set refused, the shipped sweep
presets able to give intervals, and what Launch says before queuing (run count, duration)."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from alto.data import load_dataset, train_size
from alto.optim import held_defaults
from alto.runner import queue_experiment
from alto.runner.launch import estimate_duration, estimate_steps, plan_summary, run_history
from alto.runner.queue import queue_confirmation
from alto.store import Store
from alto.train.config import RunConfig
from alto.train.presets import expand, held_note, load_preset, parse_preset, preset_names
from alto.train.run import execute_run
from conftest import ROOT

SWEEP = {"optimizers": ["alto", "lamb"], "seeds": 2,
         "run": {"dataset": "digits", "model": "mlp", "device": "cpu", "threads": 1, "epochs": 1.0},
         "sweep": {"batch_size": [64, 256, 1024]}}


def alpha_beta1(config: RunConfig) -> tuple[float, float]:
    hp = config.optimizer_hparams()
    return hp["alpha"], hp["betas"][0]


def test_one_run_per_value_carrying_it_with_alpha_and_beta1_held_fixed_by_default():
    preset = parse_preset(SWEEP)
    configs = expand(preset)
    assert len(configs) == 2 * 3 * 2
    alto = [c for c in configs if c.optimizer == "alto"]
    assert sorted({c.batch_size for c in alto}) == [64, 256, 1024]
    assert {alpha_beta1(c) for c in alto} == {(-5.0, 0.99)}             # not (0.5, 0.01) below 1024
    assert all("alpha" not in c.hparams for c in configs if c.optimizer == "lamb")
    note = held_note(preset)
    assert "alto: alpha = -5, betas = (0.99, 0.9, 0.99) at every batch size (held fixed" in note
    switching = parse_preset({**SWEEP, "batch_defaults": "paper"})
    assert {c.batch_size: alpha_beta1(c) for c in expand(switching) if c.optimizer == "alto"} == {
        64: (0.5, 0.01), 256: (0.5, 0.01), 1024: (-5.0, 0.99)}
    assert "switch within the sweep" in held_note(switching)
    own = parse_preset({**SWEEP, "optimizer": {"alto": {"alpha": -2.0}}})
    assert {alpha_beta1(c) for c in expand(own) if c.optimizer == "alto"} == {(-2.0, 0.99)}  # beta1 still held
    assert held_defaults("lamb", [64, 4096]) == {} and held_defaults("alto", [64, 512]) == {}


def test_batches_larger_than_the_training_set_are_refused_by_name():
    assert train_size("digits") == len(load_dataset("digits").y_train) == 1295
    with pytest.raises(ValueError, match=r"sweep.batch_size: 2,048 and 8,192 are larger than the 1,295 training "
                                         r"samples of digits .* Use batch sizes up to 1,295"):
        parse_preset({**SWEEP, "sweep": {"batch_size": [256, 2048, 8192]}})
    with pytest.raises(ValueError, match="600 is larger than the 500 training samples"):
        parse_preset({**SWEEP, "run": {**SWEEP["run"], "data_limit": 500}, "sweep": {"batch_size": [64, 600]}})
    parse_preset({**SWEEP, "sweep": {"batch_size": [64, 1295]}})          # the whole set is fine


@pytest.mark.parametrize("change, message", [
    ({"sweep": {"batch_size": [64, 64]}}, "sweep.batch_size lists 64 more than once"),
    ({"batch_defaults": "sometimes"}, "batch_defaults must be one of"),
])
def test_bad_sweeps_name_themselves(change, message):
    with pytest.raises(ValueError, match=message):
        parse_preset({**SWEEP, **change})


def test_an_override_cannot_silently_replace_the_sweep():
    with pytest.raises(ValueError, match="batch_size: this comparison sweeps batch_size over"):
        expand(parse_preset(SWEEP), overrides={"batch_size": 128})


def test_shipped_sweep_presets_give_intervals_and_name_their_source():
    for name in ("digits-batch-sweep", "fmnist-batch-sweep", "cifar10-resnet20-batch-sweep",
                 "cifar100-vgg16-batch-sweep"):
        preset = load_preset(name)
        assert name in preset_names() and preset.sweep.get("batch_size") and preset.seeds >= 2, name
        assert preset.source and "ours" in preset.source or "paper" in preset.source
        assert "paper" in preset.description or "ours" in preset.description
        configs = expand(preset)
        per_cell = {}
        for c in configs:
            per_cell.setdefault((c.optimizer, c.lr, c.batch_size), set()).add(c.seed)
        assert min(len(s) for s in per_cell.values()) >= 2, name   # an interval needs two seeds an arm
        grids = {o: len({c.lr for c in configs if c.optimizer == o}) for o in preset.optimizers}
        assert len(set(grids.values())) == 1, (name, grids)         # equal tuning budgets
    fmnist = load_preset("fmnist-batch-sweep").sweep["batch_size"]
    assert (min(fmnist), max(fmnist)) == (256, 16384)
    assert max(load_preset("cifar100-vgg16-batch-sweep").sweep["batch_size"]) == train_size("cifar100")
    digits = expand(load_preset("digits-batch-sweep"))
    assert {c.device for c in digits} == {"cpu"} and max(estimate_steps(c) for c in digits) <= 1000


def test_queued_runs_carry_their_value_and_the_experiment_says_what_was_held(tmp_path):
    store = Store(tmp_path / "s.db")
    preset = parse_preset(SWEEP)
    e = queue_experiment(store, preset, expand(preset))
    runs = store.list_runs(experiment_id=e)
    assert {r["config"]["batch_size"] for r in runs} == {64, 256, 1024}
    assert all(f"batch_size={r['config']['batch_size']}" in r["name"] for r in runs)
    config = store.get_experiment(e)["config"]
    assert config["sweep"] == {"batch_size": [64, 256, 1024]} and config["batch_defaults"] == "fixed"
    assert "held fixed" in config["held"]
    with pytest.raises(ValueError, match="sweeps batch_size; confirm one value at a time"):
        queue_confirmation(store, e, {"alto": runs[0]["lr"]}, 1)
    ids = queue_confirmation(store, e, {"alto": runs[0]["lr"]}, 1, where={"batch_size": 256})
    assert [store.get_run(i)["config"]["batch_size"] for i in ids] == [256]


def test_plan_summary_and_a_duration_from_the_runs_this_database_has_seen(tmp_path):
    store = Store(tmp_path / "d.db")
    tiny = parse_preset({**SWEEP, "seeds": 1, "optimizers": ["lamb"],
                         "run": {**SWEEP["run"], "max_steps": 4, "save_final": False},
                         "sweep": {"batch_size": [64, 256]}})
    configs = expand(tiny)
    assert plan_summary(configs, tiny.sweep) == "1 optimizer × 2 batch_size values × 1 seed"
    none = estimate_duration(configs, run_history(store))
    assert none.seconds is None and "the first runs will tell" in none.basis
    e = queue_experiment(store, tiny, configs)
    for run in store.list_runs(experiment_id=e):
        assert execute_run(store, run["id"]) == "finished"
    history = run_history(store)
    assert sorted(h["batch"] for h in history) == [64, 256]
    done = estimate_duration(configs, history)
    by_hand = sum(h["other_s"] + 4 * h["step_s"] for h in history)
    assert done.seconds == pytest.approx(by_hand) and done.estimated == 2
    bigger = expand(parse_preset({**SWEEP, "seeds": 1, "optimizers": ["lamb"], "sweep": {"batch_size": [1024]},
                                  "run": {**SWEEP["run"], "max_steps": 4}}))
    scaled = estimate_duration(bigger, history)
    at_256 = next(h for h in history if h["batch"] == 256)
    steps = estimate_steps(bigger[0])                                    # one epoch at 1024: 1 step
    assert scaled.seconds == pytest.approx(at_256["other_s"] + steps * at_256["step_s"] * 1024 / 256)
    assert "scaled from the nearest" in scaled.basis
    assert estimate_duration(configs, history, auto_device="cuda").seconds is not None  # device "cpu" given
    gpu = [RunConfig.from_dict({**c.to_dict(), "device": "auto"}) for c in configs]
    assert estimate_duration(gpu, history, auto_device="cuda").seconds is None


def test_launch_shows_the_sweep_count_and_duration(tmp_path, monkeypatch):
    monkeypatch.setenv("ALTO_DB", str(tmp_path / "launch.db"))
    at = AppTest.from_file(str(ROOT / "app" / "sections" / "launch.py"), default_timeout=60).run()
    at.selectbox[0].set_value("digits-batch-sweep").run()
    assert not at.exception, at.exception
    text = at.success[0].value
    assert text.startswith("**135 runs** (3 optimizers × 3 LRs × 5 batch_size values × 3 seeds)")
    assert "No duration estimate" in text
    assert any("held fixed" in c.value for c in at.caption)
    at.number_input[2].set_value(512).run()                              # a batch size over the sweep
    assert not at.success and any("sweeps batch_size" in e.value for e in at.error)


def test_a_subset_of_optimizers_keeps_the_grids_that_apply_to_it():
    preset = load_preset("digits-batch-sweep")
    configs = expand(preset, optimizers=["alto", "lamb"], lr_grid={"alto": [0.03]})
    assert {(c.optimizer, c.lr) for c in configs} == {("alto", 0.03), ("lamb", 0.01), ("lamb", 0.03), ("lamb", 0.1)}
    with pytest.raises(ValueError, match="lr_grid names optimizer 'sgd'"):
        expand(preset, optimizers=["alto"], lr_grid={"sgd": [0.1]})
