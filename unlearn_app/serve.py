"""``python -m unlearn_app.serve [streamlit options]``: ``streamlit run app.py`` with the first page's modules
loaded before the server listens.

Streamlit runs no app code until the first browser session connects, and that first script run then paid for
importing the modules the Setup page needs. Here they are imported (:data:`unlearn_app.warmup.FIRST_PAGE_MODULES`)
before Streamlit starts, and none of them imports torch: the Setup page counts and shows the data set's NumPy
arrays and reads the original model's figures from its checkpoint's metadata, so the server answers about 0.7 s
after its start and the first page needs no import of torch (1.1 s on this project's 2-core machine). Torch, the
other pages' modules and the UMAP helper process load once the first page is drawn
(:func:`unlearn_app.warmup.after_page`, called by ``app.py``): started here, the helper's start-up competed with
drawing that page. ``make run`` starts the dashboard this way; ``streamlit run app.py`` still works, without the
head start.
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
