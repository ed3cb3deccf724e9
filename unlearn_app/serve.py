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
the dashboard this way; ``streamlit run app.py`` still works, without the head start. The launcher also skips
Streamlit's start-up scan of every installed package for custom components, which the dashboard does not use
(:func:`skip_component_scan`), and leaves Streamlit's Plotly theme, which its import would build before the server
answers, until a page that draws Plotly figures runs or the first page is drawn (:func:`import_streamlit`).
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

from unlearn_app.warmup import defer_plotly_theme, warm_first_page

APP = Path(__file__).resolve().parents[1] / "app.py"


def listening() -> bool:
    """Streamlit's runtime has started: the server accepts sessions from now on. Imports nothing (it is polled while
    the main thread imports Streamlit)."""
    runtime = sys.modules.get("streamlit.runtime")
    return (runtime is not None and hasattr(runtime, "exists") and runtime.exists()
            and runtime.get_instance().state is not runtime.RuntimeState.INITIAL)


def _no_components(*args, **kwargs) -> list:
    return []


def skip_component_scan() -> bool:
    """Replace Streamlit's start-up scan for custom components with an empty result; returns whether this
    Streamlit has that scan (``streamlit.components.v2.manifest_scanner.scan_component_manifests``).

    Streamlit's runtime reads the metadata of every installed package at start, looking for packages that ship
    (bidirectional, "v2") custom components to register. The dashboard uses none, and the scan took 0.11 s of the
    server's start with this project's ~100 packages, on the first page's path: the first page was on screen
    about 0.1 s sooner without it (two interleaved runs of 8 and 10 rounds, docs/APP.md). Skipping it loses
    nothing: a component found by the scan would only be available to code that names it, and no module of the
    app does (a test checks that, and that the real scan finds none in this project's environment).
    """
    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:
        return False
    if not callable(getattr(manifest_scanner, "scan_component_manifests", None)):
        return False
    manifest_scanner.scan_component_manifests = _no_components
    return True


# What Streamlit's import loads only to configure its Plotly theme.
THEME_IMPORT = "plotly.graph_objects"


def import_streamlit() -> bool:
    """Import Streamlit without configuring its Plotly theme, which is left to
    :func:`unlearn_app.warmup.plotly_theme`; returns whether it was deferred (not when Streamlit or plotly's figure
    classes were already imported).

    Streamlit's import configures a Plotly theme whenever plotly is installed: it imports plotly's figure
    classes and builds a template, 0.18 s of the 0.40 s that importing Streamlit took here, before the server
    answers. It does so inside ``contextlib.suppress(ImportError)`` (plotly is optional to Streamlit), so while
    Streamlit is imported :data:`THEME_IMPORT` is marked missing in ``sys.modules``: that import then raises at
    once, loading nothing. The mark is removed right after. A Streamlit that needed the import elsewhere (the
    import fails) is imported again without the mark, and its theme is then configured as usual.
    """
    if "streamlit" in sys.modules or THEME_IMPORT in sys.modules:
        return False
    sys.modules[THEME_IMPORT] = None
    try:
        importlib.import_module("streamlit")
        deferred = True
    except ImportError:
        deferred = False
    finally:
        if sys.modules.get(THEME_IMPORT, "") is None:
            del sys.modules[THEME_IMPORT]
    if deferred:
        defer_plotly_theme()
    else:
        importlib.import_module("streamlit")
    return deferred


def main(argv: list[str] | None = None) -> int:
    """Hand the process to ``streamlit run app.py <argv>``, with Streamlit's Plotly theme left until a page needs it
    (:func:`import_streamlit`), without its scan for custom components (:func:`skip_component_scan`) and with a
    thread that loads the first page's modules and data once the server
    listens (:func:`unlearn_app.warmup.warm_first_page`)."""
    threading.Thread(target=warm_first_page, args=(listening,), name="unlearn-first-page", daemon=True).start()
    import_streamlit()
    skip_component_scan()
    from streamlit.web import cli

    return cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
