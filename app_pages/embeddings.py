"""Embeddings page: before / after / retrained features in ONE shared 2-D map."""

import numpy as np
import streamlit as st

from app_pages import _shared

st.title("Embeddings")
_shared.explainer(
    "Every point is one training image, placed by a model's **penultimate features** (what its last layer "
    "classifies). The **before** map is fitted on the original model's features alone, once per setting, so it "
    "and its layout stay the same whichever run you show next to it. The **after** model (the unlearned one, which "
    "starts from the original's weights and so shares its feature axes) is placed into that same map: PCA projects "
    "it on the before map's axes, UMAP puts each point at the weighted mean of its nearest before points. A point "
    "that moves between these two panels moved in feature space. The **retrained** model is another network with "
    "its own feature axes, so its features are first rotated and scaled onto the original's (an orthogonal "
    "Procrustes fit on the remaining samples, which both models know) and then placed the same way: compare where "
    "its classes sit, not single points. All panels share their axes. Small crosses are the forget set. Each run's "
    "map is computed in its job, so switching runs is a lookup. A 2-D map cannot keep every neighbourhood: the "
    "status line says what share of each point's 10 nearest neighbours in that model's own feature space are also "
    "its neighbours in the panel. *Colour by prediction* colours each point by what that panel's model predicts, "
    "which shows changes in the classifier head that feature positions alone hide. PCA is drawn at once; UMAP "
    "replaces it when ready. Hover a point for its predictions; click or lasso points in the *after* panel to see "
    "their images.")

from unlearn_core.embeddings import (KEPT_NEIGHBOURS, cached_panels, default_points, indices_digest,  # noqa: E402
                                     map_indices, panel_maps, placed_panels)
from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.figures import embedding_scatter, legend_html, prediction_hover, shared_ranges  # noqa: E402
from unlearn_core.settings import settings  # noqa: E402

POINT_OPTIONS = (500, 1000, 2000, 3000, 5000)

current = _shared.choice()
runs = [r for r in _shared.store().list(dataset=current.dataset, model=current.model, forget=current.forget,
                                        status="done") if r.get("checkpoint_path")]
if not runs:
    st.info("No finished run for this choice yet: the map compares a run's model with the original and the "
            "retrained one. Run a method on the **Unlearn** page first.")
    st.page_link(_shared.page("unlearn"), label="Go to Unlearn", icon=":material/play_circle:")
    st.stop()

try:
    setup = _shared.current_setup(with_retrain=True)
except UnlearnError as error:
    st.error(str(error))
    st.stop()
bundle = setup.bundle
train_y = bundle.train_y.numpy()

labels_by_id = {r["id"]: f"#{r['id']} {r['method']}" for r in runs}
viewed = _shared.viewed_run(labels_by_id)
if viewed is not None:
    st.session_state["w_embed_run"] = viewed  # the run looked at last (here or in Results' detail)
# A link's run wins over the last viewed one, but only a run this page lists.
_shared.apply_url_choice("run", "w_embed_run", labels_by_id, "it is not a finished run you can see for this choice")
cols = st.columns([2, 2, 2])
run_id = cols[0].selectbox("Run (the 'after' model)", list(labels_by_id), format_func=labels_by_id.get,
                           key="w_embed_run",
                           on_change=lambda: _shared.note_viewed_run(st.session_state.get("w_embed_run")))
_shared.note_viewed_run(run_id)
_shared.set_view("run", int(run_id))
# Never offer more points than the training set holds: the largest option is "all of them".
options = [o for o in POINT_OPTIONS if o < len(train_y)] + [len(train_y)]
if st.session_state.get("w_embed_points") not in options:
    st.session_state["w_embed_points"] = default_points(len(train_y))
budget = cols[1].select_slider("Points", options=options, key="w_embed_points",
                               format_func=lambda o: f"all {o:,}" if o == len(train_y) else f"{o:,}",
                               help="Training images drawn per class in proportion; every forget sample first.")
run = next(r for r in runs if r["id"] == run_id)
idx = map_indices(train_y, setup.split.forget_idx, int(budget))
digest = indices_digest(idx)
forget_mask = np.isin(idx, setup.split.forget_idx)
cache = _shared.embedding_cache()
# Each panel is cached on its own: the run's job stored its after panel (and, once per setting, the before map
# and the retrained panel) for the default points, so opening a finished run is a lookup.
keys = {"before": setup.original.key, "after": f"run{run_id}", "retrained": setup.retrained.key}
nets = {"before": lambda: setup.original.model, "after": lambda: _shared.run_model(run, setup),
        "retrained": lambda: setup.retrained.model}


