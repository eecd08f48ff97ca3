"""The ROI page in a real browser (Debian's Chromium driven by Playwright) against a real server:
a digits demo not yet confirmed at budget, the "Confirm at budget" button, the app's own
supervisor training the shortened runs, and the page showing them confirmed."""
from __future__ import annotations

import pytest

from alto.runner import queue_experiment
from alto.store import BUDGET_TAG, Store
from alto.train.presets import expand, load_preset
from alto.train.run import execute_run
from test_browser import Server, kill_runs, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_roi_page_before_and_after_confirming_at_budget(tmp_path, browser):
    db = tmp_path / "alto.db"
    store = Store(db)
    preset = load_preset("demo-digits")
    experiment = queue_experiment(store, preset, expand(preset, optimizers=["lion", "lamb"], seeds=2,
                                                        overrides={"max_steps": 40}))
    for run in store.list_runs(experiment_id=experiment):
        assert execute_run(store, run["id"]) == "finished"
    server = Server(db)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 3600})  # the whole page in one screenshot
        page.goto(f"{server.url}/roi")
        page.get_by_text("Not confirmed at budget.", exact=True).wait_for(timeout=90_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        page.wait_for_timeout(1500)
        body = page.inner_text("body")
        assert "On your fleet (H200 (cuda))" in body and "(not confirmed at budget)" in body
        assert "Seeds per arm" not in body  # planning belongs to Launch
        page.screenshot(path=str(tmp_path / "roi-unconfirmed.png"), full_page=True)

        page.get_by_role("button", name="Confirm at budget on 3 fresh seeds").click()
        page.get_by_text("Queued 3 runs of lion").wait_for(timeout=60_000)
        shortened = wait_for(lambda: [r for r in store.list_runs(experiment_id=experiment) if BUDGET_TAG in r["tags"]]
                             or None, 30, "the queued runs")
        assert len(shortened) == 3
        wait_for(lambda: all(r["status"] == "finished" for r in store.list_runs(experiment_id=experiment)), 300,
                 "the app's supervisor to train the runs at budget")

        page.reload()
        page.locator("strong", has_text="Confirmed at budget: 3/3 lion runs").wait_for(timeout=90_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        page.wait_for_timeout(1500)
        body = page.inner_text("body")
        assert "(confirmed at budget: 3/3 lion runs" in body and "Not confirmed at budget." not in body
        page.screenshot(path=str(tmp_path / "roi-confirmed.png"), full_page=True)
    finally:
        server.stop()
        kill_runs(store)
