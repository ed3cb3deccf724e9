"""Background warm-ups of a dashboard process: the modules the pages import, and umap, loaded before a page needs
them but never while the first page is being drawn.

Importing is Python work that holds the interpreter: a thread importing plotly and pandas, or numba and umap
(whose initialisation holds the interpreter for long stretches), slows the page script running beside it. On
this project's 2-core machine the UMAP warm-up, started at the end of the first script run, held that run's
end back by about 1.5 s. So there are two steps:

1. :data:`FIRST_PAGE_MODULES` (torch and what the Setup page imports): :mod:`unlearn_app.serve` imports them once
   the server answers, while the browser is still loading the page; the first script run then finds them
   loaded, or waits on Python's import lock for the one in progress.
2. :data:`LATER_MODULES` (plotly and pandas through the other pages' core modules) and then umap: :func:`after_page` starts one thread per process that first waits until the script run that
   called it has ended, so the page that run drew is complete before the imports compete with anything.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time

FIRST_PAGE_MODULES = ("torch", "unlearn_core.data", "unlearn_core.models", "unlearn_core.forget",
                      "unlearn_core.training", "unlearn_core.demo", "unlearn_app.jobs", "unlearn_app.state",
                      "unlearn_app.display")
LATER_MODULES = ("unlearn_core.figures", "unlearn_core.tables", "unlearn_core.metrics", "unlearn_core.embeddings")
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


def _lower_priority() -> None:
    try:  # Linux: a thread is its own task, so this lowers only this thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def _warm(after: threading.Thread | None) -> None:
    if after is not None and after is not threading.current_thread():
        after.join(timeout=60)  # the script run that asked: its page is drawn before anything here competes
    time.sleep(SETTLE_SECONDS)
    _lower_priority()
    seconds = preload(LATER_MODULES)
    log.info("later pages' modules loaded in %.1f s", sum(seconds.values()))
    _umap_requested.wait()
    try:
        from unlearn_core.embeddings import warm_umap

        log.info("UMAP warmed up in %.1f s", warm_umap())
    except Exception:  # noqa: BLE001 - warming is an optimisation; the real fit reports its own errors
        log.exception("UMAP warm-up failed")


def after_page(umap: bool) -> threading.Thread:
    """Called at the end of a script run (in the script's thread): start this process's warm-up thread once; it
    waits for this script run to end, loads :data:`LATER_MODULES`, then warms umap once ``umap`` was True on
    any call (``UNLEARN_APP_AUTO_UMAP``). Returns the warm-up thread."""
    global _started
    if umap:
        _umap_requested.set()
    with _lock:
        if _started is None:
            _started = threading.Thread(target=_warm, args=(threading.current_thread(),), name="unlearn-warmup",
                                        daemon=True)
            _started.start()
        return _started
