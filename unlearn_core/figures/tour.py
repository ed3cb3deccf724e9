"""The tour's own charts (:mod:`unlearn_core.tour`): forget and remaining accuracy per model, and relearn steps
per model, each model in its one colour (:func:`unlearn_core.figures.style.method_colour`)."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from unlearn_core.figures.style import method_colour


def forget_retain_bars(rows: list[dict], height: int = 380) -> go.Figure:
    """Two groups of bars, forget accuracy (FA) and remaining accuracy (RA), one bar per model in ``rows``
    (:func:`unlearn_core.tour.forgetting_rows`), each labelled with its value; the retrained model's values as
    dotted lines across each group, the target a method should meet."""
    groups = ["forget set (FA)", "remaining training set (RA)"]
    fig = go.Figure()
    for row in rows:
        values = [row["FA"], row["RA"]]
        fig.add_trace(go.Bar(name=row["model"], x=groups, y=values, marker_color=method_colour(row["method"]),
                             text=[("–" if math.isnan(v) else f"{v:.1f}") for v in values], textposition="outside",
                             cliponaxis=False, hovertemplate=f"{row['model']}<br>%{{x}}: %{{y:.2f}} %<extra></extra>"))
    retrained = rows[-1]
    for position, key in enumerate(("FA", "RA")):
        if not math.isnan(retrained[key]):
            fig.add_shape(type="line", xref="x", x0=position - 0.45, x1=position + 0.45, y0=retrained[key],
                          y1=retrained[key], line=dict(color=method_colour("retrain"), dash="dot", width=2))
    fig.update_layout(barmode="group", height=height, yaxis=dict(title="accuracy (%)", range=[0, 112]),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      margin=dict(l=10, r=10, t=40, b=10), template="plotly_white")
    return fig


def relearn_steps_bars(rows: list[dict], verdicts: dict[str, str] | None = None, height: int = 360) -> go.Figure:
    """Fine-tuning steps each model needs to regain half of the original's forget accuracy
    (:func:`unlearn_core.tour.relearn_rows`), one horizontal bar per model; a capped count is drawn at the cap
    and labelled "> cap", a diverged one "diverged". ``verdicts`` (:func:`unlearn_core.tour.hidden_or_gone`)
    are written beside the methods' bars."""
    verdicts = verdicts or {}
    labels, values, texts, colours = [], [], [], []
    for row in rows:
        steps = row["steps"]
        if steps is None and row["capped"]:
            value, text = float(row["max_steps"] or 0), f"> {row['max_steps']}"
        elif steps is None:
            value, text = 0.0, "diverged" if row["diverged"] else "–"
        else:
            value, text = float(steps), str(steps)
        if row["model"] in verdicts:
            text += f"  ({verdicts[row['model']]})"
        labels.append(row["model"])
        values.append(value)
        texts.append(text)
        colours.append(method_colour(row["method"]))
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=colours, text=texts,
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{text} steps<extra></extra>"))
    top = max(values + [1.0])
    fig.update_layout(height=height, xaxis=dict(title="relearn steps (more = more truly forgotten)",
                                                range=[0, top * 1.35]),
                      yaxis=dict(autorange="reversed"), margin=dict(l=10, r=10, t=20, b=10),
                      template="plotly_white", showlegend=False)
    return fig
