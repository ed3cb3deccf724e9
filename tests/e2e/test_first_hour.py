"""The first hour of a teacher in Chromium (issue 20, problems 1, 2, 3, 6, 7 and 9): one `streamlit run` on digits +
mlp with a fresh run store, driven like a user (type, press Enter, double-click, open a link) and judged by what
the page shows.

The runs the Results page judges are recorded before the server starts (``run_and_record``, the one way a run
reaches the store, as the app's worker does); the Unlearn page's runs are queued through the page itself.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

from _streamlit import CHROMIUM, CHROMIUM_ARGS, no_exception, require_browser, settle, streamlit_app  # tests/e2e

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BASE = "dataset=digits&model=mlp&seed=0"


def _record(data_dir: Path, forget: str, methods: dict[str, dict]) -> list[int]:
    from unlearn_core.pipeline import prepare
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore

    setup = prepare("digits", "mlp", forget, 0, device="cpu")
    store = RunStore(data_dir / "runs.sqlite")
    return [run_and_record(setup, method, params, store=store)[0] for method, params in methods.items()]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    data_dir = tmp_path_factory.mktemp("first_hour")
    # class:3: a sweep's retrained reference (method "retrain") beside one GA run; random:0.1: two single-seed runs.
    runs = {"class": _record(data_dir, "class:3", {"retrain": {}, "ga": {"epochs": 1}}),
            "random": _record(data_dir, "random:0.1", {"ga": {"epochs": 1}, "rl": {"epochs": 1}})}
    with streamlit_app(data_dir, (9500, 9600)) as running:
        running["runs"] = runs
        yield running


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    yield context.new_page()
    context.close()


def _open(page, server, path: str, query: str, title: str) -> None:
    page.goto(f"{server['url']}/{path}?{query}", wait_until="domcontentloaded")
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=90_000)
    settle(page)
    no_exception(page, title, server)


def _query(page) -> dict:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))


def _headers(page, nth: int = 0) -> list[str]:
    """The column headers of a dataframe as the grid's accessible table lists them."""
    grid = page.locator("[data-testid=stDataFrame]").nth(nth)
    grid.wait_for(timeout=60_000)
    # The grid's frame is drawn before its accessible table: wait for the first header cell too.
    grid.locator("th").first.wait_for(state="attached", timeout=60_000)
    return [t.strip() for t in grid.locator("th").all_inner_texts()]


def _rows(page, nth: int = 0) -> list[str]:
    grid = page.locator("[data-testid=stDataFrame]").nth(nth)
    return [t.strip() for t in grid.locator("tr td:first-child, tr th[scope=row]").all_inner_texts()]


@pytest.mark.timeout(300)
def test_1_a_sweeps_retrained_reference_is_no_candidate(server, page):
    retrain, ga = server["runs"]["class"]
    _open(page, server, "results", f"{BASE}&forget=class:3", "Results")
    body = page.inner_text("body")
    # One real candidate (GA) beside the reference: nothing may be marked best, the reference least of all.
    assert "No cell is highlighted: a best run needs at least two in-scope runs" in body
    assert "2 finished run(s)" in body
    page.get_by_role("button", name="Download the table (CSV)").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the table (CSV)").click()
    shown = Path(download.value.path()).read_text(encoding="utf-8")
    assert f"#{retrain} retrain (reference)" in shown and f"#{ga} ga" in shown


@pytest.mark.timeout(300)
def test_2_a_bad_class_in_a_link_is_dropped_and_the_pages_stay_usable(server, page):
    _open(page, server, "forget", f"{BASE}&forget=class:33", "Forget set")
    body = page.inner_text("body")
    assert "The link's forget set was ignored" in body and "33" not in body.split("ignored")[1].split("\n")[0]
    assert "unknown class" not in body
    assert _query(page)["forget"] != "class:33"
    page.get_by_text("Kind of forget set").wait_for()  # the control to fix the choice is there
    page.locator("[data-testid=stSidebarNav] a", has_text="Unlearn").first.click()
    page.wait_for_selector("h1:has-text('Unlearn')", timeout=60_000)
    settle(page)
    no_exception(page, "Unlearn after a bad link", server)
    assert "unknown class" not in page.inner_text("body")


def _chosen(page, label: str) -> str:
    """What a selectbox shows as chosen: its text, or its input's value where the box is searchable."""
    box = page.locator("[data-testid=stSelectbox]").filter(has=page.get_by_text(label, exact=True)).first
    box.wait_for(timeout=60_000)
    shown = box.inner_text()
    inputs = box.locator("input")
    values = [inputs.nth(i).input_value() for i in range(inputs.count())]
    attributes = box.locator("[value]").evaluate_all("els => els.map(e => e.getAttribute('value') || '')")
    return " ".join([shown, *values, *attributes])


def _field(page, name: str):
    return page.locator("[data-testid=stTextInput]", has_text=name).locator("input").first


def _jobs(page, label: str) -> int:
    return len(re.findall(re.escape(label), page.inner_text("body")))


