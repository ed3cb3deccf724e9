"""Background warm-ups of a dashboard process: the modules the pages import, loaded before a page needs them
but never while the first page is being drawn, and the UMAP helper process.

Importing is Python work that holds the interpreter: a thread importing torch, plotly and pandas slows the page
script running beside it. So there are three steps:

1. :data:`FIRST_PAGE_MODULES` (what the Setup page imports, none of which imports torch: the page counts and
   shows the data set's arrays and reads the original's figures from its checkpoint's metadata):
   :func:`warm_first_page`, in a thread :mod:`unlearn_app.serve` starts, imports them (and loads the default data
   set) once the server listens, while the first browser still loads Streamlit's scripts, so the first script run
   finds them loaded.
2. umap-learn, whose import (numba's initialisation) held this process's interpreter for about 2 s and stalled
   the page scripts that ran meanwhile: :func:`after_page` starts one thread per process that first waits until
   the script run that called it has ended, then starts :func:`unlearn_core.umapfit.start_helper`, a separate
   process that imports and warms umap-learn and runs every UMAP fit of this process (this process never
   imports it). Started with the server instead, its start-up competed with drawing the first page.
3. :data:`LATER_MODULES` (torch, training, and plotly and pandas through the other pages' core modules): the same
   thread imports them next, while the helper warms on the other core.

After steps 1 and 3 the thread moves every object then alive into the interpreter's permanent generation
(:func:`freeze_loaded`): imported modules live as long as the process, and a full collection that walks them held
the interpreter for 120 ms once torch was loaded (60 ms right before the first script run), stalling the server's
event loop and every page script at moments nobody chose.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import logging
import threading
import time

FIRST_PAGE_MODULES = ("unlearn_core.data", "unlearn_core.models", "unlearn_core.forget", "unlearn_core.recipes",
                      "unlearn_core.demo", "unlearn_app.jobs", "unlearn_app.state", "unlearn_app.display",
                      "unlearn_app.dispatch", "unlearn_app.urlstate", "PIL.Image")
LATER_MODULES = ("torch", "unlearn_core.training", "unlearn_core.pipeline", "unlearn_core.figures",
                 "unlearn_core.tables", "unlearn_core.metrics", "unlearn_core.embeddings")
# After the page's script run ends, the browser still fetches the page's images from this process.
SETTLE_SECONDS = 0.3

log = logging.getLogger(__name__)
_lock = threading.Lock()
_started: threading.Thread | None = None
_umap_requested = threading.Event()
_theme_lock = threading.Lock()
_theme_deferred = False


def preload(modules) -> dict[str, float]:
    """Import ``modules``; returns the seconds each took. One that fails is skipped (the page that needs it
    reports the error itself)."""
    seconds: dict[str, float] = {}
    for name in modules:
        started = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a head start only; the page shows the real error
            log.exception("preloading %s failed", name)
        seconds[name] = time.perf_counter() - started
    return seconds


def freeze_loaded(collect: bool = False) -> int:
    """Move every object the garbage collector tracks into its permanent generation (:func:`gc.freeze`), so later
    collections skip them; with ``collect``, first run a full collection so no garbage already there is kept
    forever. Returns the number of objects frozen in all.

    Python's collector walks every tracked object on each full (generation 2) collection, which it starts by
    itself after enough allocations. With the dashboard's modules loaded that is 270,000 objects and 120 ms
    holding the interpreter (60 ms before torch), during which the server's event loop sends nothing and no
    page script runs. The modules' objects live as long as the process, so walking them finds nothing; frozen,
    a full collection walks only what was made since. Without it a 50-70 ms collection fell right before the first
    script run in every traced start; with it the first page was on screen 0.04-0.12 s sooner (medians of three
    interleaved runs of 12 rounds, docs/APP.md).
    """
    if collect:
        gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def defer_plotly_theme() -> None:
    """Record that Streamlit was imported without configuring its Plotly theme
    (:func:`unlearn_app.serve.import_streamlit`), so that :func:`plotly_theme` configures it."""
    global _theme_deferred
    with _theme_lock:
        _theme_deferred = True


def plotly_theme() -> float:
    """Configure Streamlit's Plotly theme if the launcher deferred it and nobody has configured it since; returns
    the seconds that took (0 otherwise). Any thread may call it; a caller that arrives while another configures
    waits for it.

    Streamlit's theme is a Plotly template named "streamlit", made the default of every figure built afterwards
    (``streamlit.elements.lib.streamlit_plotly_theme.configure_streamlit_plotly_theme``), so all charts look
    alike; why the launcher defers it is in :func:`unlearn_app.serve.import_streamlit`. ``app.py`` calls this
    before running any page but Setup (which draws no Plotly figure), and the warm-up thread after the first page
    (:func:`after_page`), so no figure is built before the theme is the default.
    """
    global _theme_deferred
    with _theme_lock:
        if not _theme_deferred:
            return 0.0
        started = time.perf_counter()
        from streamlit.elements.lib.streamlit_plotly_theme import configure_streamlit_plotly_theme

        configure_streamlit_plotly_theme()
        _theme_deferred = False
        return time.perf_counter() - started


def warm_first_page(listening, poll_s: float = 0.01, timeout_s: float = 120.0) -> dict[str, float]:
    """Wait until ``listening()`` is true (the server answers), then import :data:`FIRST_PAGE_MODULES` and load
    the default data set's arrays (:func:`unlearn_core.data.load_arrays`, cached in-process), and fill
    :mod:`inspect`'s module-file map, and freeze what is loaded (:func:`freeze_loaded`); returns the seconds each
    step took (empty when ``listening`` never became true within ``timeout_s`` or raised: then the first script run
    imports and loads as it would without this).

    Run in a thread by :mod:`unlearn_app.serve`: between the server's first answer and the first script run, a
    browser that never opened the dashboard spends about 0.7 s fetching and compiling Streamlit's scripts, while
    the server mostly waits. Done before listening, the same work delayed the first answer by as long as it took. A
    data set that fails to load is skipped: the page reports its error.
    """
    deadline = time.monotonic() + timeout_s
    try:
        while not listening():
            if time.monotonic() > deadline:
                return {}
            time.sleep(poll_s)
    except Exception:  # noqa: BLE001 - a head start only (a Streamlit that no longer has this state, say)
        log.exception("could not tell whether the server listens; the first page loads its modules itself")
        return {}
    seconds = preload(FIRST_PAGE_MODULES)
    started = time.perf_counter()
    # Streamlit's first element in a process asks inspect.stack() whether it runs in a REPL (env_util.is_repl), and
    # inspect's first call maps every loaded module to its file (35 ms here); afterwards only new modules are mapped.
    inspect.stack()
    seconds["inspect"] = time.perf_counter() - started
    started = time.perf_counter()
    try:
        from unlearn_core.data import load_arrays
        from unlearn_core.settings import settings

        load_arrays(settings().default_dataset)
    except Exception:  # noqa: BLE001 - a head start only; the Setup page shows the real error
        log.info("the default data set was not preloaded", exc_info=True)
    seconds["default data set"] = time.perf_counter() - started
    # No collection first: it would cost the 60 ms this saves, and an import leaves little cyclic garbage.
    freeze_loaded()
    return seconds


def _start_umap_helper() -> None:
    try:
        from unlearn_core.umapfit import start_helper

        start_helper()  # once per process
        log.info("UMAP helper process started")
    except Exception:  # noqa: BLE001 - an optimisation; without the helper the fits run in this process
        log.exception("starting the UMAP helper process failed")


def _warm(after: threading.Thread | None) -> None:
    if after is not None and after is not threading.current_thread():
        after.join(timeout=60)  # the script run that asked: its page is drawn before anything here competes
    time.sleep(SETTLE_SECONDS)
    early = _umap_requested.is_set()
    if early:
        _start_umap_helper()  # first: it warms on the other core while this process imports torch
    seconds = preload(LATER_MODULES)
    seconds["plotly theme"] = plotly_theme()
    log.info("later pages' modules loaded in %.1f s", sum(seconds.values()))
    freeze_loaded(collect=True)  # off every page's path: the full collection first keeps no garbage forever
    if not early:
        _umap_requested.wait()
        _start_umap_helper()


def after_page(umap: bool) -> threading.Thread:
    """Called at the end of a script run (in the script's thread): start this process's warm-up thread once; it
    waits for this script run to end, starts the UMAP helper process if ``umap`` (``UNLEARN_APP_AUTO_UMAP``),
    loads :data:`LATER_MODULES`, then starts the helper once ``umap`` was True on any later call. Returns the
    warm-up thread."""
    global _started
    if umap:
        _umap_requested.set()
    with _lock:
        if _started is None:
            _started = threading.Thread(target=_warm, args=(threading.current_thread(),), name="unlearn-warmup",
                                        daemon=True)
            _started.start()
        return _started
