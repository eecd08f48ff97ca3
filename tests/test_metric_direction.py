"""One direction per metric on every surface: val/error is lower-is-better on the Compare page,
in the report and in `alto run`'s results table, from its name alone (see val_error_db)."""
from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from alto.cli import print_results
from alto.presentation.report import build_report
from alto.store import Store
from conftest import ROOT
from val_error_db import THRESHOLD, make_val_error_db


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = make_val_error_db(tmp_path / "errors.db")
    monkeypatch.setenv("ALTO_DB", str(path))
    return path


def test_compare_page(db):
    at = AppTest.from_file(str(ROOT / "app" / "sections" / "compare.py"), default_timeout=60).run()
    next(s for s in at.selectbox if s.label == "Metric").set_value("val/error").run()
    assert not at.exception, [e.value for e in at.exception]
    target = next(n for n in at.number_input if n.label.startswith("Target: val/error"))
    assert target.label == "Target: val/error ≤" and target.value == THRESHOLD
    table = at.dataframe[0].value.set_index("optimizer")
    assert table.loc["lamb", "best (mean ± std)"] == "0.305 ± 0.0071"  # the lowest errors
    assert table.loc["alto", "reached target"] == "2/2"
    assert table.loc["alto", "speed-up [95% CI]"].startswith("2×")


def test_report_summary(db):
    store = Store(db)
    html = build_report(store, 1)  # metric and threshold from the experiment's targets
    store.close()
    assert "Summary (target val/error ≤ 0.5, baseline lamb)" in html
    summary = html[html.index("<h2>Summary"):html.index("<h2>Compute savings")]
    assert summary.count("0.305 ± 0.0071") == 2  # lamb's final and best: the lowest errors
    assert re.search(r"<td>2× \[", summary)
    assert "Measured (this experiment)" in html  # alto reached the target: a measured speed-up


def test_cli_results_table(db, capsys):
    store = Store(db)
    print_results(store, 1)
    store.close()
    lines = capsys.readouterr().out.splitlines()
    assert "best val/error" in lines[0]
    lamb = [line.split() for line in lines[1:] if line.split()[1] == "lamb"]
    assert [row[6] for row in lamb] == ["0.3000", "0.3100"]  # best = the lowest, not 0.9000
