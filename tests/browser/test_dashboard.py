"""The dashboard in headless Chromium against a real `hpo serve`: log in, watch a running experiment."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.client import HpoClient
from tests.conftest import LiveServer
from tests.helpers import QUAD, quad_spec_file


def _until(what: str, check: Callable[[], Any], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the page is between renders
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture()
def running(live_server: LiveServer, tmp_path: Path) -> str:
    """An 8-trial experiment of alice's, 2 at a time, each trial ~4 s: running while the test looks."""
    path = quad_spec_file(
        tmp_path / "spec.yaml",
        name=f"dash-{int(time.time() * 1000)}",
        model={"main": "train.py"},
        algorithm={"name": "random", "seed": 3},
        max_trials=8,
        space={
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "c": {"type": "categorical", "choices": ["a", "b"]},
            "sleep": {"type": "categorical", "choices": [4.0]},
        },
    )
    with HpoClient(live_server.url, user="alice", password=live_server.users["alice"]) as client:
        return client.submit(path, QUAD)["name"]


def _js(browser: Any, script: str) -> Any:
    return browser.execute_script(script)


def test_watch_a_running_experiment(browser: Any, live_server: LiveServer, running: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/?refresh=400#/e/{running}")
    _until("the login form", lambda: browser.find_element(By.ID, "login-user").is_displayed())
    browser.find_element(By.ID, "login-user").send_keys("alice")
    browser.find_element(By.ID, "login-password").send_keys(live_server.users["alice"])
    browser.find_element(By.ID, "login-submit").click()
    _until("the experiment page", lambda: browser.find_element(By.ID, "exp-name").text == running)
    _js(browser, "window.__sameDocument = true")  # gone if the page reloads
    _until("the experiment running", lambda: browser.find_element(By.ID, "exp-state").text == "RUNNING")

    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#trial-table tbody tr")  # noqa: E731
    first = _until("trial rows", lambda: len(rows()))
    _until("a new trial without reloading", lambda: len(rows()) > first, timeout_s=60)

    def plotted(div: str, expr: str) -> Any:
        return _js(browser, f"const d = document.getElementById('{div}').data; return d ? {expr} : 0")

    _until("history points", lambda: plotted("history", "d[0].x.length") >= 1)
    _until("learning curves", lambda: plotted("curves", "d.length"))
    _until("parallel coordinates", lambda: plotted("parallel", "d[0].dimensions[0].values.length"))
    assert _js(browser, "return window.__sameDocument === true")
    assert browser.find_elements(By.CSS_SELECTOR, "#history .main-svg")  # plotly really drew it

    def open_finished() -> bool:
        """Find a finished row and click it in one script: the table re-renders every 400 ms, and
        a row found through WebDriver (one round trip per cell) is stale by the time of the click
        on a loaded machine."""
        return bool(
            _js(
                browser,
                """for (const row of document.querySelectorAll('#trial-table tbody tr')) {
                     const cell = row.querySelectorAll('td')[1];
                     if (cell && cell.textContent.trim() === 'FINISHED') { row.click(); return true; }
                   }
                   return false;""",
            )
        )

    _until("a finished trial row, clicked", open_finished)
    _until("the trial's log", lambda: "config" in browser.find_element(By.ID, "log-text").text)
    state = lambda: browser.find_element(By.ID, "exp-state").text  # noqa: E731
    _until("the experiment to finish", lambda: state() == "FINISHED", 120)
    _until("importance bars", lambda: plotted("importance", "d[0].x.length"))
    assert browser.find_element(By.ID, "exp-progress").text.startswith("8/8")


def test_list_login_errors_and_logout(browser: Any, live_server: LiveServer, running: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/#/")
    _until("the login form", lambda: browser.find_element(By.ID, "login-user").is_displayed())
    browser.find_element(By.ID, "login-user").send_keys("alice")
    browser.find_element(By.ID, "login-password").send_keys("wrong-password")
    browser.find_element(By.ID, "login-submit").click()
    _until("the error", lambda: "wrong" in browser.find_element(By.ID, "login-error").text)
    browser.find_element(By.ID, "login-password").clear()
    browser.find_element(By.ID, "login-password").send_keys(live_server.users["alice"])
    browser.find_element(By.ID, "login-submit").click()
    row = _until(
        "the experiment in the list",
        lambda: browser.find_elements(By.CSS_SELECTOR, f'#experiments tbody tr[data-name="{running}"]'),
    )
    row[0].click()
    _until("its page", lambda: browser.find_element(By.ID, "exp-name").text == running)
    browser.find_element(By.ID, "logout").click()
    _until("the login form again", lambda: browser.find_element(By.ID, "login-user").is_displayed())
