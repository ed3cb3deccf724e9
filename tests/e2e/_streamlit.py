"""What the browser tests share: Debian's Chromium, a free port, a `streamlit run` of the app, page waits."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_browser() -> None:
    """Skip without Debian's Chromium, or fail where CI asks for the browser tests to run."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("UNLEARN_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing and UNLEARN_REQUIRE_BROWSER is set (run `make browser`)")
        pytest.skip(f"{CHROMIUM} is not installed (run `make browser`); set UNLEARN_REQUIRE_BROWSER=1 to fail instead")


def free_port(low: int, high: int) -> int:
    """A free loopback port, tried at random in ``[low, high)`` (test files use distinct ranges), else any."""
    for port in random.sample(range(low, high), high - low):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_app(data_dir: Path, ports: tuple[int, int], **env_extra: str):
    """`streamlit run app.py` on loopback with its own data directory (borrowing the tests' checkpoint cache).

    Yields ``{"url", "log"}``; the server is stopped on exit. ``env_extra`` adds environment variables
    (e.g. ``UNLEARN_SHARED="1"``).
    """
    shared = Path(os.environ["UNLEARN_DATA_DIR"]) / "checkpoints"
    shared.mkdir(parents=True, exist_ok=True)
    (data_dir / "checkpoints").symlink_to(shared, target_is_directory=True)
    port = free_port(*ports)
    env = {**os.environ, "UNLEARN_DATA_DIR": str(data_dir), "UNLEARN_DEFAULT_DATASET": "digits",
           "UNLEARN_APP_AUTO_UMAP": "0", **env_extra}
    log_path = data_dir / "server.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "unlearn_app.serve", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start; log:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield {"url": url, "log": log_path}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def settle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the app's script has finished, plus a moment for the last drawing."""
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)
    page.wait_for_timeout(400)


def no_exception(page, where: str, server) -> None:
    """Fail with the exception box's text and the server log's tail when the page shows one."""
    boxes = page.locator("[data-testid=stException]")
    if boxes.count():
        pytest.fail(f"{where} shows an exception: {boxes.first.inner_text()[:1500]}\nserver log:\n"
                    f"{server['log'].read_text()[-2000:]}")
