"""Embeddings page: before / after / retrained features in ONE shared 2-D map."""

import os

import numpy as np
import streamlit as st

from app_pages import _shared

st.title("Embeddings")
_shared.explainer(
    "Every point is one training image, placed by the model's **penultimate features** (what the last layer "
    "classifies). The original (*before*), unlearned (*after*) and retrained features of the same images are reduced "
    "**together** into one map (the retrained model's points are then placed into that same map), so a point that "
    "moves between panels moved in feature space. Crosses are the forget "
    "set. After class unlearning they should leave their old cluster (as in the retrained model) while the other "
    "clusters stay put. PCA appears instantly; UMAP (which separates clusters better) is computed in the background "
    "and replaces it when ready. Hover a point for its predictions before, after and retrained; click or lasso points "
    "in the *after* panel to see their images.")

from unlearn_core.embeddings import embedding_key, indices_digest, joint_embedding, sample_points  # noqa: E402
from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.figures import embedding_scatter, prediction_hover  # noqa: E402

current = _shared.choice()
runs = [r for r in _shared.store().list(dataset=current.dataset, model=current.model, forget=current.forget,
                                        status="done") if r.get("checkpoint_path")]
if not runs:
    st.info("No finished run for this choice yet: the map compares a run's model with the original and the "
            "retrained one. Run a method on the **Unlearn** page first.")
    st.page_link(_shared.page("unlearn"), label="Go to Unlearn", icon=":material/play_circle:")
    st.stop()

labels_by_id = {r["id"]: f"#{r['id']} {r['method']}" for r in runs}
cols = st.columns([2, 2, 2])
run_id = cols[0].selectbox("Run (the 'after' model)", list(labels_by_id), format_func=labels_by_id.get,
                           key="w_embed_run")
budget = cols[1].select_slider("Points", options=[500, 1000, 2000, 3000, 5000], value=2000, key="w_embed_points",
                               help="Training images drawn per class in proportion; every forget sample first.")
run = next(r for r in runs if r["id"] == run_id)

try:
    setup = _shared.current_setup(with_retrain=True)
except UnlearnError as error:
    st.error(str(error))
    st.stop()
bundle = setup.bundle
train_y = bundle.train_y.numpy()
idx = sample_points(train_y, int(budget), seed=0, include=setup.split.forget_idx)
digest = indices_digest(idx)
models = {"before": (setup.original.key, setup.original.model),
          "after": (f"run{run_id}", _shared.run_model(run, setup)),
          "retrained": (setup.retrained.key, setup.retrained.model)}
feats, probs = {}, {}
for state, (model_key, model) in models.items():
    feats[state], probs[state] = _shared.features_and_probs(model_key, digest, model, bundle, idx)

cache = _shared.embedding_cache()
parts = dict(run=run_id, original=setup.original.key, retrained=setup.retrained.key, idx=digest, fit="before+after")
pca_key = embedding_key(reducer="pca", **parts)
umap_key = embedding_key(reducer="umap", **parts)
FIT_ON = ["before", "after"]  # the retrained reference is then placed into the before/after map
pca = cache.get_or_compute(pca_key, lambda: joint_embedding(feats, "pca", fit_on=FIT_ON))
umap_coords = cache.get(umap_key)
umap_jobs = [j for j in _shared.runner().active("umap") if j.snapshot().meta.get("key") == umap_key]
auto_umap = os.environ.get(_shared.ENV_AUTO_UMAP, "1") != "0"
if auto_umap:
    _shared.warm_umap_in_background()
umap_failed = [j.snapshot() for j in _shared.runner().jobs("umap")
               if j.snapshot().meta.get("key") == umap_key and j.snapshot().status == "failed"]
if umap_failed:
    st.error(f"UMAP failed: {umap_failed[-1].error}. The PCA map below is still exact.")
retry = umap_failed and cols[2].button("Retry UMAP")
if umap_coords is None and not umap_jobs and ((auto_umap and not umap_failed) or retry
                                              or (not auto_umap and cols[2].button("Compute UMAP"))):
    features_copy = {k: v.copy() for k, v in feats.items()}

    def fit(progress, cancel, key=umap_key, features=features_copy):
        from unlearn_core.progress import ProgressEvent

        progress(ProgressEvent(stage="umap", message=f"fitting {sum(len(v) for v in features.values())} points"))
        return cache.get_or_compute(key, lambda: joint_embedding(features, "umap", seed=0, fit_on=FIT_ON))

    umap_jobs = [_shared.runner().submit(f"UMAP of run #{run_id}", fit, kind="umap",
                                         meta={"key": umap_key, "owner": _shared.session_owner()})]

reducers = ["UMAP", "PCA"] if umap_coords is not None else ["PCA"]
reducer = cols[2].radio("Map", reducers, horizontal=True, key="w_embed_reducer") if len(reducers) > 1 else "PCA"
if umap_coords is None:
    cols[2].caption("Showing PCA; UMAP is being computed in the background." if umap_jobs else "Showing PCA.")
coords = umap_coords if reducer == "UMAP" else pca
_shared.jobs_panel("umap", title="Map")

forget_mask = np.isin(idx, setup.split.forget_idx)
labels = train_y[idx]
names = bundle.class_names
view = st.radio("View", ["Side by side", "One panel (toggle)"], horizontal=True, key="w_embed_view")
titles = {"before": "before (original)", "after": f"after (run #{run_id} {run['method']})",
          "retrained": "retrained reference"}
hover = prediction_hover(probs, names)
selection = None
if view == "Side by side":
    panels = st.columns(3)
    for panel, state in zip(panels, ("before", "after", "retrained")):
        with panel:
            fig = embedding_scatter(coords[state], labels, idx, forget_mask, names, title=titles[state],
                                    selectable=state == "after", height=420, hover=hover)
            if state == "after":
                selection = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "lasso", "box"),
                                            key="embed_after", width="stretch")
            else:
                st.plotly_chart(fig, key=f"embed_{state}", width="stretch")
else:
    state = st.select_slider("State", options=["before", "after", "retrained"], value="after",
                             key="w_embed_state", format_func=titles.get)
    ghost = coords["before"] if state != "before" else None
    fig = embedding_scatter(coords[state], labels, idx, forget_mask, names, title=titles[state], selectable=True,
                            ghost=ghost, height=600, hover=hover)
    selection = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "lasso", "box"),
                                key="embed_single", width="stretch")

from unlearn_core.appstate import display_scale, to_display  # noqa: E402

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
