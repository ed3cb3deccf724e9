"""Shared by the browser benchmark and the screenshot script: a prepared data directory, `streamlit run` on a
local port, headless Debian Chromium through Playwright, and waits that match what a person waits for."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SWEEP_TAG = "bench-100-cells"
UNPREPARED_CLASSES = (5, 6, 7)  # forget sets with a recorded run but no stored maps


def prepare_data(dataset: str, sweep_cells: int, log=print) -> dict:
    """Models in the checkpoint cache, one UNSC run and one NatMU run in the store (class 3, whose setting maps are
    stored as a prepared demo stores them), a fine-tune run on each of ``UNPREPARED_CLASSES`` (no maps), and a sweep
    of ``sweep_cells`` cells (digits, mlp, GA over lr x epochs, seed 0): what the pages need to show something.

    All are real runs; a second call finds them (checkpoint cache, run store, sweep keys) and redoes nothing.
    """
    from unlearn_core.pipeline import prepare
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore
    from unlearn_core.sweeps import SweepSpec, run_sweep

    out = {}
    store = RunStore()
    started = time.perf_counter()
    setup = prepare(dataset, None, "class:3", 0, "cpu")
    out["prepare_s"] = round(time.perf_counter() - started, 1)
    have = {r["method"] for r in store.list(dataset=dataset, forget="class:3") if r["status"] == "done"}
    for method in ("unsc", "natmu"):
        if method not in have:
            started = time.perf_counter()
            # UNSC's run records every kind of evidence, so Results shows (and the screenshot holds) those views.
            run_and_record(setup, method, None, store=store,
                           evidence="probe,relearn,curves" if method == "unsc" else None)
            out[f"{method}_run_s"] = round(time.perf_counter() - started, 1)
    # The prepared setting's maps, as "Prepare a demo" stores them (a checkout without that stores none).
    import inspect

    from unlearn_core.demo import prepare_demo

    if "maps" in inspect.signature(prepare_demo).parameters:
        from unlearn_core.embeddings import EmbeddingCache, run_maps

        started = time.perf_counter()
        run_maps(setup, None, None, EmbeddingCache(), ("pca", "umap"))
        out["setting_maps_s"] = round(time.perf_counter() - started, 1)
    # Settings nobody prepared maps for: one run on each (recorded by a library call, which stores no maps; its
    # first map is fitted when it is first viewed).
    for cls in UNPREPARED_CLASSES:
        other = prepare(dataset, None, f"class:{cls}", 0, "cpu")
        if not store.list(dataset=dataset, forget=f"class:{cls}", status="done"):
            run_and_record(other, "finetune", {"epochs": 1}, store=store)
    held = store.get_sweep(SWEEP_TAG)
    # A fixture: once stored it is reused. Run keys carry the commit, so run_sweep would redo all of it after
    # every commit, and what the pages draw from it does not depend on the code version.
    if sweep_cells and held is not None and held["runs"] >= sweep_cells:
        out["sweep"] = {"reused": SWEEP_TAG, "runs": held["runs"]}
    elif sweep_cells:
        side = int(round(sweep_cells ** 0.5))
        # 1e-3 to 0.07: on digits GA barely forgets below 4e-3 and collapses the rest above ~0.03, so the
        # map shows both regions.
        lrs = [float(f"{1e-3 * (1.6 ** i):.3g}") for i in range(side)]
        epochs = list(range(1, sweep_cells // side + 1))
        spec = SweepSpec(dataset="digits", model="mlp", forgets=["class:3"], methods=["ga"],
                         grid={"ga": {"lr": lrs, "epochs": epochs}}, seeds=[0], tag=SWEEP_TAG)
        started = time.perf_counter()
        result = run_sweep(spec, engine="inline", device="cpu", store=store, save_checkpoints=False,
                           log=lambda message: None)
        out["sweep"] = {"cells": len(result["cells"]), "ran": result["ran"], "skipped": result["skipped"],
                        "seconds": round(time.perf_counter() - started, 1)}
    log(f"data ready: {out}")
    return out


def free_port() -> int:
    """The first port of 9000-9099 (this project's range for browser work on a shared machine) free now."""
    import socket

    for port in range(9000, 9100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 9000-9099")


def launch_command() -> list[str]:
    """How ``make run`` starts the app (``python -m unlearn_app.serve``), or ``streamlit run app.py`` in a checkout
    without that launcher (for before/after comparisons with the same benchmark)."""
    if (REPO / "unlearn_app" / "serve.py").exists():
        return [sys.executable, "-m", "unlearn_app.serve"]
    return [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py")]


@contextmanager
def server(env_extra: dict | None = None, script: Path | None = None, log_dir: Path | None = None,
           port: int | None = None):
    """The dashboard as ``make run`` starts it (or ``streamlit run script``) on ``port`` (default: a free local
    one), its output in ``log_dir`` (default: ``UNLEARN_DATA_DIR``); yields ``(url, started_at, log_path)``."""
    port = port or free_port()
    log_path = Path(log_dir or os.environ["UNLEARN_DATA_DIR"]) / f"browser_server_{port}.log"
    log = open(log_path, "w")
    started = time.perf_counter()
    command = launch_command() if script is None else [sys.executable, "-m", "streamlit", "run", str(script)]
    process = subprocess.Popen(
        [*command, "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO, env={**os.environ, **(env_extra or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.05)
        yield url, started, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def browser(width: int = 1500, height: int = 1100):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium.new_page(viewport={"width": width, "height": height})
        finally:
            chromium.close()


@contextmanager
def fresh_page(page):
    """A page in a new context of ``page``'s browser, same viewport: an empty cache and no cookies, as a browser
    that never opened the dashboard."""
    other = page.context.browser.new_page(viewport=page.viewport_size)
    try:
        yield other
    finally:
        other.context.close()


def settle(page, timeout_ms: int = 120_000) -> None:
    """The script run finished (the attribute Streamlit's own e2e suite waits on)."""
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)


def charts_drawn(page, minimum: int, timeout_ms: int = 120_000) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=stPlotlyChart] .main-svg').length >= {minimum}",
        timeout=timeout_ms)


def no_exception(page, where: str) -> None:
    boxes = page.locator("[data-testid=stException]")
    if boxes.count():
        raise RuntimeError(f"{where} shows an exception: {boxes.first.inner_text()[:1500]}")


def complete_js(title: str, charts: int = 0, text: str | None = None, within: str = "body") -> str:
    """A JavaScript expression, true while the page titled ``title`` is complete: its script run ended, at least
    ``charts`` plotly charts drawn and ``text`` shown in an element matching ``within`` (what :func:`goto` waits
    for, tested at one instant)."""
    parts = ["document.querySelector('[data-testid=stApp][data-test-script-state=notRunning]')",
             f"[...document.querySelectorAll('h1')].some(h => h.textContent.includes({title!r}))"]
    if charts:
        parts.append(f"document.querySelectorAll('[data-testid=stPlotlyChart] .main-svg').length >= {charts}")
    if text:
        parts.append(f"[...document.querySelectorAll({within!r})].some(e => e.textContent.includes({text!r}))")
    return " && ".join(f"!!({part})" for part in parts)


# Records, in the page and on the browser's clock (milliseconds since the epoch), the animation frame after the
# DOM first satisfied ``condition`` (checked on every DOM change), and the first click after arming.
MARK_JS = """
([name, condition]) => {
  const marks = window.__marks = window.__marks || {};
  delete marks[name]; delete marks[name + ':click'];
  const now = () => performance.timeOrigin + performance.now();
  document.addEventListener('click', (e) => { marks[name + ':click'] = performance.timeOrigin + e.timeStamp; },
                            {capture: true, once: true});
  const test = new Function('return (' + condition + ');');
  const observer = new MutationObserver(() => {
    if (!test()) return;
    observer.disconnect();
    requestAnimationFrame(() => { marks[name] = now(); });
  });
  observer.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
}
"""


def arm_mark(page, name: str, condition: str, on_navigation: bool = False) -> None:
    """Start recording mark ``name`` (:data:`MARK_JS`); ``on_navigation``: in every document this page loads from
    now on, from its first byte (for a page opened by its address)."""
    if on_navigation:
        page.add_init_script(f"({MARK_JS})({[name, condition]!r});")
    else:
        page.evaluate(MARK_JS, [name, condition])


def read_mark(page, name: str, timeout_ms: int = 120_000) -> tuple[float, float | None]:
    """``(mark, click)``: mark ``name`` and the click before it, in epoch seconds on the browser's clock (the
    system clock, as ``time.time()``); waits until the mark is recorded."""
    page.wait_for_function(f"window.__marks && {name!r} in window.__marks", timeout=timeout_ms)
    marks = page.evaluate("window.__marks")
    click = marks.get(f"{name}:click")
    return marks[name] / 1000, None if click is None else click / 1000


# Embeddings shows its UMAP map when a caption says so (a UMAP job's name in the jobs list has the same words).
UMAP_SHOWN = {"text": "UMAP map of", "within": "[data-testid=stCaptionContainer]"}


def timed_goto(page, title: str, charts: int = 0, text: str | None = None, within: str = "body",
               timeout_ms: int = 120_000) -> tuple[float, float]:
    """:func:`goto`, timed twice: ``(seen, detected)``, seconds from the click until the animation frame after the
    page was complete, on the browser's clock, and until this script noticed it through Playwright (which adds
    the round trips of its waits). ``within``: where ``text`` must show (:func:`complete_js`)."""
    arm_mark(page, "goto", complete_js(title, charts, text, within))
    started = time.perf_counter()
    goto(page, title, charts, text, timeout_ms)
    if within != "body":
        page.locator(within, has_text=text).first.wait_for(timeout=timeout_ms)
    detected = time.perf_counter() - started
    mark, click = read_mark(page, "goto", timeout_ms)
    return mark - click, detected


def goto(page, title: str, charts: int = 0, text: str | None = None, timeout_ms: int = 120_000) -> None:
    """Click a page in the sidebar and wait until its title, script end, charts and ``text`` are there."""
    page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=timeout_ms)
    settle(page, timeout_ms)
    if charts:
        charts_drawn(page, charts, timeout_ms)
    if text:
        page.get_by_text(text, exact=False).first.wait_for(timeout=timeout_ms)


# Records, in the page, when the key went down and every DOM change inside the elements that matter.
WATCH_JS = """
(selector) => {
  window.__bench = {keydown: null, changes: []};
  document.addEventListener('keydown', (e) => { if (window.__bench.keydown === null)
      window.__bench.keydown = e.timeStamp; }, {capture: true, once: true});
  const observer = new MutationObserver((records) => {
    for (const r of records) {
      const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (el && el.closest(selector)) { window.__bench.changes.push(performance.now()); break; }
    }
  });
  observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
  window.__benchObserver = observer;
}
"""


def key_to_redraw(page, focus_selector: str, watch_selector: str, key: str = "ArrowRight",
                  quiet_ms: int = 500, timeout_s: float = 60) -> float:
    """Milliseconds from a key press on ``focus_selector`` until the last change inside ``watch_selector``.

    "Last": after the script run ends, the watched elements must stay unchanged for ``quiet_ms``; the figure
    counts what a person sees, the new chart complete, not its first repaint.
    """
    page.locator(focus_selector).first.focus()
    page.evaluate(WATCH_JS, watch_selector)
    page.keyboard.press(key)
    deadline = time.monotonic() + timeout_s
    # The rerun starts a moment after the key: wait until a change shows, then until the page is quiet again.
    while not page.evaluate("window.__bench.changes.length") and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    settle(page)
    last = -1
    while time.monotonic() < deadline:
        count = page.evaluate("window.__bench.changes.length")
        if count == last:
            break
        last = count
        page.wait_for_timeout(quiet_ms)
    data = page.evaluate("(() => { window.__benchObserver.disconnect(); return window.__bench; })()")
    if data["keydown"] is None or not data["changes"]:
        raise RuntimeError(f"no redraw of {watch_selector} after {key}")
    return max(data["changes"]) - data["keydown"]
