"""How long Streamlit in Chromium takes to draw the Embeddings page's three map panels, by renderer and layout.

Run: ``.venv/bin/python benchmarks/bench_map_panels.py [--rounds 6]``. Needs /usr/bin/chromium. Prints one JSON
object; docs/APP.md quotes a run of it.

A small Streamlit app (written to a temporary folder, started with ``streamlit run`` on a local port by
:func:`benchmarks._browser.server`) draws the
page's own figures (:func:`unlearn_core.figures.embedding_scatter`: 10 clustered classes, one class in the
forget set) as the Embeddings page does, three ``st.plotly_chart`` side by side, or as one figure with three
subplots. A button hides and shows them; each round times, in headless Chromium launched as the browser tests
launch it (software WebGL: no GPU), from the click that shows the panels to the last change in the page (a
MutationObserver, read 2 s later). ``none`` is the same click with the figures built but not drawn: the
round trip and the script, which every variant includes.

The variants: ``svg`` (``go.Scatter``) or ``webgl`` (``go.Scattergl``), ``three`` figures or ``one`` with
subplots, 1,000 or 2,000 points per panel (the page's default is 2,000).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._browser import browser, server, settle  # noqa: E402

APP = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    import numpy as np
    import streamlit as st
    from plotly.subplots import make_subplots
    from unlearn_core.figures import embedding_scatter

    layout = st.query_params.get("layout", "three")
    points = int(st.query_params.get("points", "2000"))
    webgl = st.query_params.get("renderer", "webgl") == "webgl"
    st.session_state.setdefault("round", 0)
    if st.button("toggle"):
        st.session_state["shown"] = not st.session_state.get("shown", True)
        st.session_state["round"] += 1
    rng = np.random.default_rng(st.session_state["round"])
    labels = rng.integers(0, 10, points)
    centres = rng.normal(scale=6.0, size=(10, 2))
    names = [str(c) for c in range(10)]
    figures = [embedding_scatter(centres[labels] + rng.normal(size=(points, 2)), labels, np.arange(points),
                                 labels == 3, names, title=state, height=420, show_legend=False, webgl=webgl)
               for state in ("before", "after", "retrained")]
    if not st.session_state.get("shown", True) or layout == "none":
        st.write("hidden")
    elif layout == "three":
        for column, figure, state in zip(st.columns(3), figures, ("before", "after", "retrained")):
            with column:
                st.plotly_chart(figure, key=state, width="stretch")
    else:
        joined = make_subplots(rows=1, cols=3, subplot_titles=["before", "after", "retrained"],
                               horizontal_spacing=0.02)
        for column, figure in enumerate(figures, start=1):
            for trace in figure.data:
                joined.add_trace(trace, row=1, col=column)
        joined.update_layout(height=420, showlegend=False, margin=dict(l=10, r=34, t=40, b=10),
                             template="plotly_white")
        joined.update_xaxes(showticklabels=False)
        joined.update_yaxes(showticklabels=False)
        st.plotly_chart(joined, key="joined", width="stretch")
    st.write("script done")
""")

WATCH = """() => { window.__last = performance.now(); window.__t0 = performance.now();
  window.__observer = new MutationObserver(() => { window.__last = performance.now(); });
  window.__observer.observe(document.body,
                            {subtree: true, childList: true, attributes: true, characterData: true}); }"""

VARIANTS = [("none", "webgl", 2000), ("three", "webgl", 2000), ("three", "svg", 2000), ("one", "webgl", 2000),
            ("one", "svg", 2000), ("three", "webgl", 1000), ("three", "svg", 1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    out = {"load_before": os.getloadavg()[0], "rounds": args.rounds, "ms": {}}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "panels.py"
        script.write_text(APP.format(repo=str(REPO)))
        with server(script=script, log_dir=Path(folder)) as (url, _, _):
            with browser(1280, 900) as page:
                for layout, renderer, points in VARIANTS:
                    page.goto(f"{url}/?layout={layout}&renderer={renderer}&points={points}")
                    settle(page)
                    page.get_by_text("script done").wait_for()
                    time.sleep(1.0)
                    times = []
                    toggle = page.get_by_role("button", name="toggle")
                    for _ in range(args.rounds):
                        toggle.click()  # hide
                        time.sleep(1.0)
                        page.evaluate(WATCH)
                        toggle.click()  # show: the panels are drawn afresh, as when a page opens
                        time.sleep(2.0)
                        times.append(page.evaluate("window.__last - window.__t0"))
                        page.evaluate("window.__observer.disconnect()")
                    name = f"{layout} {renderer} {points}" if layout != "none" else "none (script and round trip)"
                    out["ms"][name] = {"median": round(statistics.median(times)), "all": [round(t) for t in times]}
                    print(f"{name}: median {statistics.median(times):.0f} ms", file=sys.stderr, flush=True)
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
