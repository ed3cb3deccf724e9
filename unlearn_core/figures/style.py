"""The figures' colour conventions: a class palette, one colour per method, and red = lost / blue = gained
on a symmetric change scale whose limit snaps to fixed steps."""

from __future__ import annotations

import numpy as np

# A 10-colour qualitative palette (Tableau 10) so classes stay distinguishable.
PALETTE = ["#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7", "#9C755F",
           "#BAB0AC"]
# One colour convention for change across the app: red = lost (accuracy, share of a class), blue = gained.
# Plotly's "RdBu" maps the low end to red, so every change chart uses it with a symmetric range around 0.
CHANGE_SCALE = "RdBu"
# Symmetric limits snap to these steps, so a single test image never fills the scale and charts compare.
CHANGE_STEPS = (10.0, 25.0, 50.0, 100.0)

# One colour per method everywhere (bars, lines, markers), distinct from the class palette's order so a
# method is never read as a class. Unknown methods get a stable colour from their name.
METHOD_COLOURS = {
    "retrain": "#7F7F7F", "original": "#C7C7C7", "unsc": "#1F77B4", "natmu": "#D62728", "finetune": "#2CA02C",
    "ga": "#FF7F0E", "neggrad_plus": "#9467BD", "rl": "#8C564B", "bs": "#E377C2", "bs_nearest_wrong": "#F7B6D2",
    "l1_sparse": "#BCBD22", "salun": "#17BECF", "scrub": "#393B79", "ssd": "#AD494A", "bad_teacher": "#637939",
    "svd_forget": "#31A354", "esc": "#7B4173", "esc_t": "#9C9EDE",
}
_EXTRA_METHOD_COLOURS = ("#843C39", "#7B4173", "#3182BD", "#E6550D", "#31A354", "#756BB1", "#636363", "#9C9EDE")


def class_colour(cls: int) -> str:
    return PALETTE[int(cls) % len(PALETTE)]


def method_colour(method: str) -> str:
    """The one colour of a method (``"unsc"``, ``"#3 unsc"`` and ``"retrain (reference)"`` all work)."""
    name = str(method).strip()
    if name.startswith("#"):
        name = name.split(" ", 1)[-1]
    name = name.split(" ")[0]
    if name in METHOD_COLOURS:
        return METHOD_COLOURS[name]
    import zlib

    return _EXTRA_METHOD_COLOURS[zlib.crc32(name.encode()) % len(_EXTRA_METHOD_COLOURS)]


def change_limit(*arrays, steps=CHANGE_STEPS) -> float:
    """The smallest step that holds every |value|: a fixed, symmetric colour range with a minimum size."""
    values = [np.abs(np.asarray(a, dtype=float)) for a in arrays if np.size(a)]
    largest = max((float(np.nanmax(v)) for v in values if np.isfinite(v).any()), default=0.0)
    return next((step for step in steps if largest <= step), float(steps[-1]))
