"""Figures of a run's evidence sections (docs/EVIDENCE.md): probe accuracies, relearning curves, the
unlearning curves, linear CKA per layer and the retain-only relearn test, the unlearned model beside the original
and the retrained references."""

from __future__ import annotations

import plotly.graph_objects as go

from unlearn_core.figures.style import method_colour

EVIDENCE_MODELS = ("original", "unlearned", "retrained")
EVIDENCE_COLOURS = {"original": "#C7C7C7", "retrained": "#7F7F7F"}


def probe_bars(probe: dict, method: str) -> go.Figure:
    """Probe accuracies (linear and k-NN on the forget set, linear on retained samples) per model, grouped."""
    metrics = [("probe_forget", "linear probe, forget"), ("knn_forget", "k-NN, forget"),
               ("probe_retain", "linear probe, retained")]
    fig = go.Figure()
    for which in EVIDENCE_MODELS:
        values = probe.get(which) or {}
        colour = EVIDENCE_COLOURS.get(which) or method_colour(method)
        fig.add_trace(go.Bar(name=which if which != "unlearned" else f"unlearned ({method})",
                             x=[label for _, label in metrics], y=[values.get(k) for k, _ in metrics],
                             marker_color=colour, text=[None if values.get(k) is None else f"{values[k]:.0f}"
                                                        for k, _ in metrics], textposition="outside"))
    fig.update_layout(barmode="group", title="Feature probe: is the forget data still in the features?",
                      yaxis=dict(title="accuracy (%)", range=[0, 110]), template="plotly_white", height=330,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def relearn_curves(relearn: dict, method: str) -> go.Figure:
    """Forget accuracy per relearning step for each model, with each model's target as a dotted line."""
    fig = go.Figure()
    for which in EVIDENCE_MODELS:
        values = relearn.get(which) or {}
        history = values.get("accuracy_by_step") or []
        if not history:
            continue
        colour = EVIDENCE_COLOURS.get(which) or method_colour(method)
        name = which if which != "unlearned" else f"unlearned ({method})"
        fig.add_trace(go.Scatter(x=list(range(len(history))), y=history, mode="lines+markers", name=name,
                                 line=dict(color=colour)))
        if values.get("target_acc") is not None and which != "original":
            fig.add_hline(y=values["target_acc"], line=dict(dash="dot", color=colour, width=1))
    fig.update_layout(title="Relearning: forget accuracy per fine-tuning step (dotted: each model's target)",
                      xaxis_title="relearn step", yaxis=dict(title="forget accuracy (%)", range=[-5, 105]),
                      template="plotly_white", height=330, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def unlearning_curves(curves: dict, method: str) -> go.Figure:
    """Acc_f (or FA), Acc_r and the method's loss along its optimiser steps; step 0 is the original model."""
    from plotly.subplots import make_subplots

    points = curves.get("points") or []
    steps = [p.get("step") for p in points]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for key, colour, dash in (("Acc_f", "#D62728", "solid"), ("FA", "#FF7F0E", "solid"),
                              ("Acc_r", "#1F77B4", "solid")):
        values = [p.get(key) for p in points]
        if all(v is None for v in values):
            continue
        fig.add_trace(go.Scatter(x=steps, y=values, name=key, mode="lines+markers", line=dict(color=colour, dash=dash),
                                 text=[f"epoch {p.get('epoch')}, {p.get('stage')}" for p in points],
                                 hovertemplate="step %{x}<br>%{text}<br>" + key + " %{y:.1f}<extra></extra>"),
                      secondary_y=False)
    losses = [p.get("loss") for p in points]
    if any(v is not None for v in losses):
        fig.add_trace(go.Scatter(x=steps, y=losses, name="loss", mode="lines", line=dict(color="#888", dash="dot")),
                      secondary_y=True)
    fig.update_layout(title=f"Unlearning curve of {method} (fixed evaluation subsets)", template="plotly_white",
                      height=330, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="optimiser step")
    fig.update_yaxes(title_text="accuracy (%)", range=[-5, 105], secondary_y=False)
    fig.update_yaxes(title_text="loss", secondary_y=True, showgrid=False)
    return fig


CKA_LINES = {("forget", "original"): ("#D62728", "solid"), ("forget", "retrained"): ("#D62728", "dot"),
             ("retain", "original"): ("#1F77B4", "solid"), ("retain", "retrained"): ("#1F77B4", "dot")}


def cka_layers(cka: dict, method: str) -> go.Figure:
    """Linear CKA of the unlearned model per layer against the original (solid) and the retrained model (dotted),
    on forget samples (red) and retained samples (blue): which reference each layer resembles.

    ``cka`` is a report's ``evidence["cka"]`` (``layers`` and per sample set and reference one value per layer).
    """
    layers = list(cka.get("layers") or [])
    fig = go.Figure()
    for (split, reference), (colour, dash) in CKA_LINES.items():
        values = (cka.get(split) or {}).get(reference)
        if not values:
            continue
        fig.add_trace(go.Scatter(x=layers, y=values, mode="lines+markers", name=f"{split}: vs {reference}",
                                 line=dict(color=colour, dash=dash),
                                 hovertemplate=f"{split} samples, vs {reference}<br>%{{x}}: CKA %{{y:.3f}}"
                                               "<extra></extra>"))
    fig.update_layout(title=f"Linear CKA per layer of {method}: like the original, or like the retrained model?",
                      xaxis_title="layer (input to output)", yaxis=dict(title="linear CKA", range=[0, 1.05]),
                      template="plotly_white", height=330, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def relearn_retain_curves(relearn: dict, method: str) -> go.Figure:
    """Forget accuracy while each model is fine-tuned on retained samples only (``evidence["relearn_retain"]``),
    with the original model's forget accuracy as a dashed line."""
    fig = go.Figure()
    original_acc = None
    for which in EVIDENCE_MODELS:
        values = relearn.get(which) or {}
        history = values.get("accuracy_by_step") or []
        if not history:
            continue
        original_acc = values.get("original_acc", original_acc)
        colour = EVIDENCE_COLOURS.get(which) or method_colour(method)
        name = which if which != "unlearned" else f"unlearned ({method})"
        fig.add_trace(go.Scatter(x=[p["step"] for p in history], y=[p["acc"] for p in history],
                                 mode="lines+markers", name=name, line=dict(color=colour)))
    if original_acc is not None:
        fig.add_hline(y=original_acc, line=dict(dash="dash", color="#C7C7C7", width=1))
    fig.update_layout(title="Relearn from retained data only: forget accuracy per step (dashed: the original's)",
                      xaxis_title="fine-tuning step on retained samples",
                      yaxis=dict(title="forget accuracy (%)", range=[-5, 105]), template="plotly_white", height=330,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


VERDICT_SPLIT_COLOURS = {"forget": "#D62728", "retain": "#1F77B4", "validation": "#7F7F7F"}


def klom_histogram(klom: dict, method: str, k: int | None = None) -> go.Figure:
    """KLoM per sample (``{split: [values]}``) as overlaid histograms on forget, retain and validation samples:
    0 = the margins of the method's models and of the retrained models agree on that sample."""
    fig = go.Figure()
    for split, values in klom.items():
        if values:
            fig.add_trace(go.Histogram(x=values, name=f"{split} ({len(values)})", opacity=0.6, nbinsx=40,
                                       marker_color=VERDICT_SPLIT_COLOURS.get(split)))
    models = f", K = {k}" if k else ""
    fig.update_layout(barmode="overlay", title=f"KLoM per sample of {method} against the retrained models{models}",
                      xaxis_title="KL(unlearned || retrained) of margins", yaxis_title="samples",
                      template="plotly_white", height=330, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def ulira_roc(roc: dict, method: str) -> go.Figure:
    """The U-LiRA attack's ROC per split (``{split: {"fpr", "tpr", "auc"}}``), log-scaled FPR, with chance."""
    fig = go.Figure()
    for split, curve in roc.items():
        auc = curve.get("auc")
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines",
                                 name=split + ("" if auc is None else f" (AUC {auc:.2f})"),
                                 line=dict(color=VERDICT_SPLIT_COLOURS.get(split))))
    chance = [1e-3, 1.0]
    fig.add_trace(go.Scatter(x=chance, y=chance, mode="lines", name="chance", line=dict(color="#BBB", dash="dot")))
    fig.update_layout(title=f"U-LiRA ROC of {method}: unlearned vs retrained, per sample",
                      xaxis=dict(title="false-positive rate", type="log", range=[-3, 0]),
                      yaxis=dict(title="true-positive rate", range=[0, 1.02]), template="plotly_white", height=330,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig
