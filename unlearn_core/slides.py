"""Figures for slides: a file name that says what a chart shows, and plotly's download settings.

Plotly's camera button (``toImage`` in the mode bar) saves the chart with the
``toImageButtonOptions`` of the figure's config: ``format`` (``png``,
``svg``, ``jpeg``, ``webp``), ``filename`` (without extension) and ``scale``
(a multiplier of the drawn size). :func:`download_config` fills them so a PNG
comes at twice the on-screen resolution (sharp on a projector) and an SVG
scales without loss; :func:`figure_filename` names the file after what the
chart shows, e.g. ``unsc_mnist5k_class-3_embeddings.png`` instead of
``newplot.png``. Nothing here imports Streamlit.
"""

from __future__ import annotations

import re

FORMATS = ("png", "svg")
PNG_SCALE = 2  # 2x the drawn size: a 700 px wide chart becomes a 1400 px picture
MAX_NAME = 120  # characters before the extension; every file system takes 255 bytes

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _part(value) -> str:
    """One name part: ASCII letters, digits, ``.``, ``_`` and ``-``; any other run of characters becomes ``-``."""
    text = _UNSAFE.sub("-", str(value).strip()).strip("-._")
    return text


def figure_filename(chart: str, method: str | None = None, dataset: str | None = None, forget: str | None = None,
                    run_id: int | None = None) -> str:
    """``<method>_<dataset>_<forget>_<chart>`` (without extension), each part made safe for a file name.

    ``forget`` specs keep their meaning (``class:3`` -> ``class-3``, ``random:0.1`` -> ``random-0.1``);
    parts that are ``None`` or empty are left out, ``run_id`` adds ``run<id>`` after the method. The name is
    cut to :data:`MAX_NAME` characters; it is never empty (``chart`` falls back to ``figure``).
    """
    parts = [_part(method) if method else "", f"run{int(run_id)}" if run_id is not None else "",
             _part(dataset) if dataset else "", _part(forget) if forget else "", _part(chart) or "figure"]
    name = "_".join(p for p in parts if p)
    return name[:MAX_NAME].rstrip("-._") or "figure"


def download_config(filename: str, fmt: str = "png", **extra) -> dict:
    """A plotly config whose camera button downloads ``filename.<fmt>``: PNG at :data:`PNG_SCALE` x, or SVG.

    ``displaylogo`` is off (the logo links to plotly's site, which a slide or an offline report does not
    need). ``extra`` keys are added to the config as given.
    """
    if fmt not in FORMATS:
        raise ValueError(f"download format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    options = {"format": fmt, "filename": _part(filename) or "figure", "scale": PNG_SCALE if fmt == "png" else 1}
    return {"toImageButtonOptions": options, "displaylogo": False, **extra}