@pytest.mark.timeout(400)
def test_3_enter_never_submits_bad_values_are_named_and_a_double_click_queues_once(server, page):
    _open(page, server, "unlearn", f"{BASE}&forget=class:5", "Unlearn")
    label = "unsc on digits/class:5"
    eps = _field(page, "eps")
    eps.fill("0,5")
    eps.press("Enter")
    settle(page)
    page.wait_for_timeout(800)
    assert "Queued" not in page.inner_text("body") and _jobs(page, label) == 0  # Enter queued nothing

    page.get_by_role("button", name="Run 1 method(s)").click()
    settle(page)
    body = page.inner_text("body")
    assert "eps: a number is written with a dot, e.g. 0.5" in body  # next to the field
    assert "Nothing was queued: 1 field(s) to fix first" in body  # and Run says why
    assert _jobs(page, label) == 0

    eps.fill("1.5")
    page.get_by_role("button", name="Run 1 method(s)").click()
    settle(page)
    assert "eps: out of range; type a number from 0.5 to 1" in page.inner_text("body")

    # A long run (500 epochs), so it is still queued or running when the same submission comes again.
    eps.fill("0.99")
    _field(page, "epochs").fill("500")
    page.get_by_role("button", name="Run 1 method(s)").dblclick()
    page.get_by_text(label).first.wait_for(timeout=60_000)
    settle(page)
    page.get_by_role("button", name="Run 1 method(s)").click()
    settle(page)
    body = page.inner_text("body")
    assert re.search(r"nothing was queued: an identical run \(unsc, same setting, parameters and seed\) is already "
                     r"(queued|running)", body), body[-2000:]
    assert _jobs(page, label) == 1, body[-2000:]  # the double click and the third click queued it once
    page.get_by_role("button", name="Cancel").first.click()  # frees the worker for the next tests
    page.get_by_text(f"{label}: cancelled").first.wait_for(timeout=60_000)


@pytest.mark.timeout(300)
def test_7_closeness_columns_name_the_retrained_target(server, page):
    _open(page, server, "results", f"{BASE}&forget=random:0.1", "Results")
    headers = _headers(page)
    assert "MIA-SVC → retrained" in headers and "MIA-ent. → retrained" in headers, headers
    assert not any(h.startswith("MIA") and ("↓" in h or "↑" in h) for h in headers), headers


@pytest.mark.timeout(300)
def test_9_a_link_reopens_eps_and_the_chosen_run_and_drops_bad_values(server, page, browser):
    ga = server["runs"]["random"][0]
    _open(page, server, "nullspace", f"{BASE}&forget=random:0.1&eps=0.95", "Null space")
    slider = page.locator("[data-testid=stSlider]", has_text="eps (share").first
    assert slider.locator("[data-testid=stSliderThumbValue]").inner_text().strip() == "0.9500"
    assert _query(page)["eps"] == "0.95"
    thumb = slider.get_by_role("slider").first
    thumb.focus()
    thumb.press("ArrowRight")
    page.wait_for_function("() => new URLSearchParams(location.search).get('eps') === '0.9505'", timeout=30_000)

    _open(page, server, "results", f"{BASE}&forget=random:0.1&run={ga}", "Results")
    assert f"#{ga} ga" in _chosen(page, "Run"), _chosen(page, "Run")
    assert _query(page)["run"] == str(ga)
    link = page.url
    other = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
    other.goto(link, wait_until="domcontentloaded")
    other.wait_for_selector("h1:has-text('Results')", timeout=90_000)
    settle(other)
    assert f"#{ga} ga" in _chosen(other, "Run")
    other.context.close()

    _open(page, server, "results", f"{BASE}&forget=random:0.1&run=99999&eps=2", "Results")
    body = page.inner_text("body")
    assert "The link's run was ignored: it is not a finished run you can see for this choice" in body
    assert "The link's eps was ignored: eps must be between 0.8 and 1" in body
    assert "99999" not in body
    assert "Download the table (CSV)" in body  # the page stays usable


@pytest.mark.timeout(400)
def test_6_single_seed_highlights_respect_the_noise_and_three_seeds_are_one_click(server, page):
    _open(page, server, "results", f"{BASE}&forget=random:0.1", "Results")
    body = page.inner_text("body")
    assert re.search(r"95 % Wilson score interval of an accuracy on that column's number of samples .*\(forget "
                     r"1\d\d, retained 1\d\d\d, test \d+ samples\)", body), body[-3000:]
    page.get_by_role("button", name="Run 3 seeds").click()
    page.get_by_text("Queued 4 run(s): seeds 1, 2 of the single-seed runs").wait_for(timeout=60_000)
    settle(page)
    page.get_by_role("button", name="Run 3 seeds").click()  # again, while they wait: refused, with the reason
    page.get_by_text(re.compile(r"nothing was queued: an identical run \((ga|rl), same setting, parameters and "
                                r"seed\) is already (queued|running)")).wait_for(timeout=60_000)
