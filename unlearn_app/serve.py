"""``python -m unlearn_app.serve [streamlit options]``: ``streamlit run app.py`` with the first page's modules
loaded before the server listens.

Streamlit runs no app code until the first browser session connects, and that first script run then paid
for importing torch and the modules the Setup page needs: 1.1-1.3 s on this project's 2-core machine, on top
of Streamlit's own 0.8 s from opening the address to a drawn page. Here they are imported
(:data:`unlearn_app.warmup.FIRST_PAGE_MODULES`) before Streamlit starts, so the address is printed (and
answers) only once the first page can be served without them: about 1.5 s from opening it, whenever it is
opened. Importing them in a thread while the server started delayed the server by about 1 s (both need the
interpreter), and importing them once it answered left a browser that opened the address at once waiting for
them. The UMAP helper process starts first, in parallel (:func:`_start_umap_helper`). What the other pages
import loads after the first page is drawn (:func:`unlearn_app.warmup.after_page`, called by ``app.py``, which
also starts the UMAP helper where this launcher did not). ``make run`` starts the dashboard this way;
``streamlit run app.py`` still works, without the head start.
"""

from __future__ import annotations

import sys
from pathlib import Path

from unlearn_app.warmup import FIRST_PAGE_MODULES, preload

APP = Path(__file__).resolve().parents[1] / "app.py"


def _start_umap_helper() -> None:
    """Start the UMAP helper process (:func:`unlearn_core.umapfit.start_helper`) unless UMAP is switched off
    (``UNLEARN_APP_AUTO_UMAP=0``) or umap-learn is not installed: it imports umap-learn on the other core while
    this process imports torch, so it is warm before a page asks for a map (started after the first page
    instead, its warm-up overlapped a first Embeddings visit: 4.5 s against 3.3 s until the UMAP map)."""
    from unlearn_core.umapfit import default_reducers, start_helper

    if "umap" in default_reducers():
        start_helper()


def main(argv: list[str] | None = None) -> int:
    """Start the UMAP helper process, import :data:`FIRST_PAGE_MODULES`, then hand the process to ``streamlit run
    app.py <argv>``."""
    _start_umap_helper()
    preload(FIRST_PAGE_MODULES)
    from streamlit.web import cli

    return cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
