"""The training engine end to end on real tiny runs: config validation, schedules, accumulation,
determinism, divergence, checkpoints, telemetry keys, text runs, and the store it writes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from alto.store import Store
from alto.train import RunConfig, lr_at, scaled_lr, train
from alto.paths import checkpoint_dir
from alto.train.run import execute_run
from alto.runner import queue_experiment
from alto.train.presets import expand, load_preset, parse_preset, preset_names

FAST = dict(dataset="digits", model="mlp", device="cpu", threads=1, data_limit=256, epochs=1000,
            model_kwargs={"hidden": [32]})


def cfg(**kw) -> RunConfig:
    return RunConfig(**{**FAST, **kw})


# --- config --------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("dataset", "imagenet"), ("model", "resnet1000"), ("optimizer", "adam"), ("lr", -1.0), ("lr", float("nan")),
    ("seed", -1), ("seed", 1.5), ("batch_size", 0), ("accumulation", 0), ("epochs", 0), ("max_steps", 0),
    ("lr_scaling", "quadratic"), ("base_batch", 0), ("warmup_steps", -1), ("schedule", "linear"),
    ("milestones", [0.75, 0.5]), ("milestones", [1.5]), ("gamma", 0.0), ("eval_every", 0), ("precision", "fp16"),
    ("device", "tpu"), ("val_fraction", 0.5), ("data_limit", 0), ("block_size", 1), ("checkpoint_every", 0),
    ("telemetry", "yes"), ("download", 1), ("threads", 0), ("hparams", {"momentum": 0.9}),
    ("hparams", {"alpha": -500.0}), ("hparams", {"lr": 0.1}), ("model_kwargs", [1]),
])
def test_invalid_config_field_raises_value_error_naming_it(field, value):
    with pytest.raises(ValueError) as err:
        cfg(**{field: value})
    assert field in str(err.value) or (field == "hparams" and "hparams" in str(err.value))


def test_batch_must_divide_into_micro_batches():
    with pytest.raises(ValueError, match="accumulation"):
        cfg(batch_size=100, accumulation=3)


def test_config_round_trips_through_a_dict():
    c = cfg(optimizer="lamb", lr=0.02, hparams={"bias_correction": True}, schedule="cosine")
    assert RunConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown run setting 'colour'"):
        RunConfig.from_dict({**c.to_dict(), "colour": "red"})


# --- schedules -----------------------------------------------------------------------------------

def test_lr_scaling_rules():
    assert scaled_lr(0.1, 1024, 256, "linear") == pytest.approx(0.4)
    assert scaled_lr(0.1, 1024, 256, "sqrt") == pytest.approx(0.2)
    assert scaled_lr(0.1, 1024, 256, "none") == 0.1


def test_schedules_warmup_quarters_milestones_cosine():
    assert [lr_at(s, 100, 1.0, warmup_steps=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    step = [lr_at(s, 100, 1.0, schedule="step") for s in (0, 24, 25, 50, 75, 99)]
    assert step == pytest.approx([1.0, 1.0, 0.1, 0.01, 0.001, 0.001])
    multi = [lr_at(s, 100, 1.0, schedule="multistep", milestones=[0.3], gamma=0.5) for s in (29, 30)]
    assert multi == [1.0, 0.5]
    cos = [lr_at(s, 100, 1.0, schedule="cosine") for s in (0, 50, 100)]
    assert cos == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)


# --- the loop --------------------------------------------------------------------------------------

def test_same_seed_same_run_and_other_seed_differs():
    a = train(cfg(optimizer="alto", batch_size=64, max_steps=12, lr=0.01))
    b = train(cfg(optimizer="alto", batch_size=64, max_steps=12, lr=0.01))
    c = train(cfg(optimizer="alto", batch_size=64, max_steps=12, lr=0.01, seed=1))
    assert a.final["train/loss"] == b.final["train/loss"]
    assert a.final["val/loss"] == b.final["val/loss"]
    assert a.final["train/loss"] != c.final["train/loss"]


def test_gradient_accumulation_gives_the_same_steps_as_one_big_batch():
    one = train(cfg(optimizer="alto", batch_size=64, max_steps=10, lr=0.01))
    four = train(cfg(optimizer="alto", batch_size=64, accumulation=4, max_steps=10, lr=0.01))
    assert one.final["val/loss"] == pytest.approx(four.final["val/loss"], rel=1e-5)
    assert one.final["grad_norm"] == pytest.approx(four.final["grad_norm"], rel=1e-4)


def test_divergence_stops_the_run_and_keeps_its_data(tmp_path):
    store = Store(tmp_path / "runs.db")
    preset = parse_preset({"name": "t", "optimizers": ["sgd"], "run": {**FAST, "max_steps": 200},
                           "optimizer": {"sgd": {"lr": 1e6}}})
    exp = queue_experiment(store, preset, expand(preset))
    run = store.list_runs(experiment_id=exp)[0]
    assert execute_run(store, run["id"]) == "diverged"
    run = store.get_run(run["id"])
    assert run["status"] == "diverged" and "non-finite" in run["error"]
    assert run["last_step"] < 199
    loss = store.series(run["id"], "train/loss")
    assert len(loss["step"]) >= 1 and not math.isfinite(loss["value"][-1])


def test_checkpoint_resume_matches_an_uninterrupted_run(tmp_path):
    straight = train(cfg(optimizer="alto", batch_size=64, max_steps=16, lr=0.01, eval_every=16))
    first = train(cfg(optimizer="alto", batch_size=64, max_steps=8, lr=0.01, eval_every=16, checkpoint_every=8),
                  checkpoint_dir=tmp_path)
    assert first.steps == 8 and (tmp_path / "last.pt").exists()
    resumed = train(cfg(optimizer="alto", batch_size=64, max_steps=16, lr=0.01, eval_every=16,
                        checkpoint_every=8), checkpoint_dir=tmp_path)
    assert resumed.final["train/loss"] == straight.final["train/loss"]
    assert resumed.final["val/loss"] == straight.final["val/loss"]


def test_telemetry_keys_where_they_exist(tmp_path):
    store = Store(tmp_path / "runs.db")
    preset = parse_preset({"name": "t", "optimizers": ["alto", "sgd"], "run": {**FAST, "max_steps": 30}})
    exp = queue_experiment(store, preset, expand(preset))
    runs = {r["optimizer"]: r for r in store.list_runs(experiment_id=exp)}
    for run in runs.values():
        assert execute_run(store, run["id"]) == "finished"
    alto_keys = set(store.metric_keys(runs["alto"]["id"]))
    sgd_keys = set(store.metric_keys(runs["sgd"]["id"]))
    common = {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc", "lr", "grad_norm",
              "time/step_ms", "time/optim_ms", "step_curvature", "mem_mb"}
    history = {"a_norm", "grad_diff_norm", "cos_grad_prev", "cos_a_grad", "alpha_a_share", "clip_coef",
               "update_norm", "param_norm", "trust_ratio_min", "trust_ratio_mean", "trust_ratio_max"}
    assert common | history <= alto_keys
    assert any(k.startswith("layer_trust/") for k in alto_keys)
    assert common <= sgd_keys and not (history - {"update_norm", "param_norm"}) & sgd_keys
    assert {"update_norm", "param_norm"} <= sgd_keys  # on detail steps, for optimizers that report nothing
    steps = store.series(runs["alto"]["id"], "train/loss")
    assert list(steps["step"]) == list(range(30))
    wall = store.series(runs["alto"]["id"], "train/loss", x="wall_time")["x"]
    assert (wall[1:] >= wall[:-1]).all()
    params = store.get_params(runs["alto"]["id"])
    assert params["hparams"]["alpha"] == 0.5 and params["batch_size"] == 256  # small-batch defaults
    assert params["setup_s"] > 0 and params["train_s"] > 0 and params["steps_run"] == 30
    # final weights kept for flatness analysis, loadable without pickled code
    from alto.models import build_model
    from alto.train.checkpoint import load_weights
    model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[32])
    saved = load_weights(checkpoint_dir(store.path, runs["alto"]["id"]) / "final.pt", model)
    assert saved["optimizer"] == "alto"


def test_text_run_with_a_tiny_transformer():
    r = train(RunConfig(dataset="stdlib-chars", model="gpt-tiny", optimizer="alto", batch_size=8, block_size=32,
                        max_steps=6, eval_batches=2, device="cpu", threads=1, data_limit=200_000,
                        model_kwargs={"n_layer": 1, "n_head": 2, "n_embd": 32}))
    assert r.status == "finished" and r.steps == 6
    assert math.isfinite(r.final["val/ppl"]) and r.final["val/ppl"] > 1


# --- presets ----------------------------------------------------------------------------------------

def test_every_shipped_preset_loads_names_its_source_and_expands():
    names = preset_names()
    assert {"demo-digits", "fmnist-large-batch", "cifar10-resnet20-16k", "cifar100-resnet20-16k",
            "cifar100-vgg16-batch-sweep", "paper-time-to-accuracy", "gpt-char-stdlib"} <= set(names)
    for name in names:
        preset = load_preset(name)
        assert preset.source
        assert expand(preset, seeds=1)


@pytest.mark.parametrize("data, words", [
    ({"colour": 1}, "colour"), ({"seeds": 0}, "seeds"), ({"optimizers": ["alto"], "lr_grid": {"sgd": [0.1]}}, "lr_grid"),
    ({"run": {"epochs": -1}}, "epochs"), ({"optimizers": ["alto"], "optimizer": {"alto": {"beta": 0.9}}}, "beta"),
    ({"sweep": {"batch_size": []}}, "sweep"), ({"run": "digits"}, "run"),
])
def test_invalid_presets_raise_value_error_naming_the_field(data, words):
    with pytest.raises(ValueError) as err:
        parse_preset(data)
    assert words in str(err.value)


# --- the clock and the step count (PROTOCOL: evaluation is not training time) ---------------------

def test_a_cancelled_run_counts_only_the_steps_it_ran(tmp_path):
    asked = []

    def stop_before_step_5() -> bool:
        asked.append(True)
        return len(asked) > 5  # polled once before each step: True before step 5 (the 6th poll)

    r = train(cfg(optimizer="sgd", batch_size=64, max_steps=40), should_stop=stop_before_step_5)
    assert r.status == "cancelled" and r.steps == 5

    store = Store(tmp_path / "runs.db")
    preset = parse_preset({"name": "t", "optimizers": ["sgd"], "run": {**FAST, "max_steps": 40}})
    run_id = store.list_runs(experiment_id=queue_experiment(store, preset, expand(preset)))[0]["id"]
    asked.clear()
    assert execute_run(store, run_id, should_stop=stop_before_step_5) == "cancelled"
    run = store.get_run(run_id)
    assert run["last_step"] == 4 and store.get_params(run_id)["steps_run"] == 5
    assert store.series(run_id, "train/loss")["step"].tolist() == [0, 1, 2, 3, 4]


def test_training_clock_excludes_evaluation_and_flushes(tmp_path):
    """eval_every = 1 on digits: the training time is the sum of the step times; evaluation and
    store flushes are recorded apart and never enter the wall_time axis."""
    store = Store(tmp_path / "runs.db")
    preset = parse_preset({"name": "t", "optimizers": ["alto"],
                           "run": {**FAST, "model": "cnn-small", "batch_size": 64, "max_steps": 12,
                                   "eval_every": 1, "model_kwargs": {}}})
    run_id = store.list_runs(experiment_id=queue_experiment(store, preset, expand(preset)))[0]["id"]
    assert execute_run(store, run_id) == "finished"
    params = store.get_params(run_id)
    step_ms = store.series(run_id, "time/step_ms")["value"]
    assert len(step_ms) == 12
    assert params["train_s"] == pytest.approx(step_ms.sum() / 1e3, rel=1e-3)
    clock = store.series(run_id, "train/loss", x="wall_time")
    assert clock["x"][-1] == pytest.approx(params["train_s"], rel=1e-3)
    assert np.all(np.diff(clock["x"]) > 0)
    val = store.series(run_id, "val/acc", x="wall_time")
    assert len(val["x"]) == 12 and np.allclose(val["x"], clock["x"])  # an evaluation sits at its step's clock
    assert len(store.series(run_id, "time/eval_ms")["value"]) == 12
    assert params["eval_s"] > 0 and params["log_s"] > 0
    assert params["wall_s"] >= params["train_s"] + params["eval_s"]
    optim_ms = store.series(run_id, "time/optim_ms")["value"]
    assert np.all(optim_ms > 0) and np.all(optim_ms < step_ms)


def test_the_optimizers_one_time_choices_are_made_before_the_clock_starts(monkeypatch):
    """ALTO's prepare() (on CUDA: the fused kernels' self-test) runs in set_up, not in the first timed step."""
    from alto.optim import ALTO
    from alto.train.loop import set_up

    calls = []
    original = ALTO._use_fused
    monkeypatch.setattr(ALTO, "_use_fused", lambda self, params: calls.append(len(params)) or original(self, params))
    run = set_up(cfg(optimizer="alto", max_steps=1))
    assert calls == [len(list(run.model.parameters()))]


@pytest.mark.parametrize("ended", ["cancelled", "failed"])
def test_a_run_that_ended_before_its_process_started_is_not_trained(tmp_path, ended):
    """Cancelled while queued, or recorded failed when the fork server never answered its start
    (the process may have been forked anyway): the process must leave that ending alone."""
    store = Store(tmp_path / "runs.db")
    preset = parse_preset({"name": "t", "optimizers": ["sgd"], "run": {**FAST, "max_steps": 5}})
    run_id = store.list_runs(experiment_id=queue_experiment(store, preset, expand(preset)))[0]["id"]
    store.update_run(run_id, status=ended, error="ended before it started")
    assert execute_run(store, run_id) == ended
    run = store.get_run(run_id)
    assert (run["status"], run["error"], run["pid"]) == (ended, "ended before it started", None)
    assert len(store.series(run_id, "train/loss")["step"]) == 0
