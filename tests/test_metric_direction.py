"""One direction per metric on every surface: val/error is lower-is-better on the Compare page,
in the report and in `alto run`'s results table, from its name alone (see val_error_db)."""
from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from alto.cli import print_results
from alto.presentation import views
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
    assert not at.exception, [e.value for e in at.exception]
    target = next(n for n in at.number_input if n.label.startswith("Target: val/error"))
    assert target.label == "Target: val/error ≤" and target.value == THRESHOLD
    assert at.markdown[0].value.startswith("On ") and "val/error ≤ 0.5" in at.markdown[0].value
    arms = at.dataframe[1].value.set_index("optimizer")
    assert arms.loc["lamb (baseline)", "final val/error (mean ± std)"] == "0.305 ± 0.0071"  # the lowest errors
    assert arms.loc["alto", "reached"].startswith("2/2")
    assert re.match(r"(1\.9\d|2\.0\d)x", at.dataframe[0].value["speed-up"][0])  # about 2x, not "reached at step 0"


def test_report_summary(db):
    store = Store(db)
    html = build_report(store, 1)  # metric and threshold from the experiment's targets
    store.close()
    assert "<h3>val/error ≤ 0.5</h3>" in html
    verdicts = html[html.index("<h2>Verdicts"):html.index("<h2>Setup")]
    assert "0.305 ± 0.0071" in verdicts  # lamb's final: the lowest errors
    assert re.search(r"<td>(1\.9\d|2\.0\d)x \(2 vs 2 seeds", verdicts)
    assert views.FLEET_COLUMN in html  # alto reached the target: a measured speed-up


def test_cli_results_table(db, capsys):
    store = Store(db)
    print_results(store, 1)
    store.close()
    lines = capsys.readouterr().out.splitlines()
    assert "best val/error" in lines[0]
    lamb = [line.split() for line in lines[1:] if line.split()[1] == "lamb"]
    assert [row[6] for row in lamb] == ["0.3000", "0.3100"]  # best = the lowest, not 0.9000
