"""Security in a real browser and on the wire: user text is text everywhere; the server is local.

One `alto app --port P --db <copy of filled_db>` server for the module. In the copy, the first run
of the experiment is renamed `<img src=x onerror=alert(1)>`, the experiment's name, its notes and
the run's notes carry HTML/JS too. Debian's Chromium (through Playwright, never `playwright
install`) visits every page URL, waits for the script run to settle, records every JS dialog, and
takes one screenshot per page (into the test's tmp folder). No dialog may fire, no injected element
may exist, and the Runs page must show the run name as literal text. The HTML report of the same
experiment (build_report) is opened in the browser as well.

The same server answers the binding check: it listens on 127.0.0.1 only (ss -ltn), and a
connection to the machine's non-loopback address on that port is refused.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alto.store import Store
from conftest import CHROMIUM
from rel_support import ENV, free_port, group_alive, non_loopback_ipv4
from test_browser import wait_until_healthy

pytestmark = [pytest.mark.browser, pytest.mark.slow]

XSS_RUN = "<img src=x onerror=alert(1)>"
XSS_EXPERIMENT = "Tiny <svg onload=alert(2)> comparison"
XSS_NOTES = ("<script>alert(3)</script><b onmouseover=alert(4)>bold</b>"
             "<a href=\"javascript:alert(5)\">click</a><iframe src=\"javascript:alert(6)\"></iframe>")
# url path -> a plotly chart is expected there with the filled database
PAGES = {"/": False, "/launch": False, "/live": True, "/compare": True, "/gradients": True, "/runs": False,
         "/roi": True, "/landscape": True, "/flatness": False}
INJECTED = "img[src='x'], svg[onload], b[onmouseover], iframe[src^='javascript'], a[href^='javascript']"

SCRIPT_WITH_ALERT = "() => [...document.scripts].some(s => s.text.includes('alert('))"


@pytest.fixture(scope="module")
def xss_db(filled_db, tmp_path_factory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("xss") / "xss.db"
    shutil.copy(filled_db, path)
    store = Store(path)
    experiment = store.list_experiments()[0]
    first = store.list_runs(experiment_id=experiment["id"])[0]
    store.update_run(first["id"], name=XSS_RUN)
    store.set_notes(XSS_NOTES, run_id=first["id"])
    store.set_notes(XSS_NOTES, experiment_id=experiment["id"])
    with store._write() as conn:  # no public rename for experiments; same transaction helper the Store uses
        conn.execute("UPDATE experiments SET name = ? WHERE id = ?", (XSS_EXPERIMENT, experiment["id"]))
    store.close()
    return path, experiment["id"]


@pytest.fixture(scope="module")
def server(xss_db):
    path, _ = xss_db
    port = free_port()
    alto = Path(sys.executable).with_name("alto")
    command = [str(alto)] if alto.exists() else [sys.executable, "-m", "alto.cli"]
    proc = subprocess.Popen([*command, "app", "--port", str(port), "--db", str(path)], env=ENV,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, proc, poll_s=0.3)
        yield url, port
    finally:  # the server's group: `alto app` and the streamlit process it runs
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if group_alive(proc.pid):
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + 10
            while group_alive(proc.pid) and time.monotonic() < deadline:
                proc.poll()  # reap the leader
                time.sleep(0.1)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def test_server_listens_on_loopback_only(server):
    _, port = server
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    local = [line.split()[3] for line in listening if line.split()[3].rsplit(":", 1)[-1] == str(port)]
    assert local, f"nothing listens on port {port}"
    assert all(addr.rsplit(":", 1)[0] in ("127.0.0.1", "[::1]") for addr in local), local
    outward = non_loopback_ipv4()
    result = "no non-loopback address on this machine"
    if outward is not None:
        with socket.socket() as s:
            s.settimeout(5)
            with pytest.raises(ConnectionRefusedError):
                s.connect((outward, port))
        result = f"connect to {outward}:{port} refused"
    print(f"\nSECURITY bind: `alto app --port {port}` listens on {local}; {result}")


def _settle(page, timeout_s: float = 60) -> None:
    """Until the script run is over: a title is shown and no 'Running' status for a moment."""
    page.wait_for_selector("h1", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.evaluate(
            "() => { const w = document.querySelector('[data-testid=\"stStatusWidget\"]');"
            " return !!w && /Running/i.test(w.innerText); }")
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return
        page.wait_for_timeout(200)
    raise AssertionError("the page kept running")


def test_user_text_is_text_in_every_page_and_the_report(server, xss_db, tmp_path):
    from playwright.sync_api import sync_playwright

    from alto.presentation.report import build_report

    url, _ = server
    db, experiment_id = xss_db
    store = Store(db)
    report = tmp_path / "report.html"
    report.write_text(build_report(store, experiment_id), encoding="utf-8")
    store.close()

    dialogs: list[str] = []
    seen: dict[str, str] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(f"{page.url}: {d.type} {d.message}"), d.dismiss()))
            for path, chart in PAGES.items():
                started = time.monotonic()
                page.goto(url + path, wait_until="domcontentloaded", timeout=60_000)
                _settle(page)
                if chart:
                    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
                if path == "/compare":  # run names become trace names in the overlay mode
                    page.get_by_text("overlay runs", exact=True).click()
                    _settle(page)
                    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
                    page.locator(".js-plotly-plot").first.hover()  # legend/hover text rendered
                page.wait_for_timeout(300)  # give any injected handler its chance to run
                name = path.strip("/") or "home"
                page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
                assert page.locator("[data-testid='stException']").count() == 0, f"{path}: exception shown"
                assert page.locator(INJECTED).count() == 0, f"{path}: injected markup became elements"
                assert not page.evaluate(SCRIPT_WITH_ALERT), f"{path}: an injected <script> is in the page"
                seen[path] = page.inner_text("body")
                print(f"BROWSER {path}: settled in {time.monotonic() - started:.1f} s, "
                      f"{page.locator('.js-plotly-plot').count()} plotly charts, dialogs so far {len(dialogs)}")
            page.goto(report.as_uri(), wait_until="load", timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            report_text = page.inner_text("body")
            report_injected = page.locator(INJECTED).count() + page.evaluate(SCRIPT_WITH_ALERT)
        finally:
            browser.close()

    assert dialogs == [], dialogs
    assert XSS_RUN in seen["/runs"], "the run name is shown as literal text on the Runs page"
    assert report_injected == 0 and XSS_RUN in report_text and "<script>alert(3)</script>" in report_text
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(shots) == len(PAGES) + 1
    print(f"SECURITY xss: {len(PAGES)} pages + report in Chromium, 0 dialogs, 0 injected elements; "
          f"run name shown literally on /runs and in the report; screenshots: {tmp_path}")
