"""End to end, shared-server mode (UNLEARN_SHARED=1): two browser sessions on one `streamlit run`.

Session A runs UNSC and uploads its own original model; session B must see none of A's runs, downloads or
uploads, and a hostile link must reach it only as plain text. Along the way: no request leaves the server
(the page icon is local) and there is no Deploy button. digits + mlp, models from the shared checkpoint cache.
"""

from __future__ import annotations

import io
import urllib.parse
import urllib.request

import pytest

from _streamlit import CHROMIUM, CHROMIUM_ARGS, no_exception, require_browser, settle, streamlit_app  # tests/e2e

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    require_browser()
    with streamlit_app(tmp_path_factory.mktemp("shared_data"), (8700, 8800), UNLEARN_SHARED="1") as running:
        yield running


def _goto(page, title: str) -> None:
    page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=60_000)
    settle(page)


def _open(context, url: str, requests: list[str]):
    page = context.new_page()
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("h1:has-text('Setup')", timeout=60_000)
    settle(page)
    train = page.get_by_role("button", name="Train the original model")
    if train.count():
        train.click()
    page.get_by_text("is ready (cached on disk)").wait_for(timeout=180_000)
    settle(page)
    return page


def _untrained_checkpoint() -> bytes:
    import torch

    from unlearn_core.data import load_dataset
    from unlearn_core.models import build_for_dataset

    buffer = io.BytesIO()
    torch.save(build_for_dataset("mlp", load_dataset("digits"), seed=5).state_dict(), buffer)
    return buffer.getvalue()


@pytest.mark.timeout(900)
def test_two_sessions_keep_runs_downloads_and_uploads_apart(shared_server, tmp_path):
    from playwright.sync_api import sync_playwright

    server = shared_server
    requests: list[str] = []
    hostile = urllib.parse.quote("[Session expired: click here](https://evil.example/login)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            a = _open(browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True),
                      f"{server['url']}/?dataset=digits&model=mlp&forget=class:3", requests)
            b = _open(browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True),
                      f"{server['url']}/?dataset=digits&model=mlp&forget={hostile}", requests)
            # Item 12: no Deploy button; item 4: the hostile link arrives as a warning, never as a live link.
            assert a.locator("[data-testid=stAppDeployButton]").count() == 0
            assert "was ignored" in b.inner_text("body")
            assert b.locator("a[href*='evil']").count() == 0
            no_exception(b, "Setup with a hostile link", server)

            # A runs UNSC on its forget set.
            _goto(a, "Unlearn")
            a.get_by_role("button", name="Run 1 method(s)").click()
            a.get_by_text("done in").first.wait_for(timeout=600_000)
            _goto(a, "Results")
            a.wait_for_selector("[data-testid=stDataFrame]", timeout=60_000)
            assert "1 finished run" in a.inner_text("body")
            with a.expect_download(timeout=60_000) as download:
                a.get_by_role("button", name="Download the unlearned checkpoint of run #1").click()
            saved = tmp_path / "run1.pt"
            download.value.save_as(saved)
            from unlearn_core.checkpoints import read_checkpoint

            assert read_checkpoint(saved)["meta"]["run_id"] == 1
            no_exception(a, "Results of A", server)

            # B, on the same forget set and the same server: nothing of A's.
            _goto(b, "Results")
            b.get_by_text("No finished runs for this choice yet").wait_for(timeout=60_000)
            assert b.locator("[data-testid=stDownloadButton]").count() == 0
            no_exception(b, "Results of B", server)

            # A uploads its own original; B keeps the trained one.
            _goto(a, "Setup")
            a.get_by_text("Upload a checkpoint for this model").click()
            a.locator("input[type=file]").set_input_files(
                files=[{"name": "mine.pt", "mimeType": "application/octet-stream", "buffer": _untrained_checkpoint()}])
            a.get_by_role("button", name="Use it as the original model").click(timeout=120_000)
            a.get_by_text("your uploaded checkpoint").wait_for(timeout=60_000)
            settle(a)
            _goto(b, "Setup")
            b.get_by_text("is ready (cached on disk)").wait_for(timeout=60_000)
            assert "uploaded" not in b.locator("[data-testid=stSidebar]").inner_text()
            no_exception(b, "Setup of B after A's upload", server)
        finally:
            browser.close()

    # Item 12: every request went to this server (the favicon used to come from fonts.gstatic.com).
    outside = {urllib.parse.urlsplit(u).netloc for u in requests if not u.startswith(server["url"])
               and not u.startswith(("data:", "blob:"))}
    assert not outside, f"requests left the server: {sorted(outside)}"
