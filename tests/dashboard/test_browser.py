"""The dashboard in a real browser: ``specgrove dashboard`` on 127.0.0.1, headless Chromium
loads every page, waits for the script and the charts, fails on any exception shown, and
screenshots the page. Skipped when Chromium is not installed (``apt-get install -y chromium``).

Screenshots go to the test's temporary directory, and also to $SPECGROVE_SCREENSHOTS when set
(the README's picture: ``docs/img/dashboard.png``, the what-if page after a run).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("websockets")

from browser import Chromium, find_chromium, free_port  # noqa: E402
from dash_helpers import REPO  # noqa: E402

PAGES = {"what-if": "", "sweep": "sweep", "executor": "executor", "validation": "validation", "replay": "replay",
         "study": "study"}
STATE = """(() => {
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  const title = main && main.querySelector('h1');
  const charts = Array.from(document.querySelectorAll('.vega-embed'));
  return {running: !!document.querySelector('[data-testid="stStatusWidgetRunningIcon"]'),
          title: title ? title.innerText : null, charts: charts.length,
          drawn: charts.every(c => c.querySelector('canvas, svg')),
          exceptions: document.querySelectorAll('[data-testid="stException"]').length,
          text: document.body.innerText};
})()"""
EXCEPTION_TEXT = ("Traceback (most recent call last)", "Exception:", "Error:")


@pytest.fixture(scope="module")
def server(tmp_path_factory, study_dir):
    if find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "specgrove.cli", "dashboard", "--port", str(port),
                                 "--study", str(study_dir)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:  # the command became Streamlit; its session holds anything it started
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    b = Chromium(find_chromium(), tmp_path_factory.mktemp("profile"))
    yield b
    b.close()


def settle(browser: Chromium, want: str | None = None, timeout_s: float = 90.0) -> dict:
    """Wait until the page's script has finished (no running icon), its title (and ``want``
    text) is shown and every chart has drawn, three polls in a row."""
    deadline, stable, state = time.monotonic() + timeout_s, 0, {}
    while time.monotonic() < deadline:
        time.sleep(0.4)
        state = browser.eval(STATE)
        ok = state["title"] and not state["running"] and state["drawn"] and (want is None or want in state["text"])
        stable = stable + 1 if ok else 0
        if stable >= 3:
            return state
    raise AssertionError(f"the page did not settle: title {state.get('title')!r}, running {state.get('running')}")


def check_clean(state: dict) -> None:
    assert state["exceptions"] == 0, state["text"][:3000]
    for text in EXCEPTION_TEXT:
        assert text not in state["text"], state["text"][:3000]


def keep(path: Path) -> None:
    target = os.environ.get("SPECGROVE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


@pytest.mark.parametrize("name", list(PAGES))
def test_page_loads_without_exceptions(server, browser, name, tmp_path):
    browser.goto(f"{server}/{PAGES[name]}")
    state = settle(browser)
    check_clean(state)
    if name in ("executor", "validation", "study"):  # pages that open results by default
        assert state["charts"] > 0
    shot = tmp_path / f"dashboard-{name}.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000
    keep(shot)


def test_whatif_run_in_the_browser(server, browser, tmp_path):
    browser.goto(server)
    settle(browser)
    clicked = browser.eval("""(() => {
        const b = Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === 'Run simulation');
        if (b) b.click();
        return !!b; })()""")
    assert clicked
    state = settle(browser, want="Results: what-if")
    check_clean(state)
    assert state["charts"] >= 5 and "Throughput (tokens/s)" in state["text"]
    browser.eval("""document.querySelector('[data-testid="stMainBlockContainer"] h2, '
                 + '[data-testid="stMainBlockContainer"] h3').scrollIntoView()""")
    time.sleep(0.5)
    shot = tmp_path / "dashboard.png"
    browser.screenshot(shot)
    keep(shot)
