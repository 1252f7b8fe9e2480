"""The dashboard in headless chromium: the right runs, live updates, actions, refusals.

Each test serves the app with uvicorn on a free loopback port (tests/dashboard/browser.py)
and checks the console has no error. The module shares one chromium (a second per test
saved), which each test gets blank: no page, no cookie, no console log, the first size.
With ``DURABLE_SA_SCREENSHOTS=DIR`` the screenshots the first test takes are also
written to DIR (``docs/`` for docs/dashboard.md).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from selenium.webdriver.common.by import By

from durable_sa.dashboard import create_app
from durable_sa.testing import drain
from tests.dashboard.browser import WINDOW, chromium, serving, severe, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium import webdriver

    from durable_sa import Durable


@pytest.fixture(scope="module")
def _chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One chromium for the module: starting it costs about a second per test."""
    with chromium(tmp_path_factory.mktemp("chromium") / "profile") as driver:
        yield driver


@pytest.fixture
def browser(_chromium: webdriver.Chrome) -> webdriver.Chrome:
    """The module's chromium as a new one would be: blank page, no cookies, no log."""
    _chromium.get("about:blank")
    # Cookies go by host, not port: the last test's server (also 127.0.0.1) set them.
    _chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    _chromium.set_window_size(*WINDOW)
    _chromium.get_log("browser")  # what the last test left is not this test's
    return _chromium


def _row_ids(driver: webdriver.Chrome) -> list[int]:
    rows = driver.find_elements(By.CSS_SELECTOR, "tr[data-run-id]")
    return [int(row.get_attribute("data-run-id") or 0) for row in rows]


def _shoot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> None:
    shot = tmp_path / f"dashboard-{name}.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wanted = os.environ.get("DURABLE_SA_SCREENSHOTS")
    if wanted:
        shutil.copyfile(shot, Path(wanted) / shot.name)


def test_pages_show_the_right_runs_and_update_live(
    engine: Durable, flows: None, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    greet = engine.start("greet", {"who": "ann"}, idempotency_key="order-1").run_id
    charge = engine.start("charge", {"who": "bob"}).run_id
    tree = engine.start("tree", {"n": 2}).run_id
    waiting = engine.start("approve").run_id
    drain(engine)
    with serving(create_app(engine)) as base:
        browser.get(base + "/")
        assert _row_ids(browser) == [waiting, tree, charge, greet]
        _shoot(browser, tmp_path, "runs")
        later = engine.start("greet", {"who": "cy"}).run_id  # htmx polls every 3 s
        wait_for(lambda: _row_ids(browser)[:1] == [later], timeout=10)

        # An open fold stays open: the live refresh waits while one is open.
        browser.find_element(By.CSS_SELECTOR, f"tr[data-run-id='{tree}'] summary").click()
        time.sleep(4)
        opened = browser.find_element(By.CSS_SELECTOR, f"tr[data-run-id='{tree}'] details")
        assert opened.get_attribute("open") is not None

        browser.find_element(By.CSS_SELECTOR, "input[name=q]").send_keys("order-1\n")
        wait_for(lambda: _row_ids(browser) == [greet])

        browser.get(f"{base}/runs/{charge}")
        timeline = browser.find_element(By.ID, "timeline").text
        assert "ValueError: card declined for bob" in timeline
        browser.find_element(By.CSS_SELECTOR, "#timeline details summary").click()
        assert "Traceback (most recent call last)" in browser.find_element(By.ID, "timeline").text
        assert "reserve#compensate" in browser.find_element(By.ID, "compensations").text
        _shoot(browser, tmp_path, "run")

        browser.get(f"{base}/runs/{tree}")
        assert "leaf" in browser.find_element(By.CSS_SELECTOR, "ul.tree").text

        for page in ("/workflows", "/workers", "/dead-letters", "/limits", "/schedules"):
            browser.get(base + page)
            assert browser.find_element(By.TAG_NAME, "h1").text
        browser.get(base + "/workflows")
        assert "greet" in browser.find_element(By.ID, "workflow-counts").text
        _shoot(browser, tmp_path, "workflows")
        browser.execute_script("htmx.trigger('#live', 'every 3s')")  # htmx is loaded
        wait_for(lambda: browser.execute_script("return typeof htmx") == "object")
    assert severe(browser) == []


def test_an_action_works_from_the_browser(
    engine: Durable, flows: None, browser: webdriver.Chrome
) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    with serving(create_app(engine)) as base:
        browser.get(f"{base}/runs/{run_id}")
        assert "signal 'approve'" in browser.find_element(By.ID, "waits").text
        data = browser.find_element(By.CSS_SELECTOR, "input[name=data]")
        data.send_keys('{"by": "ann"}')
        browser.find_element(By.CSS_SELECTOR, "button[value=signal]").click()
        flash = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".flash.done"))
        assert flash[0].text == "signal 'approve' delivered"
        drain(engine)
        assert engine.status(run_id).status == "completed"
        wait_for(lambda: "completed" in browser.find_element(By.ID, "run-status").text)

        other = engine.start("approve").run_id
        browser.get(f"{base}/runs/{other}")
        browser.find_element(By.ID, "cancel").click()
        browser.switch_to.alert.accept()  # cancel asks first
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".flash.done"))
        assert engine.status(other).status == "canceled"
    assert severe(browser) == []


