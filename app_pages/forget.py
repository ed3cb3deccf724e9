"""Forget-set page: whole classes, a random fraction, a sub-class, or samples picked on the embedding map."""

import numpy as np
import streamlit as st

from app_pages import _shared

st.title("Forget set")
_shared.explainer(
    "The **forget set** is the training data the model must unlearn. *Class-wise* forgetting removes whole classes "
    "(the model should fail on them afterwards, like a model that never saw them). *Random* forgetting removes a "
    "fraction of samples from every class: the model should treat them like unseen test images, not fail on them. "
    "*Hand-picked* samples are chosen with the lasso or box tool on the original model's feature map: nearby points "
    "are images the model finds similar.")

from unlearn_app.display import display_scale, to_display  # noqa: E402
from unlearn_app.state import forget_spec_for  # noqa: E402
from unlearn_core.embeddings import sample_points  # noqa: E402
from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.forget import ForgetSpec, index_root  # noqa: E402

setup = _shared.current_setup(with_retrain=False)
bundle = setup.bundle
names = bundle.class_names
# The shared choice came through the URL check in init_state; files stay refused here all the same.
current_spec = setup.split.spec

modes = {"class": "Whole classes", "random": "Random fraction", "indices": "Hand-picked samples"}
if bundle.fine_names:
    modes = {"class": "Whole classes", "random": "Random fraction", "subclass": "Sub-class",
             "indices": "Hand-picked samples"}
if "w_forget_mode" not in st.session_state:
    # Back in hand-picked mode if the user left this page there with nothing picked yet (the sidebar said so).
    st.session_state["w_forget_mode"] = ("indices" if st.session_state.get("forget_pending")
                                         else current_spec.kind if current_spec.kind in modes else "class")
if st.session_state.get("picked_for") != bundle.name:
    # The picked samples belong to one data set; a reload or a link with a hand-picked set brings them back.
    st.session_state["picked"] = ([int(v) for v in current_spec.values] if current_spec.kind == "indices"
                                  and all(v.lstrip("-").isdigit() for v in current_spec.values) else [])
    st.session_state["picked_for"] = bundle.name
mode = st.radio("Kind of forget set", list(modes), format_func=modes.get, horizontal=True, key="w_forget_mode")

