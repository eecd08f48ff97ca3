"""Landscape and Flatness pages through Streamlit's AppTest, on a copy of the filled database."""
from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from alto.probes.flatness_job import execute_job, queue_flatness_job
from alto.probes.landscape import LANDSCAPES
from alto.runner import JOB
from alto.store import Store
from conftest import ROOT
from test_flatness_job import copy_db


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "app" / "sections" / f"{name}.py"), default_timeout=120)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


@pytest.fixture
def db(filled_db, tmp_path, monkeypatch):
    path = copy_db(filled_db, tmp_path)
    monkeypatch.setenv("ALTO_DB", str(path))
    return path


# --- landscape -----------------------------------------------------------------------------------

def test_landscape_opens_on_the_cardioid_with_gd_vs_e_gd(db):
    at = page("landscape").run()
    assert not at.exception
    assert at.selectbox[0].value == "squared_cardioid"
    main = charts(at)[0]
    paths = [t for t in main["data"] if t.get("mode") == "lines" and t.get("name") in ("GD", "E-GD")]
    assert len(paths) >= 2
    assert main["frames"] and main["layout"]["sliders"]  # the animation slider
    assert not at.error


def test_alpha_beyond_the_stability_bound_is_an_error(db):
    at = page("landscape").run()
    at.slider(key="beta1_squared_cardioid").set_value(0.9).run()  # bound 1/(1 - 0.9) = 10 < |-20|
    assert not at.exception
    (error,) = at.error
    assert "alpha = -20" in error.value and "stability bound" in error.value and "= 10" in error.value
    assert "E-GD" in error.value  # left out; GD still runs
    at.checkbox(key="unstable_squared_cardioid").check().run()
    assert not at.exception and not at.error
    assert any("beyond the stability bound" in w.value for w in at.warning)


@pytest.mark.parametrize("name", [n for n in LANDSCAPES if n != "squared_cardioid"])
def test_every_landscape_renders(db, name):
    at = page("landscape")
    at.session_state[f"steps_{name}"] = 200  # keep the test quick
    at.run()
    at.selectbox[0].set_value(name).run()
    assert not at.exception, name
    assert not at.error
    assert len(charts(at)) >= 3
    assert len(at.dataframe[0].value) >= 2


# --- flatness ------------------------------------------------------------------------------------

def test_flatness_page_queues_a_job(db):
    at = page("flatness").run()
    assert not at.exception
    button = next(b for b in at.button if b.label == "Measure flatness")
    button.click().run()
    assert not at.exception
    store = Store(db)
    (job,) = store.list_jobs(kind="flatness")
    assert job["status"] in ("queued", "running", "finished")
    assert job["payload"]["pair"] == ["alto", "lamb"] and job["payload"]["batch_size"] == 512
    from common import supervisor
    supervisor().cancel(job["id"], JOB)  # don't leave it running in the background
    deadline = time.monotonic() + 20
    while store.get_job(job["id"])["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.get_job(job["id"])["status"] in ("cancelled", "finished")


def test_flatness_results_one_row_per_optimizer(db):
    store = Store(db)
    job_id = queue_flatness_job(store, store.list_experiments()[0]["id"], batch_size=128, iters=5)
    assert execute_job(store, job_id, log=lambda line: None) == "finished"
    at = page("flatness").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert sorted(table["optimizer"]) == ["alto", "lamb", "lion", "sgd"]
    assert list(table["seeds (n)"]) == [2, 2, 2, 2]
    assert all("±" in v for v in table["top Hessian eigenvalue"])
    names = [t.get("name") for c in charts(at) for t in c["data"]]
    assert "seed 0" in names and "seed 1" in names  # the ALTO -> Lamb interpolation lines
    assert any("reparametrisation" in m.value for m in at.markdown)
