"""Shared test setup.

One torch thread per process (two processes with two threads each on a 2-core machine slow each
other down many times over), test helpers importable, and a database filled by REAL tiny runs
for the page tests (built once per session: 4 optimizers x 2 seeds on digits, 30 steps each).
"""
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # test-only helpers such as optim_reference
sys.path.insert(0, str(ROOT / "app"))            # `common`, as the pages import it

@pytest.fixture(autouse=True)
def _stop_supervisors():
    """Pages start a supervisor thread (through st.cache_resource) on the test's database; stop
    them after each test, or they poll deleted files and hold locks when a later test forks."""
    yield
    from alto.runner import Supervisor
    Supervisor.stop_all()


TINY_RUN = {"dataset": "digits", "model": "mlp", "device": "cpu", "threads": 1, "data_limit": 512,
            "epochs": 1000, "max_steps": 30, "batch_size": 128, "model_kwargs": {"hidden": [32]}}


@pytest.fixture(scope="session")
def filled_db(tmp_path_factory) -> Path:
    """A database with one finished experiment: alto, lamb, sgd, lion x seeds 0 and 1."""
    from alto.runner import queue_experiment
    from alto.store import Store
    from alto.train.presets import expand, parse_preset
    from alto.train.run import execute_run

    path = tmp_path_factory.mktemp("db") / "filled.db"
    store = Store(path)
    preset = parse_preset({"name": "tiny", "title": "Tiny digits comparison", "source": "ours",
                           "optimizers": ["alto", "lamb", "sgd", "lion"], "seeds": 2, "run": TINY_RUN,
                           "optimizer": {"alto": {"lr": 0.01}, "lamb": {"lr": 0.01}, "sgd": {"lr": 0.1},
                                         "lion": {"lr": 0.001}},
                           "targets": {"metric": "val/acc", "mode": "max", "thresholds": [0.5, 0.8]}})
    experiment_id = queue_experiment(store, preset, expand(preset))
    for run in store.list_runs(experiment_id=experiment_id):
        assert execute_run(store, run["id"]) == "finished"
    store.close()
    return path


@pytest.fixture
def filled_copy(filled_db, tmp_path, monkeypatch) -> Path:
    """A copy of `filled_db` of the test's own, set as ALTO_DB for the pages it runs."""
    import shutil

    path = tmp_path / "filled.db"
    shutil.copy(filled_db, path)
    monkeypatch.setenv("ALTO_DB", str(path))
    return path


CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it), never a browser Playwright downloads


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, headless, without the background traffic that a
    closed network refuses."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: .ci/run installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()
