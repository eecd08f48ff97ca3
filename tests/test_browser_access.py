"""Token access in a real browser (Debian's Chromium through Playwright) against `alto app --host
0.0.0.0`, reached on 127.0.0.1, with a real database and real training processes.

One server for the module: a copy of the filled database, a viewer token in ALTO_VIEWER_TOKEN and
no editor token, so `alto app` generates one and prints its URL; the tests read it from the
server's output as a user reads `docker logs`. Screenshots go to each test's tmp folder.
"""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from alto.access.tokens import EDITOR_ENV, VIEWER_ENV
from alto.store import Store
from test_browser import Server, kill_runs, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
VIEWER_TOKEN = "stakeholder-link-5b1e0c7d"
TOKEN_PAGE = ("ALTO Lab This dashboard needs an access token. Open the link that alto app printed, or paste the "
              "token you were given. Access token visibility Open")  # all there is ("visibility": the eye icon)
# The demo of these tests: four runs long enough to still be queued or running while they are watched.
DEMO_PRESET = """
name = "access-demo"
title = "Access demo"
source = "ours"
optimizers = ["alto", "lamb", "sgd", "lion"]
seeds = 1
[run]
dataset = "digits"
model = "mlp"
device = "cpu"
threads = 1
data_limit = 256
epochs = 100000
max_steps = 3000
save_final = false
model_kwargs = { hidden = [16] }
"""


class Exposed(Server):
    """`alto app --host 0.0.0.0` with the output it printed; `editor_token` read from that output."""

    def __init__(self, tmp: Path, db: Path):
        self.db = db
        preset = tmp / "access-demo.toml"
        preset.write_text(DEMO_PRESET)
        super().__init__(db, env={"ALTO_DEMO_PRESET": str(preset), "ALTO_DEMO_SEEDS": "1", EDITOR_ENV: "",
                                  VIEWER_ENV: VIEWER_TOKEN}, host="0.0.0.0", output=tmp / "server.out")
        found = re.search(rf"http://127\.0\.0\.1:{self.port}/\?token=(\S+)", self.printed())
        assert found, self.printed()
        self.editor_token = found.group(1)


@pytest.fixture(scope="module")
def server(filled_db, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    db = tmp / "access.db"
    shutil.copy(filled_db, db)
    exposed = Exposed(tmp, db)
    try:
        yield exposed
    finally:
        exposed.stop()
        kill_runs(Store(db))




def open_page(browser, url: str):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True).new_page()
    page.goto(url)
    return page


def go(page, link: str, heading: str) -> None:
    """Follow a sidebar link (the same session: the role is kept) and wait for the page's title."""
    page.locator("[data-testid='stSidebarNavLink']", has_text=link).click()
    page.get_by_role("heading", name=heading, level=1).wait_for(timeout=60_000)
    page.wait_for_timeout(800)  # the rest of the script run


def button(page, name: str):
    return page.get_by_role("button", name=name)


def test_the_printed_url_carries_a_new_token_that_stays_off_the_command_line(server):
    printed = server.printed()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", server.editor_token)
    assert VIEWER_TOKEN not in printed  # a token the user set is never echoed
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()  # the Streamlit server after exec
    assert b"streamlit" in cmdline
    assert server.editor_token.encode() not in cmdline and VIEWER_TOKEN.encode() not in cmdline
    environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
    assert f"{EDITOR_ENV}={server.editor_token}".encode() in environ
    assert f"{VIEWER_ENV}={VIEWER_TOKEN}".encode() in environ


def test_without_a_token_only_the_token_page(server, browser, tmp_path):
    experiment = Store(server.db).list_experiments()[0]["name"]
    page = open_page(browser, server.url)
    for path in ("/", "/compare"):
        page.goto(server.url + path)
        page.get_by_label("Access token").wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        assert page.locator("h1").all_inner_texts() == ["ALTO Lab"], path
        assert page.locator("[data-testid='stSidebarNav'], [data-testid='stSidebar']").count() == 0, path
        assert page.locator(".js-plotly-plot, [data-testid='stDataFrame']").count() == 0, path
        assert experiment not in page.content(), path
        assert page.inner_text("main").split() == TOKEN_PAGE.split(), path
        page.screenshot(path=str(tmp_path / f"token-page{path.replace('/', '-')}.png"), full_page=True)
    page.context.close()


def test_wrong_tokens_are_refused_and_slowed_down(server, browser, tmp_path):
    page = open_page(browser, f"{server.url}/?token=not-the-token")
    refusal = page.get_by_text(re.compile(r"Wrong token \(1 in a row\)"))
    refusal.wait_for(timeout=60_000)
    assert "token=" not in page.url  # taken out of the address bar, right or wrong
    assert "The next try is answered after 1 s" in page.inner_text("main")
    took = []
    for n, wait in ((2, "2 s"), (3, "4 s")):
        page.get_by_label("Access token").fill(f"guess-{n}")
        started = time.monotonic()
        button(page, "Open").click()
        page.get_by_text(f"Wrong token ({n} in a row)").wait_for(timeout=60_000)
        took.append(round(time.monotonic() - started, 1))
        assert f"The next try is answered after {wait}" in page.inner_text("main")
    assert page.locator("[data-testid='stSidebarNav']").count() == 0
    page.screenshot(path=str(tmp_path / "wrong-token.png"), full_page=True)
    print(f"\nACCESS wrong tokens: answers 2 and 3 came after {took} s (they wait 1 s and 2 s first)")
    page.context.close()


