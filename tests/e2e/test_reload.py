"""End to end (issue 14, part 2): a reload keeps the choice from the URL and the session's jobs; a shared link
opens the same choice in another browser without the jobs. digits + mlp, shared-server mode, one `streamlit run`.
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request

import pytest

from _streamlit import CHROMIUM, CHROMIUM_ARGS, no_exception, require_browser, settle, streamlit_app  # tests/e2e

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    with streamlit_app(tmp_path_factory.mktemp("reload_data"), (8900, 9000), UNLEARN_SHARED="1") as running:
        yield running


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
            settle(page)
            train = page.get_by_role("button", name="Train the original model")
            if train.count():
                train.click()
            page.get_by_text("is ready (cached on disk)").wait_for(timeout=180_000)
            settle(page)

            # A page switch keeps the choice in the URL; the page itself is the URL's path.
            page.locator("[data-testid=stSidebarNav] a", has_text="Unlearn").first.click()
            page.wait_for_selector("h1:has-text('Unlearn')", timeout=60_000)
            settle(page)
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
            settle(page)
            page.get_by_text("unsc on digits/class:5").first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            assert "class:5" in page.locator("[data-testid=stSidebar]").inner_text()
            assert _query(page)["forget"] == "class:5"
            no_exception(page, "Unlearn after a reload", server)
            page.get_by_text("unsc on digits/class:5: done in").first.wait_for(timeout=300_000)

            # The link in another browser: the same choice, none of the jobs (shared-server mode).
            other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            other.goto(link, wait_until="domcontentloaded")
            other.wait_for_selector("h1:has-text('Unlearn')", timeout=60_000)
            settle(other)
            assert "class:5" in other.locator("[data-testid=stSidebar]").inner_text()
            assert "unsc on digits" not in other.inner_text("body")
            no_exception(other, "Unlearn from a shared link", server)
            assert "Runs" in body
        finally:
            browser.close()