def test_actions_are_refused_without_permission(
    engine: Durable, flows: None, browser: webdriver.Chrome
) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    with serving(create_app(engine, auth=lambda request: "read")) as base:
        browser.get(f"{base}/runs/{run_id}")
        assert browser.find_elements(By.ID, "cancel") == []
        assert browser.find_element(By.ID, "permission").text == "read"
        status = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            fetch(arguments[0], {method: "POST", body: new URLSearchParams({csrf_token: "x"})})
                .then(r => done(r.status));
            """,
            f"{base}/runs/{run_id}/cancel",
        )
        assert status == 403
    assert engine.status(run_id).status == "suspended"
    logged = severe(browser)
    assert len(logged) == 1  # the refused POST, and nothing else
    assert "403" in logged[0]["message"]


def test_the_token_opens_the_dashboard_once(
    engine: Durable, flows: None, browser: webdriver.Chrome
) -> None:
    run_id = engine.start("greet").run_id
    with serving(create_app(engine, token="browser-token")) as base:  # noqa: S106
        browser.get(base + "/")
        assert "?token=" in browser.find_element(By.TAG_NAME, "body").text
        browser.get(base + "/?token=browser-token")
        assert browser.current_url == base + "/"  # the token left the address bar
        assert _row_ids(browser) == [run_id]
        browser.get(base + "/workflows")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Workflows"
    logged = severe(browser)
    assert len(logged) == 1  # the first, refused visit
    assert "401" in logged[0]["message"]


# ── the trial's findings that only a browser shows ─────────────────────────────


def _overflow(driver: webdriver.Chrome) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return int(
        driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


def test_the_action_bar_goes_when_the_live_update_shows_the_run_ended(
    engine: Durable, flows: None, browser: webdriver.Chrome
) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    with serving(create_app(engine)) as base:
        browser.get(f"{base}/runs/{run_id}")
        data = browser.find_element(By.CSS_SELECTOR, "input[name=data]")
        data.send_keys('{"by": "Zoë"}')
        time.sleep(4)  # a live update or more: what is typed stays
        typed = browser.find_element(By.CSS_SELECTOR, "input[name=data]")
        assert typed.get_attribute("value") == '{"by": "Zoë"}'
        assert browser.find_elements(By.ID, "cancel")
        engine.send(run_id, "approve", {"by": "api"})  # ended elsewhere: the API, the CLI
        drain(engine)
        wait_for(lambda: "completed" in browser.find_element(By.ID, "run-status").text)
        wait_for(lambda: browser.find_elements(By.ID, "cancel") == [])
        assert browser.find_elements(By.ID, "signal-form") == []
    assert severe(browser) == []


def test_cancel_and_pause_ask_first(
    engine: Durable, flows: None, browser: webdriver.Chrome
) -> None:
    run_id = engine.start("approve").run_id
    drain(engine)
    with serving(create_app(engine)) as base:
        browser.get(f"{base}/runs/{run_id}")
        browser.find_element(By.ID, "cancel").click()
        asked = browser.switch_to.alert
        assert f"Cancel run {run_id}" in asked.text
        asked.dismiss()
        time.sleep(0.5)
        assert engine.status(run_id).status == "suspended"  # dismissed: nothing done
        browser.find_element(By.ID, "cancel").click()
        browser.switch_to.alert.accept()
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".flash.done"))
        assert engine.status(run_id).status == "canceled"

        browser.get(f"{base}/workflows")
        pause = "tr[data-workflow='approve'] button[type=submit]"
        browser.find_element(By.CSS_SELECTOR, pause).click()
        asked = browser.switch_to.alert
        assert "Pause approve?" in asked.text
        asked.dismiss()
        time.sleep(0.5)
        assert engine.paused_workflows() == []
        browser.find_element(By.CSS_SELECTOR, pause).click()
        browser.switch_to.alert.accept()
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".flash.done"))
        assert engine.paused_workflows() == ["approve"]
        browser.refresh()  # a reload does not repeat the message
        assert browser.find_elements(By.CSS_SELECTOR, ".flash") == []
    assert severe(browser) == []


def test_long_keys_errors_and_names_wrap_and_a_narrow_window_does_not_scroll_sideways(
    engine: Durable, flows: None, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    from durable_sa import durable  # noqa: PLC0415 - a workflow for this test only

    long_name = "export-" + "n" * 120
    durable(long_name).wait_for_signal("go", "go")
    keyed = engine.start("approve", idempotency_key="k" * 200).run_id
    failed = engine.start("charge", {"who": "x" * 3000}).run_id
    engine.start(long_name)
    drain(engine)
    with serving(create_app(engine)) as base:
        for width in (1280, 1400):
            browser.set_window_size(width, 900)
            for page in ("/", f"/runs/{keyed}", f"/runs/{failed}", "/workflows", "/limits"):
                browser.get(base + page)
                assert _overflow(browser) <= 0, f"{page} at {width} px scrolls sideways"
        browser.set_window_size(500, 900)
        for page in ("/", f"/runs/{keyed}", f"/runs/{failed}", "/workflows", "/limits"):
            browser.get(base + page)
            assert _overflow(browser) <= 0, f"{page} at 500 px scrolls sideways"
            inner = browser.execute_script("return window.innerWidth")
            for link in browser.find_elements(By.CSS_SELECTOR, "header nav a"):
                assert link.is_displayed()
                assert link.rect["x"] + link.rect["width"] <= inner, link.text
        browser.get(f"{base}/runs/{keyed}")
        mode = browser.find_element(By.CSS_SELECTOR, "select[name=mode]")
        assert mode.rect["x"] + mode.rect["width"] <= browser.execute_script(
            "return window.innerWidth"
        )
        _shoot(browser, tmp_path, "narrow-run")
    assert severe(browser) == []
