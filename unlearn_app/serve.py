"""``python -m unlearn_app.serve [streamlit options]``: ``streamlit run app.py`` with the heavy modules loaded
while the server starts.

Streamlit runs no app code until the first browser session connects, and that first script run then paid
for importing torch and the modules the Setup page needs: 1.7 s of its 3.7 s on this project's 2-core
machine (0.5 s once they are loaded). Here a background thread imports them once the server is serving
(starting earlier delayed the server's own start-up by about 1 s: both need the interpreter); the first
script run finds them in ``sys.modules``, or waits on Python's import lock for the one in progress. UMAP is
warmed after the first page is drawn (``app.py``), from numba's on-disk cache
(:func:`unlearn_core.embeddings.import_umap`). ``make run`` starts the dashboard this way; ``streamlit run
app.py`` still works, without the head start.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"
# What the first page (Setup) and the pages after it import: torch and the core's registries first.
# The Setup page's modules first; then what the other pages import on a first visit (pandas, plotly, sklearn,
# scipy: about 1.5 s), so the first Results or Embeddings visit does not pay for them either.
PRELOAD = ("torch", "unlearn_core.data", "unlearn_core.models", "unlearn_core.forget", "unlearn_app.jobs",
           "unlearn_core.figures", "unlearn_core.tables", "unlearn_core.metrics", "unlearn_core.embeddings")

log = logging.getLogger(__name__)


def preload(modules=PRELOAD) -> dict[str, float]:
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


def _after_server_start(timeout: float = 60.0) -> None:
    """Wait until Streamlit's runtime is serving, then :func:`preload` (an earlier start slowed the server's
    own start-up: both threads need the interpreter, and the server answered 1 s later)."""
    from streamlit.runtime import Runtime, RuntimeState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Runtime.exists() and Runtime.instance().state in (RuntimeState.NO_SESSIONS_CONNECTED,
                                                             RuntimeState.ONE_OR_MORE_SESSIONS_CONNECTED):
            break
        time.sleep(0.02)
    preload()


def main(argv: list[str] | None = None) -> int:
    """Start the preload thread, then hand the process to ``streamlit run app.py <argv>``."""
    thread = threading.Thread(target=_after_server_start, name="unlearn-preload", daemon=True)
    thread.start()
    from streamlit.web import cli

    return cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
