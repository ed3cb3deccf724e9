"""``python -m unlearn_app.serve [streamlit options]``: ``streamlit run app.py`` with the first page's modules
loaded while the browser loads the page.

Streamlit runs no app code until the first browser session connects, and that first script run then paid
for importing torch and the modules the Setup page needs: 1.3 s on this project's 2-core machine. Here a
background thread imports them (:data:`unlearn_app.warmup.FIRST_PAGE_MODULES`) once the server is serving
(starting earlier delayed the server's own start-up by about 1 s: both need the interpreter); the first
script run finds them in ``sys.modules``, or waits on Python's import lock for the one in progress. What the
other pages import, and umap, load after the first page is drawn (:func:`unlearn_app.warmup.after_page`,
called by ``app.py``). ``make run`` starts the dashboard this way; ``streamlit run app.py`` still works,
without the head start.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from unlearn_app.warmup import FIRST_PAGE_MODULES, preload

APP = Path(__file__).resolve().parents[1] / "app.py"


def _after_server_start(timeout: float = 60.0) -> None:
    """Wait until Streamlit's runtime is serving, then import :data:`FIRST_PAGE_MODULES` (an earlier start slowed
    the server's own start-up: both threads need the interpreter, and the server answered 1 s later)."""
    from streamlit.runtime import Runtime, RuntimeState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Runtime.exists() and Runtime.instance().state in (RuntimeState.NO_SESSIONS_CONNECTED,
                                                             RuntimeState.ONE_OR_MORE_SESSIONS_CONNECTED):
            break
        time.sleep(0.02)
    preload(FIRST_PAGE_MODULES)


def main(argv: list[str] | None = None) -> int:
    """Start the preload thread, then hand the process to ``streamlit run app.py <argv>``."""
    thread = threading.Thread(target=_after_server_start, name="unlearn-preload", daemon=True)
    thread.start()
    from streamlit.web import cli

    return cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