def test_a_viewer_sees_compare_roi_and_the_report_but_changes_nothing(server, browser, tmp_path):
    page = open_page(browser, f"{server.url}/?token={VIEWER_TOKEN}")
    page.locator("[data-testid='stSidebarNav']").wait_for(timeout=60_000)
    assert "token=" not in page.url
    assert "Read-only access" in page.inner_text("[data-testid='stSidebar']")
    assert button(page, "Run the demo comparison again").is_disabled()

    go(page, "Compare", "Compare")
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
    page.screenshot(path=str(tmp_path / "viewer-compare.png"), full_page=True)

    go(page, "ROI", "Compute savings (ROI)")
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    with page.expect_download(timeout=60_000) as download:
        button(page, "Download the stakeholder report (HTML)").click()
    report = Path(download.value.path()).read_text(encoding="utf-8")
    assert "<html" in report.lower() and Store(server.db).list_experiments()[0]["name"] in report
    assert server.editor_token not in report and VIEWER_TOKEN not in report and "token=" not in report
    page.screenshot(path=str(tmp_path / "viewer-roi.png"), full_page=True)

    go(page, "Launch", "Launch a comparison")
    assert button(page, "Queue the comparison").is_disabled()
    go(page, "Runs", "Runs")
    assert button(page, "Save tags and notes").is_disabled()
    deletes = page.get_by_role("button", name=re.compile(r"^Delete (run|experiment) #"))
    assert deletes.count() == 2 and all(deletes.nth(i).is_disabled() for i in range(2))
    page.screenshot(path=str(tmp_path / "viewer-runs.png"), full_page=True)
    page.reload()  # a new session, and the token is no longer in the address: asked for again
    page.get_by_label("Access token").wait_for(timeout=60_000)
    assert page.locator("[data-testid='stSidebarNav']").count() == 0
    page.context.close()


def test_the_editor_runs_the_demo_and_a_viewer_cannot_cancel_it(server, browser, tmp_path):
    store = Store(server.db)
    before = {e["id"] for e in store.list_experiments()}
    editor = open_page(browser, f"{server.url}/?token={server.editor_token}")
    button(editor, "Run the demo comparison again").click(timeout=60_000)
    editor.wait_for_url("**/live", timeout=60_000)
    assert "token=" not in editor.url
    new = wait_for(lambda: [e for e in store.list_experiments() if e["id"] not in before], 30, "the demo experiment")
    runs = store.list_runs(experiment_id=new[0]["id"])
    assert sorted(r["optimizer"] for r in runs) == ["alto", "lamb", "lion", "sgd"]

    viewer = open_page(browser, f"{server.url}/live?token={VIEWER_TOKEN}")
    cancels = viewer.get_by_role("button", name="Cancel")
    cancels.first.wait_for(timeout=60_000)
    # read in one go: a run that ends meanwhile takes its button away between two separate reads
    states = "bs => bs.map(b => b.disabled || b.getAttribute('aria-disabled') === 'true')"
    disabled = cancels.evaluate_all(states)
    assert disabled and all(disabled)
    editor_cancels = editor.get_by_role("button", name="Cancel")
    editor_cancels.first.wait_for(timeout=60_000)
    assert not any(editor_cancels.evaluate_all(states))  # the same read sees the editor's buttons enabled
    viewer.screenshot(path=str(tmp_path / "viewer-live.png"), full_page=True)

    last = max(runs, key=lambda r: r["id"])  # still queued: one slot runs the others first
    editor.locator(f".st-key-cancel_{last['id']} button").click(timeout=60_000)
    wait_for(lambda: store.get_run(last["id"])["status"] == "cancelled", 30, "the editor's cancel")
    for page in (editor, viewer):
        page.context.close()


def test_no_token_was_written_anywhere(server):
    """After every visit above (right and wrong tokens, in links and typed): the tokens are in no file
    the server wrote (database, its WAL, run logs) and in its output only as the printed links."""
    assert server.printed().count(server.editor_token) == 2  # the two lines of the link, at start
    written = [p for p in server.db.parent.rglob("*") if p.is_file() and p != server.output]
    assert server.db in written and any(p.suffix == ".log" for p in written)  # the demo's runs logged
    for path in written:
        data = path.read_bytes()
        assert server.editor_token.encode() not in data and VIEWER_TOKEN.encode() not in data, path
