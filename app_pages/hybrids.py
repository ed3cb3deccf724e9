"""NatMU hybrids page: forget samples, their partners, the masks and the blended hybrids, with a delta slider."""

import numpy as np
import streamlit as st

from app_pages import _shared

st.title("NatMU hybrids")
_shared.explainer(
    "NatMU does not push the model away from forget samples; it teaches it a **natural** alternative. Each forget "
    "image is blended with remaining images of the classes the model confuses it with most (its *partners*), "
    "using four tent-shaped **masks**, and each blend (*hybrid*) is labelled with the partner's class. Fine-tuning "
    "on remaining data plus these hybrids makes the forget image's features point to other classes. **delta** "
    "shifts the masks: 1 gives plain relabelling (the whole forget image, a wrong label), lower values keep less of "
    "the forget image in each hybrid. The slider redraws the blends instantly; nothing is retrained.")

from unlearn_core.errors import UnlearnError  # noqa: E402

try:
    from unlearn_core.hybrids import preview_gallery, recompute_hybrids
    from unlearn_core.methods import get_method

    natmu = get_method("natmu")
except (ImportError, UnlearnError):
    st.info("The NatMU hybrids module or the NatMU method is not available in this installation yet.")
    st.stop()

from unlearn_app.display import display_scale, to_display  # noqa: E402
from unlearn_core.figures import framed_mask  # noqa: E402

setup = _shared.current_setup(with_retrain=False)
bundle, split = setup.bundle, setup.split
names = bundle.class_names
delta_param = natmu.param("delta")
hybrids_param = natmu.param("num_hybrids")

current = _shared.choice()
natmu_runs = [r for r in _shared.store().list(dataset=current.dataset, model=current.model, forget=current.forget,
                                              method="natmu", status="done")]
galleries = {r["id"]: g for r in natmu_runs
             if (g := (_shared.run_artifacts(r["id"]) or {}).get("gallery")) is not None}
cols = st.columns(3)
source_options = ["preview"] + list(galleries)
source = cols[0].selectbox("Samples from", source_options, key="w_hyb_source",
                           format_func=lambda s: "a preview from the original model" if s == "preview"
                           else f"the gallery of run #{s}")
if source == "preview":
    count = cols[1].slider("Forget samples", 1, 8, 4, key="w_hyb_count")
    slots = cols[2].slider("Hybrids per sample", 1, 8, int(hybrids_param.default), key="w_hyb_slots")
else:
    # A run's gallery has its own size: the disabled sliders show it, not the preview's settings.
    shape = galleries[source]["partner_images"].shape
    shown_count, shown_slots = int(shape[0]), int(shape[1])
    cols[1].slider("Forget samples", 1, max(8, shown_count), shown_count, key=f"w_hyb_count_{source}",
                   disabled=True, help="Fixed by the run's gallery.")
    cols[2].slider("Hybrids per sample", 1, max(8, shown_slots), max(shown_slots, 1), key=f"w_hyb_slots_{source}",
                   disabled=True, help="Fixed by the run's gallery.")
    count, slots = shown_count, shown_slots


@st.cache_data(show_spinner="Choosing partners ...", max_entries=16)
def _preview(model_key: str, split_key: str, count: int, slots: int, seed: int, _setup):
    """Forget samples (distinct classes first), their partners and the hybrid labels, as NatMU picks them."""
    import torch

    from unlearn_app.display import predictions

    def probs_of(images):
        return predictions(_setup.original.model, torch.from_numpy(images), _setup.device)[1]

    return preview_gallery(_setup.bundle.train_x.numpy(), _setup.bundle.train_y.numpy(), _setup.split.forget_idx,
                           _setup.split.retain_idx, probs_of, count, slots,
                           forgotten_classes=_setup.split.forgotten_classes, seed=seed)

if source == "preview":
    try:
        gallery = _preview(setup.original.key, split.key(), int(count), int(slots), setup.seed, setup)
    except (UnlearnError, ValueError) as error:
        st.error(str(error))
        st.stop()
    default_delta = float(delta_param.default)
else:
    gallery = galleries[source]
    default_delta = float(gallery.get("delta", delta_param.default))

if gallery["partner_images"].shape[1] == 0:
    st.error("No partner class is available: every other class is forgotten or has no remaining sample.")
    st.stop()
low = delta_param.low if delta_param.low is not None else -0.5
high = delta_param.high if delta_param.high is not None else 1.0


# The delta slider redraws only the masks and the blends below it (a fragment), not the page above.
@st.fragment
def delta_view() -> None:
    key = f"w_delta_{source}"
    if (linked := _shared.url_view("delta")) is not None:  # a link's delta (checked in unlearn_app.urlstate)
        st.session_state[key] = float(np.clip(linked, low, high))
    delta = st.slider("delta (mask shift)", float(low), float(high),
                      value=None if key in st.session_state else float(np.clip(default_delta, low, high)),
                      step=0.005, key=key, help=delta_param.help)
    _shared.set_view("delta", float(delta))
    _shared.sync_url()  # a fragment rerun ends here, not in app.py: the address bar follows the slider
    masks, hybrids = recompute_hybrids(gallery["forget_images"], gallery["partner_images"], delta)

    scale = display_scale(bundle.image_size, 64)


    st.markdown(f"**Masks at delta = {delta:+.3f}** (white = the forget image's weight; mean weights "
                + ", ".join(f"{m.mean():.2f}" for m in masks) + ")")
    st.image([framed_mask(m, scale) for m in masks], width=68, caption=[f"mask {i}" for i in range(len(masks))])

    slots_shown = gallery["partner_images"].shape[1]
    for i in range(len(gallery["forget_images"])):
        st.divider()
        true_label = names[int(gallery["forget_labels"][i])]
        probs = np.asarray(gallery["original_probs"][i])
        row = st.columns([1.3] + [1] * slots_shown)
        with row[0]:
            st.image(to_display(gallery["forget_images"][i:i + 1], scale)[0], width=64)
            st.caption(f"forget #{int(gallery['forget_index'][i])}  \ntrue **{true_label}**, model says "
                       f"{names[int(probs.argmax())]} ({probs.max() * 100:.0f} %)")
        for k in range(slots_shown):
            with row[k + 1]:
                label = names[int(gallery["hybrid_labels"][i][k])]
                pair = to_display(np.stack([gallery["partner_images"][i][k], hybrids[i][k]]), scale)
                st.image(pair, width=56, caption=["partner", f"→ {label}"])
    st.caption("Each column: the partner (a remaining image of the class the model confuses the forget image with) and "
               "the hybrid with its new label; hybrid k uses mask k mod 4.")


delta_view()