def _data(state):
    features, probs = _shared.features_and_probs(keys[state], digest, nets[state](), bundle, idx)
    return {"features": features, "probs": probs}


sources = {state: (keys[state], lambda state=state: _data(state)) for state in keys}
auto_umap = settings().app_auto_umap
# UMAP is fitted once per setting, on the original's features (the before map); every other panel is placed
# into it in milliseconds. So the only job is that fit, keyed by the setting and shared by all of its runs.
umap_key = f"umap:{digest}:{keys['before']}"
umap_jobs = [j for j in _shared.runner().active("umap") if j.snapshot().meta.get("key") == umap_key]
_shared.warm_in_background()
umap_failed = [j.snapshot() for j in _shared.runner().jobs("umap")
               if j.snapshot().meta.get("key") == umap_key and j.snapshot().status == "failed"]
retry = umap_failed and cols[2].button("Retry UMAP")
umap_panels = cached_panels(cache, "umap", digest, forget_mask, keys)
before_mapped = umap_panels is not None or placed_panels(cache, "umap", digest, forget_mask,
                                                         {"before": keys["before"]}, {}) is not None
if not before_mapped and not umap_jobs and ((auto_umap and not umap_failed) or retry
                                            or (not auto_umap and cols[2].button("Compute UMAP"))):
    before = _data("before")  # the job fits on these while this script run computes the other panels
    copy = {"features": before["features"].copy(), "probs": before["probs"].copy()}

    def fit(progress, cancel, copy=copy, mask=forget_mask.copy()):
        from unlearn_core.progress import ProgressEvent

        progress(ProgressEvent(stage="umap", message=f"fitting the before map of {len(mask)} points"))
        return panel_maps(cache, "umap", digest, mask, {"before": (keys["before"], lambda: copy)})

    umap_jobs = [_shared.runner().submit(f"UMAP map of {current.dataset} ({len(idx):,} points)", fit, kind="umap",
                                         meta={"key": umap_key, "owner": _shared.session_owner()})]
    umap_failed = []
pca = (cached_panels(cache, "pca", digest, forget_mask, keys)
       or panel_maps(cache, "pca", digest, forget_mask, sources))
if umap_panels is None:
    # Once the before map is stored (this setting's job, "Prepare a demo", an earlier run) the after and retrained
    # panels are placed here, so the UMAP map shows in this very script run.
    umap_panels = placed_panels(cache, "umap", digest, forget_mask, keys,
                                {state: {"features": panel["features"], "probs": panel["probs"]}
                                 for state, panel in pca.items()})

reducers = ["UMAP", "PCA"] if umap_panels is not None else ["PCA"]
reducer = cols[2].radio("Map", reducers, horizontal=True, key="w_embed_reducer") if len(reducers) > 1 else "PCA"
panels = umap_panels if reducer == "UMAP" else pca
coords = {state: panel["coords"] for state, panel in panels.items()}
feats = {state: panel["features"] for state, panel in panels.items()}
probs = {state: panel["probs"] for state, panel in panels.items()}


kept = {state: float(panel["kept"]) for state, panel in panels.items()}
chance = KEPT_NEIGHBOURS / max(len(idx) - 1, 1)
if umap_panels is not None:
    umap_state = ""
elif umap_failed:
    umap_state = f" UMAP failed ({umap_failed[-1].error}); the PCA map is exact."
elif umap_jobs:
    umap_state = " UMAP is being computed in the background and replaces it when ready."
else:
    umap_state = ""


@st.fragment(run_every=_shared.POLL_SECONDS if umap_jobs else None)
def status_line():
    """ONE line for the map's state; while UMAP runs it polls, and reruns the page once the map is ready."""
    running = [j for j in _shared.runner().active("umap") if j.snapshot().meta.get("key") == umap_key]
    if umap_jobs and not running:
        st.rerun(scope="app")
    st.caption(f"**{reducer}** map of {len(idx):,} training images ({int(forget_mask.sum()):,} in the forget set)."
               f"{umap_state} Neighbours kept (of {KEPT_NEIGHBOURS}, in each model's own feature space): "
               + ", ".join(f"{state} {kept[state] * 100:.0f} %" for state in ("before", "after", "retrained"))
               + f" (random placement: {chance * 100:.1f} %).")


