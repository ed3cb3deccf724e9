"""Unlearning Lab dashboard entry point (``streamlit run app.py``).

Thin on purpose: page config, shared state and navigation. Each page lives in
``app_pages/`` and calls ``unlearn_app`` and ``unlearn_core``; nothing heavy is imported here, so the
first page appears quickly.
"""

from pathlib import Path

import streamlit as st

from app_pages import _shared
from unlearn_app import warmup

ROOT = Path(__file__).resolve().parent

# A local file: a ":material/...:" page icon makes every browser fetch the favicon from fonts.gstatic.com (broken
# icons in an offline classroom, and each visit announced to a third party).
st.set_page_config(page_title="Unlearning Lab", page_icon=str(ROOT / "assets" / "icon.png"), layout="wide")
st.logo(str(ROOT / "assets" / "logo.svg"))
st.html(f"<style>{(ROOT / 'assets' / 'style.css').read_text()}</style>")
_shared.init_state()
presenting = _shared.presentation()

PAGE_SPECS = [
    ("setup", "app_pages/setup.py", "Setup", ":material/tune:"),
    ("tour", "app_pages/tour.py", "Tour", ":material/school:"),
    ("forget", "app_pages/forget.py", "Forget set", ":material/select_all:"),
    ("unlearn", "app_pages/unlearn.py", "Unlearn", ":material/play_circle:"),
    ("results", "app_pages/results.py", "Results", ":material/table_chart:"),
    ("sweeps", "app_pages/sweeps.py", "Sweeps", ":material/grid_view:"),
    ("embeddings", "app_pages/embeddings.py", "Embeddings", ":material/scatter_plot:"),
    ("nullspace", "app_pages/nullspace.py", "Null space", ":material/stacked_line_chart:"),
    ("hybrids", "app_pages/hybrids.py", "NatMU hybrids", ":material/gradient:"),
]
pages = {name: st.Page(str(ROOT / path), title=title, icon=icon, url_path=name, default=name == "setup")
         for name, path, title, icon in PAGE_SPECS}
# One rebinding, never clear-and-refill: every browser session runs this script in its own thread, and a session
# that read the shared dict half-filled got a navigation of two pages and was thrown onto one of them.
_shared.session.PAGES = pages
# Presentation mode moves the page links into the header: the sidebar is hidden, the pages stay one click away.
page = st.navigation(list(pages.values()), position="top" if presenting else "sidebar")
if page is not pages["setup"]:  # Setup draws no Plotly figure; the launcher leaves Streamlit's theme until one does
    warmup.plotly_theme()
page.run()
_shared.finish_run()  # after the page, so the sidebar and the address bar show what the page just chose
# The other pages' modules and umap load in one low-priority thread once this run has ended, so they never
# compete with drawing the page (unlearn_app.warmup).
_shared.warm_in_background()
