"""End to end: the first sweep a person opens on the Sweeps page teaches something. digits + mlp, a 2x2 GA grid
(lr x epochs) whose largest learning rate diverges on purpose, run into the server's store before the browser
opens; one `streamlit run` for the module.

Checked in Chromium: the picker counts the done runs; a failed cell gives its stored reason in the phase map's
tooltip and in the list under the map; the small grid's axes are categorical, its legend clears the tick labels
and each value label has a text colour chosen for its background; the Pareto axes are not degenerate; "Open in
Results" on a failed cell stays on Sweeps and says it has no finished run, on a done cell it shows only that
cell's runs; a typed grid value outside the declared range gets a message next to its field.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from _streamlit import CHROMIUM, CHROMIUM_ARGS, no_exception, require_browser, settle, streamlit_app  # tests/e2e

pytestmark = [pytest.mark.browser, pytest.mark.slow]
GRID = {"lr": [0.002, 0.1], "epochs": [2, 10]}  # lr 0.1 drives digits' MLP to a NaN loss within 10 epochs


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    data_dir = tmp_path_factory.mktemp("first_sweep_data")
    with streamlit_app(data_dir, (9400, 9500)) as running:
        from unlearn_core.store import RunStore
        from unlearn_core.sweeps import SweepSpec, run_sweep

        previous = os.environ["UNLEARN_DATA_DIR"]
        os.environ["UNLEARN_DATA_DIR"] = str(data_dir)
        try:
            store = RunStore(data_dir / "runs.sqlite")
            run_sweep(SweepSpec(dataset="digits", model="mlp", forgets=["class:3"], methods=["ga"],
                                grid={"ga": GRID}, seeds=[0], tag="first"),
                      engine="inline", store=store, device="cpu", save_checkpoints=False, log=lambda _: None)
            runs = store.sweep_runs("first")
        finally:
            os.environ["UNLEARN_DATA_DIR"] = previous
        yield {**running, "runs": runs}


def figure(page, index: int) -> dict:
    """The ``index``-th plotly chart's data and full layout, as the browser drew it."""
    return page.evaluate(
        """(i) => { const gd = document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')[i];
                   return {data: gd.data.map(t => ({name: t.name, hovertext: t.hovertext, x: t.x,
                                                    textcolor: t.textfont && t.textfont.color})),
                           layout: {x: gd._fullLayout.xaxis.type, xcats: gd._fullLayout.xaxis.categoryarray,
                                    xrange: gd._fullLayout.xaxis.range, yrange: gd._fullLayout.yaxis.range,
                                    legend: gd._fullLayout.legend.y}}; }""", index)


@pytest.mark.timeout(600)
def test_first_sweep_page(server):
    from playwright.sync_api import sync_playwright

    done = sum(r["status"] == "done" for r in server["runs"])
    failed = [r for r in server["runs"] if r["status"] == "failed"]
    assert failed and "nan" in failed[0]["error"]  # the grid's point: one cell diverges
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server['url']}/sweeps?dataset=digits&model=mlp&forget=class:3",
                      wait_until="domcontentloaded")
            page.wait_for_selector("h1:has-text('Sweeps')", timeout=60_000)
            settle(page, 180_000)
            no_exception(page, "Sweeps", server)

            # The picker counts the done runs (and the failed ones) of the sweep.
            picker = page.locator("[data-testid=stSelectbox]").filter(has_text="Sweep").first
            shown = picker.inner_text() + " ".join(box.input_value() for box in picker.locator("input").all())
            assert f"{done} runs done, {len(failed)} failed" in shown, shown

            # The list under the map names the failed cell and its stored reason.
            failures = page.locator(".st-key-sweep_failures")
            failures.wait_for(timeout=30_000)
            text = failures.inner_text()
            assert "Failed cells" in text and "lr=0.1" in text and "loss became nan" in text

            # Phase map: categorical axes in grid order, legend above the plot, one label colour per value,
            # and the failed cell's tooltip data carries the reason.
            page.wait_for_function("document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')"
                                   ".length >= 2", timeout=60_000)
            phase = figure(page, 0)
            assert phase["layout"]["x"] == "category"
            assert phase["layout"]["xcats"] in (["0.002", "0.1"], ["2", "10"])  # in order, one column each
            assert phase["layout"]["legend"] >= 1.0
            shown = phase["data"][0]
            assert isinstance(shown["textcolor"], list) and len(shown["textcolor"]) == len(shown["x"])
            missing = [t for t in phase["data"] if t["name"] and t["name"].startswith("no value")]
            # Every run of the failed cell failed: a grey square whose hover text is the stored reason.
            assert missing and "loss became nan" in json.dumps(missing[0]["hovertext"]), missing

            # Pareto: both axes span at least 5 points from 0.
            pareto = figure(page, 1)
            assert pareto["layout"]["xrange"][1] >= 5 and pareto["layout"]["yrange"][1] >= 5
            assert pareto["layout"]["xrange"][0] <= 0

            # "Open in Results" on the failed cell stays here and says there is nothing to show.
            bad_label = next(line for line in text.splitlines() if "lr=0.1" in line).split(":")[0].strip()
            cell_picker = page.locator("[data-testid=stSelectbox]").filter(has_text="Open a cell's runs")
            search = cell_picker.locator("input").first
            search.click()
            search.fill(bad_label)  # the select filters its options by the typed text; Enter takes the match
            page.keyboard.press("Enter")
            settle(page)
            assert bad_label in cell_picker.inner_text() + search.input_value()
            page.get_by_role("button", name=re.compile("Open in Results")).click()
            settle(page)
            page.get_by_text("has no finished run to open in Results").wait_for(timeout=30_000)
            assert page.locator("h1:has-text('Sweeps')").count() == 1

            # A typed value outside the declared range: a message next to the field, nothing launched.
            page.locator("[data-testid=stExpander] summary").filter(has_text="Launch a sweep").click()
            settle(page)
            field = page.get_by_role("textbox", name="ga.lr: values", exact=True)
            if not field.count():  # GA's measured spans preselect lr and epochs; choose lr where they do not
                vary = page.locator("[data-testid=stMultiSelect]").filter(has_text="parameters to vary")
                vary.locator("input").click()
                page.get_by_role("option", name="lr").click()
                page.keyboard.press("Escape")
                settle(page)
            field.fill("0.001, 5")
            field.press("Enter")
            settle(page)
            page.get_by_text("must be in [1e-07, 0.1]").wait_for(timeout=30_000)
            assert page.get_by_role("button", name=re.compile("Launch the sweep")).count() == 0
            no_exception(page, "Sweeps after typing", server)
        finally:
            browser.close()
