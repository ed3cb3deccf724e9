"""What a person waits for in the dashboard, measured in headless Chromium (Playwright), not as script reruns.

Run: ``.venv/bin/python benchmarks/bench_app_browser.py [--dataset mnist5k] [--sweep-cells 100] [--rounds 3]``.
Uses ``UNLEARN_DATA_DIR`` if set, else ``.unlearn_data/bench``. Prints one JSON object with the load average
before and after; docs/APP.md quotes a run of it.

- ``first_page_s``: from starting the server as ``make run`` does (``python -m unlearn_app.serve``) to the Setup
  page interactive (script finished, gallery drawn), the browser opening the address as soon as the server
  answers; ``first_page_from_open_s``: the same from opening the address; ``first_page_opened_later_s``: from
  opening the address ``--open-after`` seconds after the server answered (a person reading the address), until
  Setup is interactive. Each ``--rounds`` times, each time in a new server process and a new browser context (an
  empty cache: a browser that never opened the dashboard); Chromium is started before the server;
- ``first_page_warm_cache_s`` / ``first_page_warm_cache_from_open_s``: the same as ``first_page_s`` /
  ``first_page_from_open_s`` in one browser context that opened the dashboard at the same address once before
  (every later start of a dashboard a person has used: Streamlit's scripts, fonts and styles come from the
  browser's cache);
- ``page_switch_s``: a click on a page in the sidebar until its title, the end of its script and its charts
  are drawn (each page, ``--rounds`` times; median and max);
- ``eps_slider_ms`` (Null space) and ``delta_slider_ms`` (NatMU hybrids): a key press on the focused slider
  (ArrowRight: one step) until the last change of the charts / mask images it redraws;
- ``umap_cold_s``: the first visit of Embeddings in a server process, right after its first page, until the UMAP
  map replaced PCA, on the prepared setting (class 3: its before map stored as "Prepare a demo" stores it, where
  the checkout can), ``--rounds`` times, each in a new server process and a new browser context
  (``embeddings_pca_shown_s``: until its PCA map showed);
  ``umap_unprepared_s``: the same for settings without stored maps (classes 5, 6 and 7, each with a run recorded
  by a library call, which stores no maps; opened by their address: the before map is fitted in the page's job);
  ``umap_revisit_s``: leaving and coming back;
- ``sweeps_page_s``: the Sweeps page with a ``--sweep-cells`` sweep until the phase map and the Pareto scatter
  are drawn; ``sweep_colour_ms``: a key press on the colour radio until the phase map is redrawn;
- ``results_new_run_s`` / ``embeddings_new_run_s``: a run queued on Unlearn in this session (its job stores its
  map panels), then Results and Embeddings (until the UMAP map) opened; ``embeddings_switch_run_s``: choosing
  another after run until the three panels are drawn again.

Two clocks. Every ``*_s`` figure above ends when this script noticed the page complete through Playwright: each
of its waits is a round trip from Python to the browser and back, so it adds that latency (0.2-0.3 s after a
first page on this 2-core machine, where the server's warm-up starts right after the page). The ``*_seen_s``
figures (``first_page_seen_s``, ``first_page_seen_from_open_s``, ``first_page_opened_later_seen_s``,
``first_page_warm_cache_seen_s``, ``page_switch_seen_s``, ``umap_cold_seen_s``, ``umap_revisit_seen_s``,
``sweeps_page_seen_s``, ``results_new_run_seen_s``, ``embeddings_new_run_seen_s``) time the same events in the
page, as the sliders' figures always did: from the click (or the server's start, on the system clock the browser
shares) until the animation frame after the DOM first held everything the wait asks for at one instant (script
run ended, title, charts, text; ``benchmarks._browser.complete_js``). That is when a person sees it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("UNLEARN_DATA_DIR", str(REPO / ".unlearn_data" / "bench"))

from benchmarks._browser import (UNPREPARED_CLASSES, arm_mark, browser, charts_drawn, complete_js,  # noqa: E402
                                 free_port, fresh_page, goto, key_to_redraw, no_exception, prepare_data,
                                 read_mark, server, settle, timed_goto, UMAP_SHOWN)

# page title -> (charts it draws, text that shows it is complete)
PAGES = {"Forget set": (1, None), "Unlearn": (0, "Methods"), "Results": (6, None), "Sweeps": (2, None),
         "Null space": (3, None), "NatMU hybrids": (0, "Masks at delta"), "Setup": (0, "Examples per class")}


ANY_CHART = "[data-testid=stVegaLiteChart], [data-testid=stPlotlyChart]"


def _both(out: dict, name: str, pairs: list[tuple[float, float]]) -> None:
    """``out[name + "_s"]`` and ``out[name + "_seen_s"]`` from :func:`timed_goto`'s ``(seen, detected)`` pairs."""
    out[f"{name}_s"] = _stats([detected for _, detected in pairs])
    out[f"{name}_seen_s"] = _stats([seen for seen, _ in pairs])


