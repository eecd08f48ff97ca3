"""Home, Launch and Live pages through Streamlit's AppTest, on real databases."""
from __future__ import annotations


import pytest
from streamlit.testing.v1 import AppTest

from alto.runner.launch import estimate_steps, field_for_error, parse_lr_list, progress
from alto.store import Store
from alto.train import RunConfig


from conftest import ROOT


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "app" / "sections" / f"{name}.py"), default_timeout=60)


@pytest.fixture
def empty_db(tmp_path, monkeypatch):
    path = tmp_path / "empty.db"
    monkeypatch.setenv("ALTO_DB", str(path))
    return path




# --- pure helpers --------------------------------------------------------------------------------

def test_lr_lists_and_error_fields():
    assert parse_lr_list("0.01, 0.03 0.1", "alto") == [0.01, 0.03, 0.1]
    assert parse_lr_list("  ", "alto") == []
    with pytest.raises(ValueError, match="lr_grid for alto"):
        parse_lr_list("0.01, fast", "alto")
    with pytest.raises(ValueError, match="lr_grid for sgd"):
        parse_lr_list("-1", "sgd")
    fields = ["epochs", "max_steps", "batch_size", "seeds", "lr_grid for alto"]
    assert field_for_error("max_steps must be an integer >= 1", fields) == "max_steps"
    assert field_for_error("alto: batch_size must be ...", fields) == "batch_size"
    assert field_for_error("lr_grid for alto: 'x' is not a number", fields) == "lr_grid for alto"
    assert field_for_error("something else", fields) is None


def test_progress_eta_and_step_estimates():
    p = progress({"total_steps": 100, "last_step": 24, "started_at": 1000.0}, now=1010.0)
    assert p["done"] == 25 and p["fraction"] == 0.25 and p["eta_s"] == pytest.approx(30.0)
    assert progress({"total_steps": None, "last_step": None, "started_at": None})["eta_s"] is None
    assert estimate_steps(RunConfig(dataset="digits", epochs=10)) == 10                   # full batch
    assert estimate_steps(RunConfig(dataset="digits", batch_size=100, epochs=2)) == 24
    assert estimate_steps(RunConfig(dataset="digits", batch_size=100, epochs=2, max_steps=5)) == 5


# --- pages ----------------------------------------------------------------------------------------

def test_home_on_an_empty_database_offers_the_demo_and_queues_it(empty_db, monkeypatch):
    monkeypatch.setenv("ALTO_DEMO_SEEDS", "1")
    at = page("home").run()
    assert not at.exception
    button = next(b for b in at.button if b.label == "Run the demo comparison")
    button.click().run()
    store = Store(empty_db)
    runs = store.list_runs()
    assert sorted(r["optimizer"] for r in runs) == ["alto", "lamb", "lion", "sgd"]
    assert store.list_experiments()[0]["preset"] == "demo-digits"
    from common import supervisor
    supervisor().cancel(runs[0]["id"])  # don't leave a demo training in the background
    for r in runs[1:]:
        supervisor().cancel(r["id"])


def test_home_lists_recent_experiments(filled_copy):
    at = page("home").run()
    assert not at.exception
    assert "Tiny digits comparison" in at.dataframe[0].value["experiment"].iloc[0]


def test_home_shows_a_clear_error_for_a_foreign_database(tmp_path, monkeypatch):
    bad = tmp_path / "notes.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    monkeypatch.setenv("ALTO_DB", str(bad))
    at = page("home").run()
    assert not at.exception
    assert "not an ALTO Lab database" in at.error[0].value


def test_launch_validates_next_to_the_field_and_queues(empty_db):
    at = page("launch").run()
    assert not at.exception
    assert "12 runs" in at.success[0].value  # demo-digits: 4 optimizers x 3 seeds
    grid = next(t for t in at.text_input if t.label.startswith("LR grid for alto"))
    grid.input("0.01, fast").run()
    assert any("lr_grid for alto" in e.value for e in at.error)
    assert not at.success
    assert not any("Unequal tuning budgets" in w.value for w in at.warning)
    grid.input("0.01, 0.03").run()
    assert "15 runs" in at.success[0].value
    assert any("Unequal tuning budgets: alto tries 2 LRs, lamb tries 1 LR" in w.value for w in at.warning)
    next(n for n in at.number_input if n.label.startswith("Seeds")).set_value(1).run()
    next(n for n in at.number_input if n.label.startswith("Max steps")).set_value(5).run()
    assert "5 runs" in at.success[0].value
    next(b for b in at.button if b.label == "Queue the comparison").click().run()
    runs = Store(empty_db).list_runs()
    assert len(runs) == 5 and all(r["config"]["max_steps"] == 5 for r in runs)
    assert sorted(r["lr"] for r in runs if r["optimizer"] == "alto") == [0.01, 0.03]
    from common import supervisor
    for r in runs:
        supervisor().cancel(r["id"])


def test_launch_custom_comparison_reports_bad_settings(empty_db):
    at = page("launch").run()
    at.radio[0].set_value("Build a comparison").run()
    assert not at.exception and at.success
    next(n for n in at.number_input if n.label.startswith("Batch size")).set_value(100).run()
    next(n for n in at.number_input if n.label.startswith("Gradient accumulation")).set_value(3).run()
    assert any("accumulation" in e.value for e in at.error)


def test_live_shows_finished_runs_curves_and_logs(filled_copy):
    at = page("live").run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    assert "8 finished" in at.markdown[0].value or any("8 finished" in m.value for m in at.markdown)
