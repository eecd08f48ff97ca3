"""Measured speed-up -> ROI page and the stakeholder report, on a database of real tiny runs."""
from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from alto.analysis.measured import measure
from alto.presentation.report import build_report
from alto.store import Store
from conftest import ROOT

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def db(filled_db, tmp_path, monkeypatch):
    path = tmp_path / "copy.db"
    shutil.copy(filled_db, path)
    monkeypatch.setenv("ALTO_DB", str(path))
    return Store(path)


def test_measure_alto_against_lamb(db):
    m = measure(db, 1, candidate="alto", baseline="lamb", metric="val/acc", threshold=0.5)
    r = m.row.result
    assert (r.n_candidate, r.n_baseline) == (2, 2) and m.usable
    assert r.interval_kind == "ci" and r.low <= r.high  # two seeds each, all reached: Welch on log times
    assert m.fewer_steps * m.cost_per_step == pytest.approx(r.estimate)
    assert m.row.difference is not None and len(m.row.difference.a) == 2
    inputs = m.roi_inputs(gpu_hourly_price=2.0, gpus_per_job=4, baseline_hours_per_job=24.0, jobs_per_year=50)
    assert inputs.evidence == m.row.verdict.word and (inputs.speedup_low, inputs.speedup_high) == (r.low, r.high)


def test_measure_reports_unreachable_targets_and_bad_input(db):
    m = measure(db, 1, candidate="alto", baseline="lamb", metric="val/acc", threshold=1.01)
    assert not m.usable and m.roi_inputs(gpu_hourly_price=1.0, gpus_per_job=1, baseline_hours_per_job=1.0,
                                         jobs_per_year=1) is None
    with pytest.raises(ValueError, match="baseline"):
        measure(db, 1, candidate="alto", baseline="adamw", threshold=0.5)
    with pytest.raises(ValueError, match="metric"):
        measure(db, 1, candidate="alto", baseline="lamb", metric="val/ppl", threshold=0.5)


def test_report_is_self_contained_and_escapes_user_text(db):
    run = db.list_runs(experiment_id=1)[0]
    db.update_run(run["id"], name=XSS)
    db.set_notes(f"notes with <b>html</b> {XSS}", experiment_id=1)
    html = build_report(db, 1, threshold=0.5)
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script src=" not in html  # plotly.js is inlined: the file opens offline
    for section in ("Setup", "Curves", "Verdicts", "Compute savings (ROI)", "Claims beside measurements",
                    "Raw numbers", "claim (NOT measured here)", "Your fleet (steps × cost per step)",
                    "The factors and where each was measured", "not confirmed at budget", "notes with &lt;b&gt;html"):
        assert section in html, section
    assert "2.14" in html or "torch" in html


def test_cli_report_writes_the_file(db, tmp_path):
    import subprocess
    import sys
    out = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "alto.cli", "report", "--experiment", "1", "--out", str(out),
                           "--db", str(db.path), "--threshold", "0.5"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 100_000 and "ALTO Lab report" in out.read_text()


def test_roi_page_reads_the_measured_and_claimed_figures(db):
    at = AppTest.from_file(str(ROOT / "app" / "sections" / "roi.py"), default_timeout=60).run()
    assert not at.exception
    next(n for n in at.sidebar.number_input if n.label.startswith("Target")).set_value(0.5).run()
    next(n for n in at.sidebar.number_input if n.label.startswith("Price per GPU-hour")).set_value(2.0).run()
    next(n for n in at.sidebar.number_input if n.label.startswith("GPUs per job")).set_value(4).run()
    assert not at.exception
    table = roi_table(at)
    assert list(table.columns) == ["Your fleet (steps × cost per step)", "Paper's claim (NOT measured here)"]
    paper = table["Paper's claim (NOT measured here)"]
    # 4 GPUs x 24 h x 50 jobs = 4,800 GPU-hours; the paper's 1.422x saves 29.68% of them
    assert paper["baseline GPU-hours / year"] == "4,800"
    assert paper["GPU-hours reclaimed / year"] == f"{4800 * (1 - 608.0 / 864.7):,.0f}"
    assert paper["cost saved / year ($)"] == f"{4800 * (1 - 608.0 / 864.7) * 2.0:,.0f}"
    measured = table["Your fleet (steps × cost per step)"]
    assert measured["speed-up"].endswith(")") and "x" in measured["speed-up"]
    assert measured["verdict"].endswith("Steps to target: not confirmed at budget.")
    assert at.get("plotly_chart") and at.get("download_button")
    # an unreachable threshold: said plainly, and the paper column stays labelled as a claim
    next(n for n in at.sidebar.number_input if n.label.startswith("Target")).set_value(1.01).run()
    assert "not reached" in at.markdown[0].value and not at.success  # never a green box without a saving
    assert list(roi_table(at).columns) == ["Paper's claim (NOT measured here)"]


def roi_table(at: AppTest):
    return next(d.value for d in at.dataframe if "Paper's claim (NOT measured here)" in d.value.columns)