spec_text = None
try:
    if mode == "class":
        if "w_forget_classes" not in st.session_state:
            from unlearn_core.forget import _class_index

            st.session_state["w_forget_classes"] = (
                [names[_class_index(v, names, "class")] for v in current_spec.values]
                if current_spec.kind == "class" else [names[min(3, len(names) - 1)]])
        chosen = st.multiselect("Classes to forget", names, key="w_forget_classes")
        spec_text = forget_spec_for("class", [names.index(c) for c in chosen])
    elif mode == "random":
        fraction = st.slider("Fraction of every class to forget", 0.01, 0.5,
                             value=current_spec.fraction if current_spec.kind == "random" else 0.1, step=0.01,
                             key="w_forget_fraction")
        spec_text = forget_spec_for("random", fraction=fraction)
    elif mode == "subclass":
        fine = st.selectbox("Fine class to forget (its super-class stays)", bundle.fine_names, key="w_forget_fine")
        spec_text = forget_spec_for("subclass", subclass=fine)
    else:
        from unlearn_core.embeddings import features_of, joint_embedding
        from unlearn_core.figures import embedding_scatter

        picked = st.session_state.setdefault("picked", [])
        labels = bundle.train_y.numpy()
        shown = sample_points(labels, 2000, seed=0)

        @st.cache_data(show_spinner="Embedding the original model's features ...")
        def _original_map(model_key: str, dataset: str, _model, _images) -> np.ndarray:
            return joint_embedding({"original": features_of(_model, _images)}, "pca")["original"]

        import torch

        coords = _original_map(setup.original.key, bundle.name, setup.original.model,
                               bundle.train_x[torch.as_tensor(shown)])
        mask = np.isin(shown, picked)
        fig = embedding_scatter(coords, labels[shown], shown, mask, names,
                                title="Original model's features (PCA): lasso or box-select samples",
                                selectable=True)
        event = st.plotly_chart(fig, on_select="rerun", selection_mode=("lasso", "box", "points"),
                                key="forget_map", config=_shared.chart_config("forget-map"), width="stretch")
        selected = []
        if event and event.selection and event.selection.points:
            selected = [int(p["customdata"]) for p in event.selection.points if p.get("customdata") is not None]
        cols = st.columns(3)
        if cols[0].button(f"Add {len(selected)} selected", disabled=not selected):
            st.session_state["picked"] = sorted(set(picked) | set(selected))
            st.rerun()
        if cols[1].button("Remove selected from the set", disabled=not selected):
            st.session_state["picked"] = sorted(set(picked) - set(selected))
            st.rerun()
        if cols[2].button("Clear", disabled=not picked):
            st.session_state["picked"] = []
            st.rerun()
        typed = st.text_input("…or type training indices (comma separated)", key="w_forget_typed")
        if typed.strip():
            # ASCII digits only: int() would also read "٣" as 3.
            extra = [int(v) for v in typed.replace(" ", "").split(",")
                     if v.strip().lstrip("-").isascii() and v.strip().lstrip("-").isdigit()]
            st.session_state["picked"] = sorted(set(st.session_state["picked"]) | set(extra))
        st.caption(f"{len(st.session_state['picked'])} sample(s) picked.")
        if st.session_state["picked"]:
            spec_text = forget_spec_for("indices", indices=st.session_state["picked"])
    if spec_text is not None:
        split = ForgetSpec.parse(spec_text, allow_files=False, files_root=index_root()).resolve(bundle, setup.seed)
except UnlearnError as error:
    _shared.show_error(error)
    _shared.stop()

# Hand-picked with nothing picked yet is a step, not an error; and it must not pass for a choice, so the page says
# which forget set stays in force (the sidebar and the Unlearn page repeat it) instead of keeping it silently.
st.session_state["forget_pending"] = spec_text is None
if spec_text is None:
    st.info("**Pick the samples to forget.** Choose the lasso or box tool above the map and draw around points "
            "(or click single points), then press **Add selected**; repeat to add more, or type training indices "
            "in the box. The forget set is ready as soon as one sample is picked.", icon=":material/touch_app:")
    st.warning(f"Until then the forget set stays {_shared.forget_md(st.session_state['forget'])}: Unlearn, Results "
               "and the other pages use it.", icon=":material/info:")
    _shared.stop()

if spec_text != st.session_state["forget"]:
    st.session_state["forget"] = spec_text
st.success(f"Forget set {_shared.forget_md(spec_text)}: {len(split.forget_idx):,} training samples to forget, "
           f"{len(split.retain_idx):,} remain.", icon=":material/check_circle:")

counts = split.counts_per_class(bundle.train_y.numpy())
from unlearn_core.figures import forget_counts_figure  # noqa: E402

fig = forget_counts_figure(names, np.bincount(bundle.train_y.numpy(), minlength=bundle.num_classes), counts)
st.plotly_chart(fig, width="stretch", key="forget_counts", config=_shared.chart_config("forget-counts"))

st.caption("A preview of the forget set (40 drawn at random, every class in proportion):")
scale = display_scale(bundle.image_size)
# The first indices of a random forget set all come from the start of the data set; draw across classes instead.
preview_rows = sample_points(bundle.train_y.numpy()[split.forget_idx], 40, seed=setup.seed)
preview = np.asarray(split.forget_idx)[preview_rows]
st.image(to_display(bundle.train_x[preview], scale), width=48,
         caption=[f"#{i} ({names[int(bundle.train_y[i])]})" for i in preview])
st.page_link(_shared.page("unlearn"), label="Next: run unlearning methods", icon=":material/arrow_forward:")
