"""AppTest page tests for Compare, Gradients and Runs, on a copy of the real `filled_db`."""
import base64
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from alto.presentation import views
from alto.store import Store

PAGES = Path(__file__).resolve().parents[1] / "app" / "sections"
OPTIMIZERS = {"alto", "lamb", "sgd", "lion"}


def copy_db(src: Path, dst: Path) -> Path:
    """A consistent copy (the backup API includes what still sits in the WAL)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


@pytest.fixture(scope="module")
def shared_db(filled_db, tmp_path_factory) -> Path:
    """One copy for the pages that only read."""
    return copy_db(filled_db, tmp_path_factory.mktemp("pages") / "read.db")


@pytest.fixture
def read_db(shared_db, monkeypatch) -> Path:
    monkeypatch.setenv("ALTO_DB", str(shared_db))
    return shared_db


@pytest.fixture
def own_db(filled_db, tmp_path, monkeypatch) -> Path:
    """A fresh copy for a test that edits or deletes."""
    path = copy_db(filled_db, tmp_path / "own.db")
    monkeypatch.setenv("ALTO_DB", str(path))
    return path


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    return at.run()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def chart(at: AppTest, key: str) -> dict | None:
    found = [c for c in at.get("plotly_chart") if c.key == key]
    return json.loads(found[0].proto.spec) if found else None


def values(v) -> np.ndarray:
    """A trace's array, whether plain or Plotly's typed-array encoding."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, dtype=float)


def names(fig: dict) -> list[str]:
    return [t.get("name") for t in fig["data"]]


def labelled(widgets, label: str):
    return next(w for w in widgets if w.label == label)


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# -- Compare ---------------------------------------------------------------------------------

def test_compare_opens_with_the_verdict_then_plots_and_tabulates(read_db):
    at = ok(page("compare"))
    sentence = at.markdown[0].value
    assert sentence.startswith("On digits (mlp), alto reaches val/acc ≥ 0.5 ") and " as fast as lamb (2 vs 2 seeds" in sentence
    word = sentence.split("): ", 1)[1].split(" — ")[0].split(".")[0].split(" (")[0]
    assert word in ("faster", "slower", "no meaningful difference", "not enough evidence")
    assert sentence.endswith("Budget: 30 steps per run.")
    fig = figures(at)[0]
    assert len(fig["data"]) >= 4 and OPTIMIZERS <= set(names(fig))
    assert all(values(t["x"]).size <= 2000 for t in fig["data"])
    verdicts, arms = at.dataframe[0].value, at.dataframe[1].value
    assert [c.split(" ")[0] for c in verdicts["candidate"]] == ["alto", "lion", "sgd"]
    assert arms["runs"].tolist() == [2, 2, 2, 2] and "lamb (baseline)" in arms["optimizer"].tolist()
    assert labelled(at.number_input, "Target: val/acc ≥").value == 0.5  # the preset's first target
    assert "n seeds: alto 2, lamb 2, sgd 2, lion 2" in texts(at.caption)
    dots = chart(at, "seed_dots")
    assert dots is not None and {"alto reached", "lamb reached"} <= set(names(dots))
    labels = [b.label for b in at.download_button]
    assert labels == ["Download the verdict table (CSV)", "Download plotted series (CSV)"]


def test_compare_reruns_on_every_control(read_db):
    at = ok(page("compare"))
    sentence = at.markdown[0].value
    labelled(at.selectbox, "x axis").set_value("wall_time")
    ok(at.run())
    assert figures(at)[0]["layout"]["xaxis"]["title"]["text"] == "training time (s)"

    labelled(at.toggle, "Chosen LR per optimizer only").set_value(True)
    ok(at.run())
    assert OPTIMIZERS <= set(names(figures(at)[0]))

    labelled(at.slider, "Smoothing (display only)").set_value(0.6)
    labelled(at.slider, "Step range").set_value((10, 20))
    ok(at.run())
    assert at.markdown[0].value == sentence  # smoothing and the plotted range never move a verdict
    for t in figures(at)[0]["data"]:
        x = values(t["x"])
        assert x.size == 0 or x.min() > 0  # the clock at step 10 onwards

    labelled(at.radio, "Show").set_value(views.OVERLAY)
    labelled(at.selectbox, "x axis").set_value("step")
    ok(at.run())
    runs = names(figures(at)[0])
    assert len(runs) == 8 and all(n.split()[0] in OPTIMIZERS for n in runs)
    for t in figures(at)[0]["data"]:
        x = values(t["x"])
        assert x.min() >= 10 and x.max() <= 20

    labelled(at.selectbox, "Metric").set_value("train/loss")
    labelled(at.toggle, "log y").set_value(True)
    ok(at.run())
    assert figures(at)[0]["layout"]["yaxis"]["type"] == "log"
    assert at.markdown[0].value == sentence  # the plotted metric is not the target


def test_compare_against_another_baseline_in_steps(read_db):
    at = ok(page("compare"))
    labelled(at.selectbox, "Baseline").set_value("sgd")
    labelled(at.selectbox, "Time in").set_value("step")
    ok(at.run())
    assert " as fast as sgd (" in at.markdown[0].value
    arms = at.dataframe[1].value
    assert "time to target per seed (steps)" in arms.columns and "sgd (baseline)" in arms["optimizer"].tolist()
    assert "lamb" in [c.split(" ")[0] for c in at.dataframe[0].value["candidate"]]


# -- Gradients -------------------------------------------------------------------------------

