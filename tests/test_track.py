"""alto.track: a loop of the test's own recorded into a real SQLite file, as the engine records."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import alto
from alto.optim import build
from alto.runner import Supervisor, process_alive, queue_experiment
from alto.runner.queue import queue_confirmation
from alto.store import Store
from alto.train.presets import expand, parse_preset
from alto.train.tracking import TRACK_PRESET

HISTORY = {"a_norm", "grad_diff_norm", "cos_grad_prev", "cos_a_grad", "alpha_a_share", "clip_coef", "update_norm",
           "param_norm", "trust_ratio_min", "trust_ratio_mean", "trust_ratio_max"}


def blobs(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def train(run, optimizer_name="alto", steps=30, eval_every=10, seed=0, lr=0.01, *, on_step=None):
    """A small loop: an MLP on blobs, evaluated every `eval_every` steps inside run.paused()."""
    x, y = blobs()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    opt = build(optimizer_name, model, lr=lr, batch_size=64)
    run.watch(opt)
    for step in range(steps):
        batch = torch.randint(0, 384, (64,))
        loss = F.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        opt.step()
        opt.zero_grad()
        run.log({"train/loss": loss}, step=step)
        if on_step is not None:
            on_step(step, loss)
        if (step + 1) % eval_every == 0:
            with run.paused(), torch.no_grad():
                run.log({"val/acc": (model(x[384:]).argmax(1) == y[384:]).float().mean(), "val/note": 1}, step=step)
    return model


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.delenv("ALTO_RUN_ID", raising=False)
    monkeypatch.setenv("ALTO_DB", str(tmp_path / "runs.db"))
    return tmp_path / "runs.db"


def test_a_tracked_loop_is_recorded_like_a_lab_run(db):
    with alto.track("blobs", optimizer="alto", seed=0, lr=0.01, config={"dataset": "blobs", "width": 32},
                    total_steps=30, batch_size=64,
                    targets={"metric": "val/acc", "mode": "max", "thresholds": [0.8]}) as run:
        train(run)
    store = Store(db)
    row = store.get_run(run.id)
    assert row["status"] == "finished" and row["error"] is None
    assert (row["optimizer"], row["seed"], row["lr"], row["last_step"], row["total_steps"]) == ("alto", 0, 0.01, 29, 30)
    assert row["pid"] == os.getpid() and row["tags"] == [TRACK_PRESET]
    assert row["config"] == {"workload": "blobs", "dataset": "blobs", "width": 32}
    experiment = store.get_experiment(row["experiment_id"])
    assert experiment["name"] == "blobs" and experiment["config"]["targets"]["thresholds"] == [0.8]

    keys = set(store.metric_keys(run.id))
    assert {"train/loss", "val/acc", "lr", "grad_norm", "step_curvature", "time/step_ms", "time/optim_ms",
            "time/eval_ms"} | HISTORY <= keys
    assert any(k.startswith("layer_trust/") for k in keys)
    assert store.series(run.id, "train/loss")["step"].tolist() == list(range(30))
    assert store.series(run.id, "lr")["value"].tolist() == [0.01] * 30

    params = store.get_params(run.id)
    assert params["steps_run"] == 30 and params["hparams"]["alpha"] == 0.5 and params["optimizer_class"] == "ALTO"
    step_ms = store.series(run.id, "time/step_ms")["value"]
    assert params["train_s"] == pytest.approx(step_ms.sum() / 1e3, rel=1e-3)
    clock = store.series(run.id, "train/loss", x="wall_time")
    assert np.all(np.diff(clock["x"]) > 0) and clock["x"][-1] == pytest.approx(params["train_s"], rel=1e-3)
    val = store.series(run.id, "val/acc", x="wall_time")
    assert val["step"].tolist() == [9, 19, 29]
    assert np.allclose(val["x"], clock["x"][[9, 19, 29]])  # an evaluation sits at its step's training clock
    assert store.series(run.id, "train/loss", x="samples")["x"].tolist() == [64 * (k + 1) for k in range(30)]
    assert params["eval_s"] > 0 and params["wall_s"] >= params["train_s"] + params["eval_s"]


def test_the_optimizer_reports_nothing_after_the_run(db):
    model = torch.nn.Linear(4, 2)
    opt = build("alto", model, lr=0.01)
    with alto.track("after", optimizer="alto", seed=0, lr=0.01) as run:
        run.watch(opt)
        assert opt.collect_stats
    assert not opt.collect_stats and not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_runs_of_one_name_share_one_experiment(db):
    ids = []
    for name, optimizer, seed in (("a", "alto", 0), ("a", "lamb", 0), ("a", "alto", 1), ("b", "alto", 0)):
        with alto.track(name, optimizer=optimizer, seed=seed, lr=0.01) as run:
            train(run, optimizer, steps=3, eval_every=3, seed=seed)
        ids.append(run.experiment_id)
    assert ids[0] == ids[1] == ids[2] != ids[3]
    store = Store(db)
    assert [e["name"] for e in store.list_experiments()] == ["b", "a"]
    assert store.get_experiment(ids[0])["run_counts"] == {"finished": 3}


def test_any_torch_optimizer_gets_its_gradient_update_and_parameter_norms(db):
    with alto.track("adamw", optimizer="adamw", seed=0, lr=1e-3) as run:
        train(run, "adamw", steps=12, eval_every=12, lr=1e-3)
    store = Store(db)
    keys = set(store.metric_keys(run.id))
    assert {"grad_norm", "update_norm", "param_norm", "step_curvature", "lr"} <= keys
    assert not {"a_norm", "cos_grad_prev"} & keys
    assert store.series(run.id, "update_norm")["step"].tolist() == [0, 10]  # detail steps
    assert np.all(store.series(run.id, "update_norm")["value"] > 0)


def test_log_keeps_detached_copies_on_the_device_until_a_flush(db):
    with alto.track("detach", optimizer="sgd", seed=0, lr=0.1) as run:
        w = torch.ones(3, requires_grad=True)
        loss = (w * 2).sum()
        running = torch.zeros(())
        running += 5.0
        run.log({"train/loss": loss, "train/running": running, "n": 3}, step=0)
        running.zero_()  # the caller reuses its tensor: the recorded value must not change
        _, device_values, host_values = run.telemetry.pending[-1]
        assert isinstance(device_values["train/loss"], torch.Tensor)  # no host copy per log
        assert device_values["train/loss"].grad_fn is None and not device_values["train/loss"].requires_grad
        assert host_values["n"] == 3.0
    store = Store(db)
    assert store.series(run.id, "train/running")["value"].tolist() == [5.0]
    assert store.series(run.id, "train/loss")["value"].tolist() == [6.0]


def test_paused_time_and_flushes_stay_out_of_the_training_clock(db):
    with alto.track("clock", optimizer="sgd", seed=0, lr=0.1) as run:
        for step in range(4):
            run.log({"train/loss": 1.0}, step=step)
            with run.paused():
                time.sleep(0.3)  # an "evaluation"
        with run.paused("checkpoint"):
            time.sleep(0.2)
    with alto.track("clock", optimizer="sgd", seed=1, lr=0.1) as slow:
        for step in range(4):
            time.sleep(0.3)  # training work
            slow.log({"train/loss": 1.0}, step=step)
    store = Store(db)
    paused, trained = store.get_params(run.id), store.get_params(slow.id)
    assert paused["eval_s"] >= 1.2 and paused["checkpoint_s"] >= 0.2
    assert paused["train_s"] < 0.3 < 1.2 <= trained["train_s"]
    assert store.series(run.id, "time/eval_ms")["step"].tolist() == [1, 2, 3]  # with the step after it


def test_steps_logged_every_few_steps_get_per_step_times(db):
    with alto.track("sparse", optimizer="sgd", seed=0, lr=0.1) as run:
        for step in range(40):
            time.sleep(0.01)
            if step % 10 == 9:
                run.log({"train/loss": 1.0}, step=step)
    store = Store(db)
    step_ms = store.series(run.id, "time/step_ms")["value"]
    assert len(step_ms) == 4 and np.all(step_ms >= 10) and np.all(step_ms < 100)  # one step, not ten
    assert store.get_params(run.id)["train_s"] >= 0.4


def test_an_exception_fails_the_run_with_its_message_and_is_reraised(db):
    with pytest.raises(RuntimeError, match="out of batches"):
        with alto.track("boom", optimizer="alto", seed=0, lr=0.01) as run:
            def explode(step, loss):
                if step == 4:
                    raise RuntimeError("out of batches")
            train(run, steps=10, on_step=explode)
    row = Store(db).get_run(run.id)
    assert row["status"] == "failed" and row["error"].startswith("RuntimeError: out of batches")
    assert row["last_step"] == 4  # the steps before the error are kept
    assert Store(db).series(run.id, "train/loss")["step"].tolist() == [0, 1, 2, 3, 4]


def test_ctrl_c_cancels_the_run(db):
    with pytest.raises(KeyboardInterrupt):
        with alto.track("stop", optimizer="sgd", seed=0, lr=0.1) as run:
            run.log({"train/loss": 1.0}, step=0)
            raise KeyboardInterrupt
    assert Store(db).get_run(run.id)["status"] == "cancelled"


def test_a_non_finite_loss_ends_the_run_diverged_and_stops_the_loop(db):
    logged = []
    with alto.track("nan", optimizer="sgd", seed=0, lr=0.1) as run:
        for step in range(1000):
            run.log({"train/loss": float("nan") if step >= 5 else 1.0}, step=step)
            logged.append(step)
            if step == 210:  # past FLUSH_EVERY_STEPS, slow the loop so a flush falls due
                time.sleep(0.6)
    assert logged[-1] < 220  # log raised Diverged at the next flush, and the block swallowed it
    row = Store(db).get_run(run.id)
    assert row["status"] == "diverged" and "non-finite" in row["error"]
    with alto.track("nan", optimizer="sgd", seed=1, lr=0.1) as quick:  # found by the final flush
        quick.log({"train/loss": math.inf}, step=0)
    assert Store(db).get_run(quick.id)["status"] == "diverged"


@pytest.mark.parametrize("kwargs, field", [
    ({"name": ""}, "name"), ({"optimizer": ""}, "optimizer"), ({"optimizer": "a b"}, "optimizer"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"),
    ({"lr": "0.1"}, "lr"), ({"config": {"f": object()}}, "config"), ({"config": [1]}, "config"),
    ({"targets": {"metric": "val/acc", "mode": "up"}}, "targets"), ({"total_steps": 0}, "total_steps"),
    ({"batch_size": True}, "batch_size"),
])
def test_bad_arguments_raise_value_error_naming_them(db, kwargs, field):
    args = {"name": "x", "optimizer": "alto", "seed": 0, "lr": 0.01, **kwargs}
    with pytest.raises(ValueError, match=rf"^{field}"):
        alto.track(args.pop("name"), **args)


def test_bad_logs_raise_value_error(db):
    with alto.track("logs", optimizer="sgd", seed=0, lr=0.1) as run:
        for values, step, match in (({"x": torch.ones(2)}, 0, "values"), ({"x": "1"}, 0, "values"),
                                    ({"": 1.0}, 0, "values"), ([1.0], 0, "values"), ({"x": 1.0}, -1, "step")):
            with pytest.raises(ValueError, match=match):
                run.log(values, step=step)
        run.log({"x": 1.0}, step=5)
        with pytest.raises(ValueError, match="step must not go back"):
            run.log({"x": 1.0}, step=4)
        run.log({"x": 2.0})  # the next step
        with pytest.raises(ValueError, match="what"):
            run.pause("lunch")
    assert Store(db).series(run.id, "x")["step"].tolist() == [5, 6]
    with pytest.raises(RuntimeError, match="not recording"):
        run.log({"x": 1.0}, step=7)


def test_under_torchrun_only_rank_zero_records(db, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    with alto.track("ddp", optimizer="alto", seed=0, lr=0.01) as run:
        train(run, steps=3, eval_every=3)
    assert run.id is None and not db.exists()
    monkeypatch.setenv("RANK", "0")
    with alto.track("ddp", optimizer="alto", seed=0, lr=0.01) as run:
        train(run, steps=3, eval_every=3)
    assert Store(db).get_run(run.id)["status"] == "finished"


def test_targets_are_set_by_the_first_run_of_a_name(db):
    with alto.track("t", optimizer="sgd", seed=0, lr=0.1, targets={"metric": "val/acc", "thresholds": [0.5]}):
        pass
    with pytest.raises(ValueError, match="^targets"):
        with alto.track("t", optimizer="sgd", seed=1, lr=0.1, targets={"metric": "val/acc", "thresholds": [0.9]}):
            pass
    with alto.track("t", optimizer="sgd", seed=1, lr=0.1):  # none given: the experiment's stand
        pass


def test_a_launched_process_records_into_its_queued_run(db, monkeypatch):
    store = Store(db)
    preset = parse_preset({"name": "script", "optimizers": ["alto"], "seeds": 1,
                           "command": ["python", "train.py", "--seed", "{seed}"]})
    experiment_id = queue_experiment(store, preset, expand(preset))
    queued = store.list_runs(experiment_id=experiment_id)[0]
    monkeypatch.setenv("ALTO_RUN_ID", str(queued["id"]))
    with pytest.raises(ValueError, match="^optimizer"):
        alto.track("any", optimizer="lamb", seed=0, lr=queued["lr"]).__enter__()
    with pytest.raises(ValueError, match="^lr"):
        alto.track("any", optimizer="alto", seed=0, lr=0.5).__enter__()
    with pytest.raises(ValueError, match="^db"):
        alto.track("any", optimizer="alto", seed=0, lr=queued["lr"], db=db.parent / "other.db")
    assert store.get_run(queued["id"])["status"] == "queued"  # nothing claimed by a refused call

    store.claim_run(queued["id"], pid=1)  # as `alto run` does, before it starts the command
    store.update_run(queued["id"], started_at=0.0)  # long before this process started
    with alto.track("any name", optimizer="alto", seed=0, lr=queued["lr"], config={"k": 1}, total_steps=6) as run:
        train(run, steps=6, eval_every=3, lr=queued["lr"])
    assert run.id == queued["id"] and run.experiment_id == experiment_id
    row = store.get_run(run.id)
    assert row["status"] == "finished" and row["total_steps"] == 6 and row["pid"] == os.getpid()
    assert process_alive(row["pid"], run.id, row["started_at"])  # the supervisor sees this process as the run's
    assert store.get_params(run.id)["config"] == {"k": 1}
    assert len(store.list_experiments()) == 1  # the preset's, not one named "any name"
    with pytest.raises(ValueError, match="already ended"):
        alto.track("any", optimizer="alto", seed=0, lr=queued["lr"]).__enter__()


def test_a_launched_process_does_not_overwrite_a_cancel_that_lands_as_it_attaches(db, monkeypatch):
    store = Store(db)
    preset = parse_preset({"name": "script", "optimizers": ["alto"], "seeds": 1,
                           "command": ["python", "train.py", "--seed", "{seed}"]})
    [queued] = store.list_runs(experiment_id=queue_experiment(store, preset, expand(preset)))
    with store._write() as conn:  # a cancel from the dashboard, right after this process claims the run
        conn.execute("CREATE TRIGGER cancel_on_claim AFTER UPDATE OF status ON runs "
                     "WHEN OLD.status = 'queued' AND NEW.status = 'running' "
                     "BEGIN UPDATE runs SET status = 'cancelled' WHERE id = NEW.id; END")
    monkeypatch.setenv("ALTO_RUN_ID", str(queued["id"]))
    with pytest.raises(ValueError, match="ended meanwhile"):
        alto.track("any", optimizer="alto", seed=0, lr=queued["lr"]).__enter__()
    assert store.get_run(queued["id"])["status"] == "cancelled"


def test_tracked_runs_cannot_be_confirmed_by_the_lab(db):
    with alto.track("c", optimizer="alto", seed=0, lr=0.01):
        pass
    store = Store(db)
    with pytest.raises(ValueError, match="alto.track"):
        queue_confirmation(store, store.list_experiments()[0]["id"], {"alto": 0.01}, 2)


def test_import_alto_stays_light():
    code = "import sys, alto; assert 'torch' not in sys.modules; alto.track; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


TRACKED_FOREVER = textwrap.dedent("""
    import time, alto
    with alto.track("killed", optimizer="sgd", seed=0, lr=0.1) as run:
        for step in range(100000):
            run.log({"train/loss": 1.0}, step=step)
            time.sleep(0.02)
""")


@pytest.mark.slow
def test_a_sigkilled_tracked_process_ends_crashed(db):
    proc = subprocess.Popen([sys.executable, "-c", TRACKED_FOREVER], env={**os.environ, "ALTO_DB": str(db)},
                            start_new_session=True)
    try:
        store = Store(db)
        deadline = time.monotonic() + 120
        while not (runs := store.list_runs()) or (runs[0]["last_step"] or 0) < 20:
            assert proc.poll() is None and time.monotonic() < deadline, "the tracked process did not get going"
            time.sleep(0.1)
        with Supervisor(store, slots=1) as sup:
            sup.tick()
            assert store.get_run(runs[0]["id"])["status"] == "running"  # alive: left alone
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            sup.tick()
        row = store.get_run(runs[0]["id"])
        assert row["status"] == "crashed" and f"pid {proc.pid}" in row["error"]
        assert row["last_step"] >= 20  # what it flushed is kept
    finally:
        if proc.poll() is None:
            proc.kill()
