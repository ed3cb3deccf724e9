"""``python -m unlearn_app.serve [streamlit options]``: ``streamlit run app.py`` with the first page's modules
loaded before the server listens.

Streamlit runs no app code until the first browser session connects, and that first script run then paid
for importing torch and the modules the Setup page needs: 1.1-1.3 s on this project's 2-core machine, on top
of Streamlit's own 0.8 s from opening the address to a drawn page. Here they are imported
(:data:`unlearn_app.warmup.FIRST_PAGE_MODULES`) before Streamlit starts, so the address is printed (and
answers) only once the first page can be served without them: about 1.5 s from opening it, whenever it is
opened. Importing them in a thread while the server started delayed the server by about 1 s (both need the
interpreter), and importing them once it answered left a browser that opened the address at once waiting for
them. What the other pages import loads after the first page is drawn, and umap-learn in its own process
(:func:`unlearn_app.warmup.after_page`, called by ``app.py``). ``make run`` starts the dashboard this way;
``streamlit run app.py`` still works, without the head start.
"""

from __future__ import annotations

import sys
from pathlib import Path

from unlearn_app.warmup import FIRST_PAGE_MODULES, preload

APP = Path(__file__).resolve().parents[1] / "app.py"


def main(argv: list[str] | None = None) -> int:
    """Import :data:`FIRST_PAGE_MODULES`, then hand the process to ``streamlit run app.py <argv>``."""
    preload(FIRST_PAGE_MODULES)
    from streamlit.web import cli

    return cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
