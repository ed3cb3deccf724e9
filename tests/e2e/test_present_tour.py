"""End to end: presentation mode (?present=1 and its toggle) and the Tour, in Chromium at 1280 x 720.

One `streamlit run` for the module; the Tour's setting is the link's (digits, mlp, forget class 3: the tests'
checkpoint cache holds its original and reference, so the tour waits only for its three methods).
"""

from __future__ import annotations

import re

import pytest

from _streamlit import CHROMIUM, CHROMIUM_ARGS, no_exception, require_browser, settle, streamlit_app  # tests/e2e

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SETTING = "dataset=digits&model=mlp&forget=class:3"
SCREENS = ["What was forgotten", "What else was lost", "Where the samples went", "Hidden or gone?"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    from unlearn_core.pipeline import prepare

    prepare("digits", "mlp", "class:3", 0, device="cpu")  # the setting is prepared (cached) before the server starts
    with streamlit_app(tmp_path_factory.mktemp("present_data"), (9500, 9600)) as running:
        yield running


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 720})
        finally:
            browser.close()


def sidebar_shown(page) -> bool:
    return page.locator("[data-testid=stSidebar]").is_visible()


def fits_width(page) -> bool:
    """No horizontal overflow in the page's scrolling block at this window width."""
    return page.evaluate("(() => { const m = document.querySelector('[data-testid=stMain]');"
                         " return m.scrollWidth <= window.innerWidth + 1; })()")


def screen_drawn(page, title: str, server, charts: int = 1) -> None:
    page.get_by_role("heading", name=title).wait_for(timeout=60_000)
    settle(page, 120_000)
    page.wait_for_function(f"document.querySelectorAll('[data-testid=stPlotlyChart] .main-svg').length >= {charts}",
                           timeout=60_000)
    no_exception(page, title, server)


@pytest.mark.timeout(600)
def test_tour_in_presentation_mode_keeps_state_and_shows_four_screens(server, page):
    page.goto(f"{server['url']}/tour?{SETTING}&present=1", wait_until="domcontentloaded")
    page.wait_for_selector("h1:has-text('Tour')", timeout=60_000)
    settle(page)
    no_exception(page, "Tour", server)
    # Presentation mode: no sidebar, the page's own controls hidden, the start button and the toggle kept.
    assert not sidebar_shown(page)
    assert "present=1" in page.url
    start = page.get_by_role("button", name="Start the tour")
    assert start.is_visible()
    assert page.locator(".st-key-keep_present_toggle [data-testid=stCheckbox]").is_visible()

    start.click()
    screen_drawn(page, SCREENS[0], server)
    text = page.locator("[data-testid=stMain]").inner_text()
    assert re.search(r"#\d+ unsc: forget \d", text), text[:2000]
    assert fits_width(page)
    for title, charts in zip(SCREENS[1:], (1, 3, 1)):
        page.get_by_role("button", name="Next").click()
        screen_drawn(page, title, server, charts)
        assert fits_width(page), f"{title} overflows 1280 px"
    assert page.get_by_text(re.compile(r"\((hidden|gone|partly|not forgotten)\)")).count() >= 1

    # Toggling presentation mode off and on keeps the setting and the screen the presenter is on.
    page.locator(".st-key-keep_present_toggle [data-testid=stCheckbox] label").click()
    settle(page)
    page.wait_for_function("!location.search.includes('present=')", timeout=30_000)
    assert sidebar_shown(page)
    assert "forget=class%3A3" in page.url or "forget=class:3" in page.url
    page.get_by_role("heading", name=SCREENS[3]).wait_for(timeout=30_000)
    page.locator("[data-testid=stSidebar] [data-testid=stCheckbox] label", has_text="Presentation mode").click()
    settle(page)
    page.wait_for_function("location.search.includes('present=1')", timeout=30_000)
    assert not sidebar_shown(page)
    page.get_by_role("heading", name=SCREENS[3]).wait_for(timeout=30_000)
    no_exception(page, "Tour after toggling", server)

    # Another page in presentation mode: Results lists the tour's runs, its controls hidden, its table not cut.
    page.goto(f"{server['url']}/results?{SETTING}&present=1", wait_until="domcontentloaded")
    page.wait_for_selector("h1:has-text('Results')", timeout=60_000)
    settle(page, 120_000)
    no_exception(page, "Results", server)
    assert not sidebar_shown(page)
    assert not page.get_by_role("button", name=re.compile("Download the table")).is_visible()
    assert fits_width(page)
    table = page.locator("[data-testid=stDataFrame]").first
    box = table.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1280


@pytest.mark.timeout(300)
def test_bad_present_value_is_dropped_and_unprepared_setting_offers_to_prepare(server, page):
    page.goto(f"{server['url']}/tour?dataset=digits&model=mlp&forget=class:3&seed=424242&present=yes",
              wait_until="domcontentloaded")
    page.wait_for_selector("h1:has-text('Tour')", timeout=60_000)
    settle(page)
    no_exception(page, "Tour", server)
    assert page.get_by_text("The link's present was ignored").is_visible()
    assert sidebar_shown(page) and "present" not in page.url
    assert page.get_by_text("This setting is not prepared").is_visible()
    assert page.get_by_role("button", name="Prepare this setting").is_visible()
