"""End to end (issue 14, part 2): a reload keeps the choice from the URL and the session's jobs; a shared link
opens the same choice in another browser without the jobs. digits + mlp, shared-server mode, one `streamlit run`.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("UNLEARN_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing and UNLEARN_REQUIRE_BROWSER is set (run `make browser`)")
        pytest.skip(f"{CHROMIUM} is not installed (run `make browser`); set UNLEARN_REQUIRE_BROWSER=1 to fail instead")


def _port() -> int:
    for port in random.sample(range(8900, 9000), 100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require_browser()
    data_dir = tmp_path_factory.mktemp("reload_data")
    shared = Path(os.environ["UNLEARN_DATA_DIR"]) / "checkpoints"
    shared.mkdir(parents=True, exist_ok=True)
    (data_dir / "checkpoints").symlink_to(shared, target_is_directory=True)
    port = _port()
    env = {**os.environ, "UNLEARN_DATA_DIR": str(data_dir), "UNLEARN_DEFAULT_DATASET": "digits",
           "UNLEARN_APP_AUTO_UMAP": "0", "UNLEARN_SHARED": "1"}
    log_path = data_dir / "server.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"streamlit did not start; log:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
    yield {"url": url, "log": log_path}
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _settle(page, timeout_ms: int = 60_000) -> None:
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)
    page.wait_for_timeout(400)


def _no_exception(page, where: str, server) -> None:
    boxes = page.locator("[data-testid=stException]")
    if boxes.count():
        pytest.fail(f"{where} shows an exception: {boxes.first.inner_text()[:1500]}\nserver log:\n"
                    f"{server['log'].read_text()[-2000:]}")


def _query(page) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))


@pytest.mark.timeout(600)
def test_a_reload_keeps_the_choice_and_the_jobs(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{server['url']}/?dataset=digits&model=mlp&forget=class:5", wait_until="domcontentloaded")
            page.wait_for_selector("h1:has-text('Setup')", timeout=60_000)
            _settle(page)
            train = page.get_by_role("button", name="Train the original model")
            if train.count():
                train.click()
            page.get_by_text("is ready (cached on disk)").wait_for(timeout=180_000)
            _settle(page)

            # A page switch keeps the choice in the URL; the page itself is the URL's path.
            page.locator("[data-testid=stSidebarNav] a", has_text="Unlearn").first.click()
            page.wait_for_selector("h1:has-text('Unlearn')", timeout=60_000)
            _settle(page)
            page.wait_for_function("() => location.search.includes('forget=class')", timeout=30_000)
            assert urllib.parse.urlsplit(page.url).path.endswith("/unlearn")
            assert _query(page) == {"dataset": "digits", "model": "mlp", "forget": "class:5", "seed": "0"}
            page.get_by_role("button", name="Run 1 method(s)").click()
            page.get_by_text("unsc on digits/class:5").first.wait_for(timeout=60_000)
            link = page.url

            # The token lives in a cookie of this browser, never in the link.
            cookies = {c["name"]: c["value"] for c in context.cookies()}
            token = cookies.get("unlearn_session", "")
            assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token), cookies
            assert token not in link

            # Reload: the same page, the same choice, and the session's job (running or by now done).
            page.reload(wait_until="domcontentloaded")
            page.wait_for_selector("h1:has-text('Unlearn')", timeout=60_000)
            _settle(page)
            page.get_by_text("unsc on digits/class:5").first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            assert "class:5" in page.locator("[data-testid=stSidebar]").inner_text()
            assert _query(page)["forget"] == "class:5"
            _no_exception(page, "Unlearn after a reload", server)
            page.get_by_text("unsc on digits/class:5: done in").first.wait_for(timeout=300_000)

            # The link in another browser: the same choice, none of the jobs (shared-server mode).
            other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            other.goto(link, wait_until="domcontentloaded")
            other.wait_for_selector("h1:has-text('Unlearn')", timeout=60_000)
            _settle(other)
            assert "class:5" in other.locator("[data-testid=stSidebar]").inner_text()
            assert "unsc on digits" not in other.inner_text("body")
            _no_exception(other, "Unlearn from a shared link", server)
            assert "Runs" in body
        finally:
            browser.close()
