"""Background warm-ups of a dashboard process: the modules the pages import, loaded before a page needs them
but never while the first page is being drawn, and the UMAP helper process.

Importing is Python work that holds the interpreter: a thread importing torch, plotly and pandas slows the page
script running beside it. So there are three steps:

1. :data:`FIRST_PAGE_MODULES` (what the Setup page imports, none of which imports torch: the page counts and
   shows the data set's arrays and reads the original's figures from its checkpoint's metadata):
   :mod:`unlearn_app.serve` imports them before the server starts listening, so the first script run finds them
   loaded.
2. umap-learn, whose import (numba's initialisation) held this process's interpreter for about 2 s and stalled
   the page scripts that ran meanwhile: :func:`after_page` starts one thread per process that first waits until
   the script run that called it has ended, then starts :func:`unlearn_core.umapfit.start_helper`, a separate
   process that imports and warms umap-learn and runs every UMAP fit of this process (this process never
   imports it). Started with the server instead, its start-up competed with drawing the first page.
3. :data:`LATER_MODULES` (torch, training, and plotly and pandas through the other pages' core modules): the same
   thread imports them next, while the helper warms on the other core.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time

FIRST_PAGE_MODULES = ("unlearn_core.data", "unlearn_core.models", "unlearn_core.forget", "unlearn_core.recipes",
                      "unlearn_core.demo", "unlearn_app.jobs", "unlearn_app.state", "unlearn_app.display",
                      "unlearn_app.dispatch", "unlearn_app.urlstate")
LATER_MODULES = ("torch", "unlearn_core.training", "unlearn_core.pipeline", "unlearn_core.figures",
                 "unlearn_core.tables", "unlearn_core.metrics", "unlearn_core.embeddings")
# After the page's script run ends, the browser still fetches the page's images from this process.
SETTLE_SECONDS = 0.3

log = logging.getLogger(__name__)
_lock = threading.Lock()
_started: threading.Thread | None = None
_umap_requested = threading.Event()


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
    log.info("later pages' modules loaded in %.1f s", sum(seconds.values()))
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
