"""``python -m unlearn_app.serve [streamlit options]``: ``streamlit run app.py`` with the first page's modules and
data loaded while the first browser loads Streamlit's scripts.

Streamlit runs no app code until the first browser session connects, and that first script run then paid for
importing the modules the Setup page needs and loading its data set. A browser that never opened the dashboard
spends about 0.7 s fetching and compiling Streamlit's scripts after the server answers, while the server mostly
waits: a thread started here waits until Streamlit's runtime has started, then does that work
(:func:`unlearn_app.warmup.warm_first_page`). Done before the server listened, the same work delayed its first
answer (0.99 against 0.77 s in the browser benchmark's first round; a browser that opens the address a moment
later gets the page 0.15 s sooner, one already waiting at the address gains nothing measurable; docs/APP.md).
None of it imports torch: the Setup page counts and shows the data set's NumPy arrays and reads the original
model's figures from its checkpoint's metadata. Torch, the other pages' modules and the UMAP helper process load
once the first page is drawn (:func:`unlearn_app.warmup.after_page`, called by ``app.py``). ``make run`` starts
the dashboard this way; ``streamlit run app.py`` still works, without the head start.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from unlearn_app.warmup import warm_first_page

APP = Path(__file__).resolve().parents[1] / "app.py"


def listening() -> bool:
    """Streamlit's runtime has started: the server accepts sessions from now on. Imports nothing (it is polled while
    the main thread imports Streamlit)."""
    runtime = sys.modules.get("streamlit.runtime")
    return (runtime is not None and hasattr(runtime, "exists") and runtime.exists()
            and runtime.get_instance().state is not runtime.RuntimeState.INITIAL)


def main(argv: list[str] | None = None) -> int:
    """Hand the process to ``streamlit run app.py <argv>``, with a thread that loads the first page's modules and
    data once the server listens (:func:`unlearn_app.warmup.warm_first_page`)."""
    threading.Thread(target=warm_first_page, args=(listening,), name="unlearn-first-page", daemon=True).start()
    from streamlit.web import cli

    return cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