def test_gradients_panels_notes_and_heatmap(read_db):
    at = ok(page("gradients"))
    a_norm = chart(at, "panel_a_norm")
    assert a_norm is not None and "alto" in names(a_norm) and "sgd" not in names(a_norm)
    assert "Not logged by lamb, lion, sgd" in texts(at.caption)
    grad = chart(at, "panel_grad_norm")
    assert OPTIMIZERS <= set(names(grad))
    trust = chart(at, "panel_trust_ratio_mean")
    assert {"alto", "lamb"} <= set(names(trust)) and "alto min-max" in names(trust)
    heat = chart(at, "layer_heatmap")
    assert heat["data"][0]["type"] == "heatmap" and len(heat["data"][0]["y"]) >= 2
    assert heat["layout"]["yaxis"]["type"] == "category"
    for panel in views.GRADIENT_PANELS:
        assert panel.how_to_read in texts(at.caption)


def test_gradients_says_so_when_nobody_logged_a_key(read_db):
    at = ok(page("gradients"))
    sgd = [o for o in at.multiselect[0].options if " sgd " in o]
    assert len(sgd) == 2
    at.multiselect[0].set_value([int(o.split()[0].lstrip("#")) for o in sgd])  # "#3 sgd lr=... (finished)"
    ok(at.run())
    assert chart(at, "panel_a_norm") is None
    assert "Not logged by sgd: nothing to plot here." in texts(at.info)
    assert chart(at, "layer_heatmap") is None
    assert chart(at, "panel_grad_norm") is not None


# -- Runs ------------------------------------------------------------------------------------

def test_runs_table_and_details(read_db):
    at = ok(page("runs"))
    table = at.dataframe[0].value
    assert isinstance(table, pd.DataFrame) and len(table) == 8
    assert table["status"].str.endswith("finished").all()
    assert [b.label for b in at.download_button] == ["Export metrics (CSV)"]
    assert any(j.value for j in at.json)


def test_runs_edit_notes_and_tags_persist(own_db):
    at = ok(page("runs"))
    run_id = Store(own_db).list_runs()[0]["id"]
    labelled(at.text_area, "Notes").input("<b>kept as text</b> **not markdown**")
    labelled(at.text_input, "Tags (comma-separated)").input("tiny, keep , baseline")
    labelled(at.button, "Save tags and notes").click()
    ok(at.run())
    run = Store(own_db).get_run(run_id)
    assert run["notes"] == "<b>kept as text</b> **not markdown**"
    assert run["tags"] == ["baseline", "keep", "tiny"]
    assert f"Saved tags and notes of run #{run_id}." in texts(at.success)
    assert "<b>kept as text</b> **not markdown**" in at.dataframe[0].value["notes"].tolist()


def test_runs_delete_run_asks_then_deletes(own_db, filled_db):
    at = ok(page("runs"))
    run_id = Store(own_db).list_runs()[0]["id"]
    from alto.paths import checkpoint_dir
    import shutil
    files = checkpoint_dir(Store(own_db).path, run_id)
    shutil.copytree(checkpoint_dir(Store(filled_db).path, run_id), files)  # the run's final weights
    assert (files / "final.pt").exists()
    labelled(at.button, f"Delete run #{run_id}…").click()
    ok(at.run())
    assert "cannot be undone" in texts(at.warning)
    assert len(Store(own_db).list_runs()) == 8  # nothing yet
    labelled(at.button, "Yes, delete").click()
    ok(at.run())
    store = Store(own_db)
    assert run_id not in {r["id"] for r in store.list_runs()}
    assert store.raw_metrics([run_id]).empty
    assert len(at.dataframe[0].value) == 7
    assert f"Deleted run #{run_id}" in texts(at.success)
    assert not files.exists()  # its checkpoints went with it


def test_runs_delete_refuses_a_run_that_started_between_the_two_clicks(own_db):
    at = ok(page("runs"))
    run_id = Store(own_db).list_runs()[0]["id"]
    labelled(at.button, f"Delete run #{run_id}…").click()
    ok(at.run())
    Store(own_db).update_run(run_id, status="running")  # a supervisor started it meanwhile
    labelled(at.button, "Yes, delete").click()
    ok(at.run())
    assert f"Not deleted: run #{run_id} (running) still has a live process" in texts(at.error)
    assert run_id in {r["id"] for r in Store(own_db).list_runs()}


def test_runs_delete_experiment_can_be_cancelled_then_done(own_db):
    at = ok(page("runs"))
    exp_id = Store(own_db).list_experiments()[0]["id"]
    label = f"Delete experiment #{exp_id} (8 runs)…"
    labelled(at.button, label).click()
    ok(at.run())
    labelled(at.button, "Cancel").click()
    ok(at.run())
    assert not at.warning and len(Store(own_db).list_runs()) == 8
    labelled(at.button, label).click()
    ok(at.run())
    labelled(at.button, "Yes, delete").click()
    ok(at.run())
    assert Store(own_db).list_experiments() == [] and Store(own_db).list_runs() == []
    assert "No experiments yet" in texts(at.info)


def test_runs_deletes_an_experiment_without_runs(own_db):
    empty = Store(own_db).create_experiment("Nothing <b>here</b>")
    at = ok(page("runs"))
    labelled(at.selectbox, "Experiment").set_value(empty)
    ok(at.run())
    assert len(at.dataframe[0].value) == 0 and not at.get("text_area")
    labelled(at.button, f"Delete experiment #{empty} (0 runs)…").click()
    ok(at.run())
    labelled(at.button, "Yes, delete").click()
    ok(at.run())
    assert empty not in [e["id"] for e in Store(own_db).list_experiments()]
    assert len(Store(own_db).list_runs()) == 8


@pytest.mark.parametrize("name", ["compare", "gradients", "runs"])
def test_pages_on_an_empty_database(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ALTO_DB", str(tmp_path / "empty.db"))
    at = ok(page(name))
    assert "No experiments yet" in texts(at.info)
