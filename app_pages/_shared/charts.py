"""Downloads for slides and take-away: each chart's file name and format, Vega-Lite charts with their export
button, and the report button."""

from __future__ import annotations

import streamlit as st

from app_pages._shared import resources, session


def chart_config(chart: str, method: str | None = None, run_id: int | None = None) -> dict:
    """A chart's plotly config: its camera button saves PNG at 2x or SVG (the sidebar's choice) under a name that
    says what it shows (:func:`unlearn_core.slides.figure_filename`: method, run, data set, forget set, chart)."""
    from unlearn_app.urlstate import forget_label
    from unlearn_core.slides import download_config, figure_filename

    name = figure_filename(chart, method=method, dataset=st.session_state.get("dataset"),
                           forget=forget_label(st.session_state.get("forget", "")), run_id=run_id)
    return download_config(name, session.CHART_FORMATS.get(st.session_state.get("w_chart_format"), "png"))


def vega_chart(spec: dict, chart: str, key: str, method: str | None = None) -> None:
    """Draw a Vega-Lite ``spec`` (:mod:`unlearn_core.figures.vega`) with a download button under it that saves it
    as the sidebar's chart format (PNG at 2x or SVG) under :func:`chart_config`'s file name, rendered on click."""
    from unlearn_core.figures.vega import export_chart

    config = chart_config(chart, method)["toImageButtonOptions"]
    fmt, name = config["format"], config["filename"]
    st.vega_lite_chart(None, {**spec, "datasets": dict(spec.get("datasets") or {})}, width="stretch", key=key)
    st.download_button(f"{name}.{fmt}", data=lambda: export_chart(spec, fmt), file_name=f"{name}.{fmt}",
                       mime="image/svg+xml" if fmt == "svg" else "image/png", on_click="ignore", type="tertiary",
                       icon=":material/download:", key=f"{key}_download",
                       help="Save this chart (the sidebar chooses PNG at twice the drawn size or SVG).")


def report_button(container, runs: list[dict], source: tuple[str, str], file_name: str, key: str,
                  sweep: dict | None = None) -> None:
    """A "Download report (HTML)" button: :mod:`unlearn_core.handout`'s self-contained report of ``runs``.

    The page is built only when the button is clicked (Streamlit calls ``data`` then, on its own thread, with no
    Streamlit call inside), so drawing the page costs nothing. ``runs`` are the ones this session may see.
    """
    from unlearn_core.handout import Selection, build_handout

    done = [r for r in runs if r.get("status") == "done" and r.get("report")]
    if not done:
        return
    done_ids = {r["id"] for r in done}
    selection = Selection(source, sorted(done, key=lambda r: r["id"]),
                          [r for r in runs if r["id"] not in done_ids], sweep)
    raw_store = None if session.shared() else resources._store(resources._data_dir())  # a shared server does not show its paths

    def build() -> bytes:
        return build_handout(raw_store, selection).encode("utf-8")

    container.download_button("Download report (HTML)", data=build, file_name=file_name, mime="text/html",
                              on_click="ignore", icon=":material/description:", key=key,
                              help="One self-contained HTML file to take away: the setting, the metrics (mean and "
                                   "95 % interval over seeds), per-class shifts, the aligned embeddings, UNSC's "
                                   "spectrum, NatMU's hybrids, the evidence and the recipe to reproduce every run. "
                                   "It opens offline. Built when you click (some seconds).")