status_line()

labels = train_y[idx]
names = bundle.class_names
controls = st.columns([3, 3])
view = controls[0].radio("View", ["Side by side", "One panel (toggle)"], horizontal=True, key="w_embed_view")
colour_mode = controls[1].radio("Colour by", ["true class", "each model's prediction"], horizontal=True,
                                key="w_embed_colour",
                                help="Prediction colours show what each panel's model says about each image; damage "
                                     "in the classifier head is invisible when colouring by true class.")
titles = {"before": "before (original)", "after": f"after (run #{run_id} {run['method']})",
          "retrained": "retrained (aligned)"}
hover = prediction_hover(probs, names)
ranges = shared_ranges(*(coords[s] for s in ("before", "after", "retrained")))


def colours_of(state):
    return probs[state].argmax(1) if colour_mode != "true class" else None


colour_title = "class" if colour_mode == "true class" else "prediction"
selection = None
if view == "Side by side":
    panels = st.columns(3)
    for panel, state in zip(panels, ("before", "after", "retrained")):
        with panel:
            fig = embedding_scatter(coords[state], labels, idx, forget_mask, names, title=titles[state],
                                    selectable=state == "after", height=420, hover=hover,
                                    colour_by=colours_of(state), colour_title=colour_title, ranges=ranges,
                                    show_legend=False)
            if state == "after":
                selection = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "lasso", "box"),
                                            key="embed_after", width="stretch",
                                            config=_shared.chart_config("embedding-after", run["method"], run_id))
            else:
                st.plotly_chart(fig, key=f"embed_{state}", width="stretch",
                                config=_shared.chart_config(f"embedding-{state}", run["method"], run_id))
    # One legend for the three panels (they share colours), instead of one per narrow panel.
    shown_classes = np.unique(np.concatenate([labels] + [probs[s].argmax(1) for s in probs])
                              if colour_mode != "true class" else labels)
    st.markdown(legend_html(names, shown_classes, "" if colour_mode == "true class" else "predicted ",
                            bool(forget_mask.any())), unsafe_allow_html=True)
else:
    state = st.select_slider("State", options=["before", "after", "retrained"], value="after",
                             key="w_embed_state", format_func=titles.get)
    ghost = coords["before"] if state != "before" else None
    fig = embedding_scatter(coords[state], labels, idx, forget_mask, names, title=titles[state], selectable=True,
                            ghost=ghost, height=600, hover=hover, colour_by=colours_of(state),
                            colour_title=colour_title, ranges=ranges)
    selection = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "lasso", "box"),
                                key="embed_single", width="stretch",
                                config=_shared.chart_config(f"embedding-{state}", run["method"], run_id))

from unlearn_app.display import display_scale, to_display  # noqa: E402

position = {int(v): i for i, v in enumerate(idx)}
picked = []
if selection and selection.selection and selection.selection.points:
    picked = [int(p["customdata"]) for p in selection.selection.points if p.get("customdata") is not None]
scale = display_scale(bundle.image_size, 72)


def describe(sample: int) -> str:
    row = position[sample]
    parts = [f"#{sample} true **{names[int(train_y[sample])]}**"]
    for state in ("before", "after", "retrained"):
        p = probs[state][row]
        parts.append(f"{state}: {names[int(p.argmax())]} ({p.max() * 100:.0f} %)")
    return "  \n".join(parts)


if picked:
    st.markdown(f"**Selected: {len(picked)} point(s)** (first 8 shown)")
    shown = picked[:8]
    grid = st.columns(len(shown))
    for col, sample in zip(grid, shown):
        with col:
            st.image(to_display(bundle.train_x[[sample]], scale)[0], width=72)
            st.caption(describe(sample))
else:
    st.caption("Select points in the 'after' map to see their images and predictions here.")

moved = np.linalg.norm(coords["after"] - coords["before"], axis=1)
st.markdown("**Forget samples that moved furthest** between before and after:")
order = [i for i in np.argsort(-moved) if forget_mask[i]][:10] or list(np.argsort(-moved)[:10])
strip = st.columns(len(order))
for col, row in zip(strip, order):
    sample = int(idx[row])
    with col:
        st.image(to_display(bundle.train_x[[sample]], scale)[0], width=64)
        st.caption(describe(sample))
