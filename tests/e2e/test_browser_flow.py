"""End to end: `streamlit run` on localhost driven by headless Chromium through the default flow.

Train (or load) the original mnist5k model, forget class 3 with UNSC, open
Results and Embeddings (and the Null space and NatMU pages), and check that
the charts rendered and no page shows an exception. Screenshots of every page
go to a temporary folder, and to ``docs/screenshots/`` when
``UNLEARN_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from _streamlit import CHROMIUM, CHROMIUM_ARGS, REPO, no_exception, require_browser, settle, streamlit_app  # tests/e2e

SCREENSHOTS = os.environ.get("UNLEARN_SCREENSHOTS") == "1"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    # A fresh run store per test session; the trained models come from the shared, keyed checkpoint cache.
    with streamlit_app(tmp_path_factory.mktemp("app_data"), (8600, 8700), UNLEARN_DEFAULT_DATASET="mnist5k",
                       UNLEARN_APP_AUTO_UMAP="1" if SCREENSHOTS else "0") as running:
        yield running


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        yield page
        browser.close()


def _shoot(page, name: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    if SCREENSHOTS:
        target = REPO / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / f"{name}.png", target / f"{name}.png")


def _goto(page, title: str) -> None:
    page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=60_000)
    settle(page)


def _wait_for_run(page, shots: Path, timeout_s: float) -> None:
    """Wait until the jobs panel says the run is done; fail at once with its message if it failed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = page.inner_text("body")
        if "done in" in body:
            return
        if " failed: " in body or ": cancelled" in body:
            _shoot(page, "failure_unlearn", shots)
            pytest.fail(f"the run did not finish: {body[body.find('Runs'):][:800]}")
        page.wait_for_timeout(1000)
    _shoot(page, "failure_unlearn", shots)
    pytest.fail(f"the run was not done after {timeout_s} s: {page.inner_text('body')[-800:]}")


def _wait_for_plots(page, minimum: int, timeout_ms: int) -> None:
    """Wait until at least ``minimum`` Plotly charts drew their SVG layers (a chart that failed to render has none)."""
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=stPlotlyChart] .main-svg').length >= {minimum}",
        timeout=timeout_ms)


@pytest.mark.timeout(1800)  # on a shared 2-core machine under load the UNSC run alone took over 10 minutes
def test_default_flow_renders_every_page(server, browser_page, tmp_path):
    page = browser_page
    shots = tmp_path / "screenshots"
    page.goto(server["url"], wait_until="domcontentloaded")
    page.wait_for_selector("h1:has-text('Setup')", timeout=60_000)
    settle(page)
    train = page.get_by_role("button", name="Train the original model")
    if train.count():
        train.click()
    page.get_by_text("is ready (cached on disk)").wait_for(timeout=180_000)
    settle(page)
    assert "Test accuracy" in page.inner_text("body")
    no_exception(page, "Setup", server)
    _shoot(page, "1_setup", shots)

    _goto(page, "Forget set")
    page.get_by_text("training samples to forget", exact=False).first.wait_for(timeout=30_000)
    assert "class:3" in page.inner_text("body")
    # Plotly's script loads lazily after the text is on the page: wait for the chart instead of counting at once.
    _wait_for_plots(page, 1, timeout_ms=60_000)
    no_exception(page, "Forget set", server)
    _shoot(page, "2_forget", shots)

    _goto(page, "Unlearn")
    assert "UNSC" in page.inner_text("body"), "UNSC should be registered and preselected"
    page.get_by_role("button", name="Run 1 method(s)").click()
    _wait_for_run(page, shots, timeout_s=1200)
    settle(page)
    no_exception(page, "Unlearn", server)
    _shoot(page, "3_unlearn", shots)

    _goto(page, "Results")
    page.wait_for_selector("[data-testid=stDataFrame]", timeout=60_000)
    body = page.inner_text("body")
    assert "1 finished run" in body and "unsc" in body
    _wait_for_plots(page, 6, timeout_ms=60_000)
    no_exception(page, "Results", server)
    _shoot(page, "4_results", shots)

    _goto(page, "Embeddings")
    _wait_for_plots(page, 3, timeout_ms=120_000)
    if SCREENSHOTS:  # wait for the background UMAP to replace PCA, for the documentation picture
        page.get_by_text("UMAP", exact=True).first.wait_for(timeout=420_000)
        settle(page)
    # Scatter points are drawn by WebGL: every panel needs its GL canvas.
    assert page.locator("[data-testid=stPlotlyChart] canvas").count() >= 3
    no_exception(page, "Embeddings", server)
    _shoot(page, "5_embeddings", shots)

    _goto(page, "Null space")
    _wait_for_plots(page, 3, timeout_ms=240_000)  # the spectrum; the rivals' two charts
    # The eps view's energy, ranks and removed share are Vega-Lite charts, each drawn with its download button.
    page.wait_for_function("document.querySelectorAll('[data-testid=stVegaLiteChart] svg, "
                           "[data-testid=stVegaLiteChart] canvas').length >= 3", timeout=60_000)
    assert page.get_by_text("_energy.png").count() >= 1  # the button is named after the file it saves
    assert "null space" in page.inner_text("body")
    assert "UNSC beside its training-free rivals" in page.inner_text("body")
    no_exception(page, "Null space", server)
    _shoot(page, "6_nullspace", shots)
    page.get_by_text("UNSC beside its training-free rivals").scroll_into_view_if_needed()
    _shoot(page, "6b_subspaces", shots)

    _goto(page, "NatMU hybrids")
    page.get_by_text("Masks at delta").wait_for(timeout=60_000)
    assert page.locator("[data-testid=stImage] img").count() >= 4 + 4 * 3
    no_exception(page, "NatMU hybrids", server)
    _shoot(page, "7_hybrids", shots)
