"""README's "Bring your own job", run as written: the example files are read out of README.md.

Real parts: the README's scripts and presets in a temporary folder, a real SQLite file, `alto` and
the supervisor as subprocesses, the Compare page under AppTest.
"""
from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alto.command import check_command, fill
from alto.runner import Supervisor, queue_experiment
from alto.runner.launch import custom_preset, plan_runs
from alto.store import Store
from alto.train.presets import expand, load_preset, parse_preset
from alto.train.run import execute_run

from readme_examples import ROOT, readme_files

COMPARE = ROOT / "app" / "sections" / "compare.py"
TELEMETRY = {"train/loss", "val/acc", "grad_norm", "update_norm", "trust_ratio_mean", "time/step_ms"}


@pytest.fixture
def examples(tmp_path, monkeypatch) -> Path:
    """README's example files in a folder of their own, with its own database (ALTO_DB)."""
    folder = tmp_path / "job"
    folder.mkdir()
    for name, text in readme_files().items():
        (folder / name).write_text(text)
    monkeypatch.delenv("ALTO_RUN_ID", raising=False)
    monkeypatch.setenv("ALTO_DB", str(tmp_path / "lab.db"))
    return folder


def env_for(folder: Path, *, with_factories: bool = False) -> dict[str, str]:
    paths = [str(ROOT), *([str(folder)] if with_factories else []), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def alto_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "alto.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"alto {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def supervise(store: Store, run_ids: list[int], timeout: float = 300) -> list[dict]:
    """Tick a supervisor of `store` until every run has ended; the runs then."""
    deadline = time.monotonic() + timeout
    with Supervisor(store, slots=1, poll_s=0.2) as sup:
        while True:
            sup.tick()
            runs = [store.get_run(i) for i in run_ids]
            if all(r["status"] not in ("queued", "running", "stalled") for r in runs):
                return runs
            assert time.monotonic() < deadline, [(r["id"], r["status"]) for r in runs]
            time.sleep(0.2)


def test_readme_holds_the_examples_these_tests_run():
    assert {"train.py", "my_job.py", "my-model.toml", "my-script.toml", "hf_job.py"} <= set(readme_files())


def test_tracked_script_for_alto_and_lamb_over_two_seeds_reaches_compare(examples, monkeypatch):
    for optimizer in ("alto", "lamb"):
        for seed in (0, 1):
            monkeypatch.setattr(sys, "argv", ["train.py", "--optimizer", optimizer, "--seed", str(seed)])
            runpy.run_path(str(examples / "train.py"), run_name="__main__")
    db = os.environ["ALTO_DB"]
    store = Store(db)
    [experiment] = store.list_experiments()
    runs = store.list_runs(experiment_id=experiment["id"])
    assert experiment["name"] == "my-job" and len(runs) == 4
    assert sorted((r["optimizer"], r["seed"], r["status"]) for r in runs) == [
        ("alto", 0, "finished"), ("alto", 1, "finished"), ("lamb", 0, "finished"), ("lamb", 1, "finished")]
    for run in runs:
        assert TELEMETRY <= set(store.metric_keys(run["id"]))
    alto_run = next(r["id"] for r in runs if r["optimizer"] == "alto")
    assert {"a_norm", "cos_grad_prev", "cos_a_grad"} <= set(store.metric_keys(alto_run))

    rows = json.loads(alto_cli("compare", "--experiment", str(experiment["id"]), "--json", "--db", db,
                               cwd=examples, env=env_for(examples)).stdout)
    [row] = rows
    assert (row["optimizer"], row["baseline"], row["metric"], row["threshold"]) == ("alto", "lamb", "val/acc", 0.9)
    assert row["reached"]["candidate"][1] == 2 and row["reached"]["baseline"][1] == 2
    assert sorted(row["runs"]["candidate"] + row["runs"]["baseline"]) == sorted(r["id"] for r in runs)
    assert row["sentence"].startswith("On my-job, alto ")

    at = AppTest.from_file(str(COMPARE), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.markdown[0].value == row["sentence"]  # the page and the CLI say the same
    metric = next(w for w in at.selectbox if w.label == "Metric")
    assert "a_norm" in metric.options and "cos_grad_prev" in metric.options
    metric.set_value("a_norm")
    at.run()
    assert not at.exception
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert {"alto"} <= {t.get("name") for t in traces}  # ALTO's own telemetry, over its seeds


def test_the_compare_page_explains_that_tracked_runs_are_confirmed_by_your_script(examples, monkeypatch):
    for optimizer, lr in (("alto", "0.01"), ("alto", "0.03"), ("lamb", "0.01")):
        monkeypatch.setattr(sys, "argv", ["train.py", "--optimizer", optimizer, "--lr", lr, "--steps", "20"])
        runpy.run_path(str(examples / "train.py"), run_name="__main__")
    at = AppTest.from_file(str(COMPARE), default_timeout=60).run()
    confirm = next(b for b in at.button if b.label.startswith("Confirm on"))
    confirm.click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "run it again with fresh seeds" in at.error[0].value
    assert len(Store(os.environ["ALTO_DB"]).list_runs()) == 3  # nothing queued


@pytest.mark.slow
def test_preset_with_user_factories_runs_through_alto_run_and_the_supervisor(examples, monkeypatch):
    db = os.environ["ALTO_DB"]
    env = env_for(examples, with_factories=True)
    out = alto_cli("run", "--preset", str(examples / "my-model.toml"), "--db", db, cwd=examples, env=env).stdout
    assert "4 runs of preset 'my-model'" in out
    store = Store(db)
    runs = store.list_runs()
    assert [r["status"] for r in runs] == ["finished"] * 4
    assert {"val/acc", "a_norm", "train/loss"} <= set(store.metric_keys(runs[0]["id"]))
    params = store.get_params(runs[0]["id"])
    assert params["n_train"] == 1843 and params["n_params"] == 16 * 64 + 64 + 64 * 2 + 2  # the factories' own

    preset = load_preset(examples / "my-model.toml")
    queued = queue_experiment(store, preset, expand(preset, seeds=1))
    ids = [r["id"] for r in store.list_runs(experiment_id=queued)]
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])  # the supervisor's children inherit it
    ended = supervise(store, ids)
    assert [r["status"] for r in ended] == ["finished", "finished"], [r["error"] for r in ended]
    assert all("val/acc" in store.metric_keys(i) for i in ids)


def test_factory_errors_fail_the_run_naming_the_field_and_the_import_path(examples, monkeypatch):
    monkeypatch.syspath_prepend(str(examples))
    (examples / "bad_job.py").write_text("import torch\n\ndef data():\n    return [1, 2]\n\n"
                                         "def model(input_shape, num_classes):\n    return 'not a model'\n")
    store = Store(os.environ["ALTO_DB"])
    cases = [({"dataset": "missing_pkg.data:make"}, "dataset = 'missing_pkg.data:make': cannot import missing_pkg"),
             ({"dataset": "bad_job:data"}, "dataset = 'bad_job:data' must return (x_train, y_train, x_test, y_test)"),
             ({"dataset": "my_job:data", "model": "bad_job:model"}, "model = 'bad_job:model' returned a str"),
             ({"dataset": "my_job:nothing"}, "dataset = 'my_job:nothing': my_job has nothing called nothing")]
    for run, message in cases:
        preset = parse_preset({"name": "bad", "optimizers": ["sgd"], "run": {"max_steps": 2, **run}})
        run_id = store.list_runs(experiment_id=queue_experiment(store, preset, expand(preset)))[-1]["id"]
        assert execute_run(store, run_id) == "failed"
        assert message in store.get_run(run_id)["error"]


@pytest.mark.slow
def test_command_preset_runs_the_script_once_per_optimizer_and_seed(examples):
    db = os.environ["ALTO_DB"]
    env = env_for(examples)
    out = alto_cli("run", "--preset", str(examples / "my-script.toml"), "--db", db, cwd=ROOT, env=env).stdout
    assert "4 runs of preset 'my-script'" in out
    store = Store(db)
    [experiment] = store.list_experiments()  # the script's own name ("my-job") is not used when launched
    runs = store.list_runs(experiment_id=experiment["id"])
    assert sorted((r["optimizer"], r["seed"], r["status"]) for r in runs) == [
        ("alto", 0, "finished"), ("alto", 1, "finished"), ("lamb", 0, "finished"), ("lamb", 1, "finished")]
    for run in runs:
        assert {"train/loss", "val/acc", "grad_norm", "trust_ratio_mean"} <= set(store.metric_keys(run["id"]))
        assert run["total_steps"] == 60 and run["last_step"] == 59
        assert store.get_params(run["id"])["steps_run"] == 60
    assert {"a_norm", "cos_grad_prev"} <= set(store.metric_keys(next(r["id"] for r in runs if r["optimizer"] == "alto")))
    rows = json.loads(alto_cli("compare", "--experiment", str(experiment["id"]), "--json", "--db", db,
                               cwd=ROOT, env=env).stdout)
    assert rows[0]["sentence"].startswith("On my-script, alto ")

    preset = load_preset(examples / "my-script.toml")
    queued = queue_experiment(store, preset, expand(preset, optimizers=["lamb"], seeds=1))
    [run_id] = [r["id"] for r in store.list_runs(experiment_id=queued)]
    [ended] = supervise(store, [run_id])
    assert ended["status"] == "finished", ended["error"]
    assert "val/acc" in store.metric_keys(run_id)
    log = Path(ended["log_path"]).read_text()
    assert "train.py', '--optimizer', 'lamb', '--lr', '0.01', '--seed', '0']" in log and str(examples) in log


def test_a_command_that_cannot_start_fails_the_run(examples):
    store = Store(os.environ["ALTO_DB"])
    preset = parse_preset({"name": "nothing", "optimizers": ["sgd"],
                           "command": ["no-such-program-here", "--seed", "{seed}"]}, folder=str(examples))
    [run] = store.list_runs(experiment_id=queue_experiment(store, preset, expand(preset)))
    [ended] = supervise(store, [run["id"]], timeout=60)
    assert ended["status"] == "failed" and "cannot start 'no-such-program-here'" in ended["error"]


def test_placeholders_are_filled_in_every_argument_the_program_too():
    command = check_command(["./train-{optimizer}.sh", "--lr", "{lr}", "--seed={seed}"])
    assert fill(command, optimizer="alto", lr=0.01, seed=3, python="/lab/python") == [
        "./train-alto.sh", "--lr", "0.01", "--seed=3"]
    assert fill(["python", "t.py", "{optimizer}"], optimizer="lamb", lr=1, seed=0, python="/lab/python") == [
        "/lab/python", "t.py", "lamb"]


@pytest.mark.parametrize("data, message", [
    ({"command": "python train.py"}, "command must be a non-empty list"),
    ({"command": ["python", "x.py", "{batch}"]}, "unknown placeholder {batch}"),
    ({"run": {"command": ["python"]}}, "run.command: give command at the top"),
    ({"command": ["python", "x.py"], "run": {"nproc_per_node": 2}}, "nproc_per_node and nnodes must be 1"),
    ({"run": {"model": "no colon"}}, "model must be one of"),
])
def test_bad_commands_and_import_paths_in_presets_are_refused(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_preset({"name": "x", "optimizers": ["sgd"], **data})


def test_the_launch_page_helpers_never_take_code_from_the_browser(examples):
    preset = load_preset(examples / "my-model.toml")
    assert [c.model for c in plan_runs(preset, optimizers=["alto"], seeds=1, lr_grid={}, overrides={})] == ["my_job:model"]
    for overrides in ({"model": "os:system"}, {"dataset": "evil:data"}, {"command": ["rm", "-rf", "/"]},
                      {"workdir": "/"}):
        with pytest.raises(ValueError, match="preset file"):
            plan_runs(preset, optimizers=["alto"], seeds=1, lr_grid={}, overrides=overrides)
    for run in ({"model": "os:system"}, {"dataset": "evil:data"}, {"command": ["python", "x.py"]}):
        with pytest.raises(ValueError, match="preset file"):
            custom_preset({"dataset": "digits", "model": "mlp", **run}, {"alto": {}})
