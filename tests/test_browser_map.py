"""The map of a real digits sweep in a real browser: `alto run --preset digits-batch-sweep`
(shortened: two optimizers, one LR each, two seeds, 60 steps at most) trains every run in a
subprocess, then Debian's Chromium opens the Map page of `alto app` on that database."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from alto.analysis.sweep import sweep_map
from alto.plots.sweep import SPREAD
from alto.store import Store
from test_browser import Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BATCHES = [64, 128, 256, 512, 1024]


def test_the_map_page_shows_one_point_per_optimizer_and_batch_with_intervals(tmp_path, browser):
    db = tmp_path / "alto.db"
    subprocess.run([sys.executable, "-m", "alto.cli", "run", "--preset", "digits-batch-sweep", "--seeds", "2",
                    "--max-steps", "60", "--optimizers", "alto,lamb", "--lr-grid", "alto=0.03", "--lr-grid",
                    "lamb=0.03", "--db", str(db)], check=True, timeout=900, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    store = Store(db)
    m = sweep_map(store, 1)
    assert m.values == BATCHES and all(m.point("alto", b).row.result.interval_kind == "ci" for b in BATCHES)
    server = Server(db)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{server.url}/map")
        page.wait_for_selector(".js-plotly-plot", timeout=90_000)
        page.wait_for_timeout(1500)
        traces = page.evaluate("""() => document.querySelector('.js-plotly-plot').data.map(t => ({
            name: t.name || '', x: t.x || [], y: t.y || [], yaxis: t.yaxis || 'y',
            err: t.error_y && t.error_y.visible ? t.error_y.array : null}))""")
        top = [t for t in traces if t["yaxis"] == "y" and t["name"].startswith("alto (")]
        points = [(x, y, t["err"][i] if t["err"] else None)
                  for t in top for i, (x, y) in enumerate(zip(t["x"], t["y"]))]
        def batch(x: float) -> int:  # candidates are set apart by at most SPREAD of a log step
            b = min(BATCHES, key=lambda b: abs(math.log(x / b)))
            assert abs(math.log(x / b)) <= SPREAD
            return b
        assert sorted(batch(x) for x, _, _ in points) == BATCHES, traces        # one point per batch size
        assert all(err is not None and err > 0 for _, _, err in points)           # each with its interval
        for x, y, _ in points:
            assert y == pytest.approx(m.point("alto", batch(x)).row.result.estimate)
        body = page.inner_text("body")
        assert "alto vs lamb to val/acc ≥ 0.9:" in body and "held fixed" in body
        page.screenshot(path=str(tmp_path / "map.png"), full_page=True)
    finally:
        server.stop()
        store.close()