def _stats(values: list[float], scale: float = 1.0, digits: int = 2) -> dict:
    values = [v * scale for v in values]
    return {"median": round(statistics.median(values), digits), "max": round(max(values), digits),
            "all": [round(v, digits) for v in values]}


SETUP_COMPLETE = complete_js("Setup", text="Examples per class")


def _open_setup(page, url: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("h1:has-text('Setup')", timeout=120_000)
    settle(page)
    page.get_by_text("Examples per class").wait_for(timeout=120_000)
    no_exception(page, "Setup")


def _first_page(page, url: str, started: float) -> dict[str, float]:
    """Open ``url`` in ``page`` (armed with the "setup" mark) and time it: ``detected``/``detected_open`` from the
    server's start/from opening until Playwright noticed Setup complete, ``seen``/``seen_open`` the same until
    the animation frame after it was complete, on the browser's clock. ``started``: ``time.perf_counter()`` at the
    server's start."""
    opened = time.perf_counter()
    opened_wall = time.time()
    _open_setup(page, url)
    done = time.perf_counter()
    mark, _ = read_mark(page, "setup")
    start_wall = opened_wall - (opened - started)
    return {"detected": done - started, "detected_open": done - opened,
            "seen": mark - start_wall, "seen_open": mark - opened_wall}


def measure(dataset: str, rounds: int, out: dict, open_after: float = 2.0) -> dict:
    """Fills ``out`` as it goes, so a failure late in the run still reports what was measured."""
    env = {"UNLEARN_DEFAULT_DATASET": dataset, "UNLEARN_APP_AUTO_UMAP": "1"}
    # The browser is open before the server starts (a person has one open); only the server's start counts.
    with browser() as page:
        later, at_once = [], []
        for _ in range(rounds):  # each in a new server process, each opened by a browser that never saw it
            # A person who opens the printed address a moment after the server answers (``open_after`` s).
            with server(env) as (url, started, log_path), fresh_page(page) as cold:
                out.setdefault("server_answers_s", round(time.perf_counter() - started, 2))
                arm_mark(cold, "setup", SETUP_COMPLETE, on_navigation=True)
                time.sleep(open_after)
                later.append(_first_page(cold, url, started))
            with server(env) as (url, started, log_path), fresh_page(page) as cold:
                arm_mark(cold, "setup", SETUP_COMPLETE, on_navigation=True)
                at_once.append(_first_page(cold, url, started))  # at once, as the server answers
        out["first_page_opened_later_s"] = _stats([t["detected_open"] for t in later])
        out["first_page_opened_later_seen_s"] = _stats([t["seen_open"] for t in later])
        out["first_page_opened_after_s"] = open_after
        out["first_page_s"] = _stats([t["detected"] for t in at_once])
        out["first_page_from_open_s"] = _stats([t["detected_open"] for t in at_once])
        out["first_page_seen_s"] = _stats([t["seen"] for t in at_once])
        out["first_page_seen_from_open_s"] = _stats([t["seen_open"] for t in at_once])
        warm = []
        port = free_port()
        with fresh_page(page) as returning:
            arm_mark(returning, "setup", SETUP_COMPLETE, on_navigation=True)
            for round_ in range(rounds + 1):  # the first fills this context's cache
                with server(env, port=port) as (url, started, log_path):
                    timing = _first_page(returning, url, started)
                    if round_:
                        warm.append(timing)
                returning.goto("about:blank")
        out["first_page_warm_cache_s"] = _stats([t["detected"] for t in warm])
        out["first_page_warm_cache_from_open_s"] = _stats([t["detected_open"] for t in warm])
        out["first_page_warm_cache_seen_s"] = _stats([t["seen"] for t in warm])
        cold = [_umap_cold(page, env) for _ in range(rounds)]
        out["embeddings_pca_shown_s"] = _stats([c[0] for c in cold])
        out["umap_cold_s"] = _stats([c[1] for c in cold])
        out["umap_cold_seen_s"] = _stats([c[2] for c in cold])
        with server(env) as (url, started, log_path):
            _open_setup(page, url)
            _measure_pages(page, rounds, out, dataset)
    return out


def _umap_cold(page, env: dict) -> tuple[float, float, float]:
    """A new server, a browser that never opened it: Setup, then at once Embeddings on the prepared setting (class
    3). Returns the seconds from the click until PCA was shown and until the UMAP map replaced it (as Playwright
    noticed), and until the UMAP map was seen (the browser's clock)."""
    with server(env) as (url, started, log_path), fresh_page(page) as visitor:
        _open_setup(visitor, url)
        arm_mark(visitor, "umap", complete_js("Embeddings", 3, **UMAP_SHOWN))
        t = time.perf_counter()
        goto(visitor, "Embeddings", charts=3)
        pca = time.perf_counter() - t
        _umap_drawn(visitor)
        umap = time.perf_counter() - t
        mark, click = read_mark(visitor, "umap")
        no_exception(visitor, "Embeddings")
        return pca, umap, mark - click


def _umap_drawn(page, timeout_ms: int = 600_000) -> None:
    """Embeddings' UMAP map replaced PCA, its three panels are drawn and the script has finished."""
    page.locator(UMAP_SHOWN["within"], has_text=UMAP_SHOWN["text"]).first.wait_for(timeout=timeout_ms)
    charts_drawn(page, 3)
    settle(page)


def _measure_pages(page, rounds: int, out: dict, dataset: str) -> None:
    """Embeddings of settings without stored maps, every page switch, the sliders, Sweeps and a run queued here,
    in one server."""
    # This process's first Embeddings visit, not timed here (umap_cold_s times it in servers of its own): the
    # figures below are for a process that already drew a map.
    goto(page, "Embeddings", charts=3)
    _umap_drawn(page)
    no_exception(page, "Embeddings")

    # Settings no demo preparation mapped (UNPREPARED_CLASSES): each before map is fitted now, in the page's job.
    base = page.url.split("?")[0].rsplit("/", 1)[0]
    unprepared = []
    for cls in UNPREPARED_CLASSES:
        page.goto(f"{base}/embeddings?dataset={dataset}&forget=class:{cls}", wait_until="domcontentloaded")
        t = time.perf_counter()
        page.wait_for_selector("h1:has-text('Embeddings')", timeout=120_000)
        _umap_drawn(page)
        unprepared.append(time.perf_counter() - t)
        no_exception(page, f"Embeddings (class {cls})")
    out["umap_unprepared_s"] = _stats(unprepared)
    page.goto(f"{base}/?dataset={dataset}&forget=class:3", wait_until="domcontentloaded")
    page.wait_for_selector("h1:has-text('Setup')", timeout=120_000)
    settle(page)

    switches: dict[str, list[tuple[float, float]]] = {name: [] for name in PAGES}
    revisits = []
    for _ in range(rounds):
        for name, (charts, text) in PAGES.items():
            switches[name].append(timed_goto(page, name, charts=charts, text=text))
            no_exception(page, name)
        revisits.append(timed_goto(page, "Embeddings", charts=3, **UMAP_SHOWN))
    out["page_switch_s"] = {name: _stats([d for _, d in v]) for name, v in switches.items()}
    out["page_switch_seen_s"] = {name: _stats([s for s, _ in v]) for name, v in switches.items()}
    _both(out, "umap_revisit", revisits)

    goto(page, "Null space", charts=3)
    # Every chart: the eps view's (Vega-Lite) and the plotly ones, which a key press leaves alone unless the
    # fragment draws them (as this page's earlier versions did).
    eps = [key_to_redraw(page, "[data-testid=stSlider] input[type=range]", ANY_CHART,
                         key="ArrowLeft" if i % 2 else "ArrowRight") for i in range(2 * rounds + 1)]
    out["eps_slider_ms"] = _stats(eps, digits=0)
    goto(page, "NatMU hybrids", text="Masks at delta")
    delta_slider = page.locator("[data-testid=stSlider]", has_text="delta (mask shift)")
    delta_slider.locator("input[type=range]").first.evaluate("el => el.setAttribute('data-bench', 'delta')")
    delta = [key_to_redraw(page, "[data-bench=delta]", "[data-testid=stImage]",
                           key="ArrowLeft" if i % 2 else "ArrowRight") for i in range(2 * rounds + 1)]
    out["delta_slider_ms"] = _stats(delta, digits=0)

    visits = []
    for _ in range(rounds):
        goto(page, "Setup", text="Examples per class")
        visits.append(timed_goto(page, "Sweeps", charts=2))
    _both(out, "sweeps_page", visits)
    body = page.inner_text("body")
    out["sweeps_page_cells_shown"] = "Cells\n100" in body or "Cells\n\n100" in body
    radio = page.locator("[data-testid=stRadio]", has_text="Colour")
    radio.locator("input").first.evaluate("el => el.setAttribute('data-bench', 'colour')")
    colour = [key_to_redraw(page, "[data-bench=colour]", "[data-testid=stPlotlyChart]",
                            key="ArrowRight" if i % 2 == 0 else "ArrowLeft") for i in range(2 * rounds)]
    out["sweep_colour_ms"] = _stats(colour, digits=0)
    no_exception(page, "Sweeps")

    # A run queued here computes its map panels in its own job; then its Results and Embeddings views open.
    goto(page, "Unlearn", text="Methods")
    page.get_by_role("button", name=re.compile(r"Run \d+ method")).first.click()
    page.get_by_text(re.compile(r"done in [0-9.]+ s")).first.wait_for(timeout=600_000)
    settle(page)
    seen, detected = timed_goto(page, "Results", charts=PAGES["Results"][0])
    out["results_new_run_s"], out["results_new_run_seen_s"] = round(detected, 2), round(seen, 2)
    seen, detected = timed_goto(page, "Embeddings", charts=3, **UMAP_SHOWN)
    out["embeddings_new_run_s"], out["embeddings_new_run_seen_s"] = round(detected, 2), round(seen, 2)
    box = page.locator("[data-testid=stSelectbox]", has_text="Run (the 'after' model)").first
    switches = []
    for _ in range(rounds):
        for key in ("ArrowDown", "ArrowUp"):  # another run, then back: only the after panel changes
            box.locator("input").first.click()
            page.keyboard.press(key)
            t = time.perf_counter()
            page.keyboard.press("Enter")
            settle(page, timeout_ms=120_000)
            charts_drawn(page, 3)
            switches.append(time.perf_counter() - t)
    out["embeddings_switch_run_s"] = _stats(switches)
    no_exception(page, "Embeddings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--sweep-cells", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--open-after", type=float, default=2.0,
                        help="seconds between the server answering and opening its address (first_page_opened_later_s)")
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds of rest between preparing the data and measuring")
    args = parser.parse_args()
    out = {"machine": f"{os.cpu_count()}-core CPU", "load_average_before": [round(v, 2) for v in os.getloadavg()]}
    try:
        out["data"] = prepare_data(args.dataset, args.sweep_cells, log=lambda m: print(m, file=sys.stderr))
        time.sleep(args.settle)  # the data preparation's load dies down first
        out["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
        measure(args.dataset, args.rounds, out, args.open_after)
    finally:
        out["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
