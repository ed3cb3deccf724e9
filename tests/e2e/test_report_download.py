"""End to end (issue 20): Results' "Download report (HTML)" in Chromium gives the self-contained report, and the
downloaded file opens with every request but itself aborted. digits + mlp, one recorded run, one `streamlit run`."""

from __future__ import annotations

import re

import pytest

from _streamlit import CHROMIUM, CHROMIUM_ARGS, no_exception, require_browser, settle, streamlit_app  # tests/e2e

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    data_dir = tmp_path_factory.mktemp("report_data")
    with streamlit_app(data_dir, (9300, 9400)) as running:
        # The run goes into the server's own store (its data directory borrows the tests' checkpoint cache).
        import os

        from unlearn_core.pipeline import prepare
        from unlearn_core.record import run_and_record
        from unlearn_core.store import RunStore

        previous = os.environ["UNLEARN_DATA_DIR"]
        os.environ["UNLEARN_DATA_DIR"] = str(data_dir)
        try:
            setup = prepare("digits", "mlp", "class:3", 0, device="cpu")
            run_and_record(setup, "unsc", {"epochs": 1}, store=RunStore(data_dir / "runs.sqlite"))
        finally:
            os.environ["UNLEARN_DATA_DIR"] = previous
        yield {**running, "data_dir": data_dir}


@pytest.mark.timeout(600)
def test_results_report_downloads_and_opens_offline(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page = context.new_page()
            page.goto(f"{server['url']}/results?dataset=digits&model=mlp&forget=class:3",
                      wait_until="domcontentloaded")
            page.wait_for_selector("h1:has-text('Results')", timeout=60_000)
            settle(page, 180_000)
            no_exception(page, "Results", server)
            button = page.get_by_role("button", name=re.compile("Download report"))
            button.wait_for(timeout=60_000)
            with page.expect_download(timeout=240_000) as download:
                button.click()
            path = tmp_path / "report.html"
            download.value.save_as(path)
            assert download.value.suggested_filename == "digits_class-3_report.html"

            text = path.read_text(encoding="utf-8")
            assert all(f'<section id="{name}">' in text for name in ("setting", "metrics", "embeddings", "spectrum",
                                                                     "recipe"))
            offline = context.new_page()
            url = path.resolve().as_uri()
            aborted = []

            def route(request_route):
                if request_route.request.url == url:
                    request_route.continue_()
                else:
                    aborted.append(request_route.request.url)
                    request_route.abort()

            offline.route("**/*", route)
            offline.goto(url)
            expected = text.count('class="plotly-graph-div"')
            offline.wait_for_function(
                f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {expected}", timeout=60_000)
            assert aborted == [] and expected >= 6
        finally:
            browser.close()
