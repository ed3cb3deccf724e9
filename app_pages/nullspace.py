"""Null space page: UNSC's retained-space spectrum per layer, with a live eps slider."""

import time

import numpy as np
import streamlit as st

from app_pages import _shared

st.title("Null space")
_shared.explainer(
    "UNSC changes the model only in directions the **remaining** data does not use. For every layer, the inputs "
    "it receives on remaining data are collected into a Gram matrix; its eigenvalues (the squared singular values "
    "S²) say how much energy each input direction carries. **eps** is the share of that energy to protect: the "
    "smallest number of top directions (the *rank*) that holds eps of the energy spans the *retained space*, and "
    "the rest (input dimension − rank) is the **null space** where unlearning updates may go. Moving the slider "
    "re-thresholds the stored spectrum; nothing is recomputed. The last chart shows how much of the forget set's "
    "gradient lies in the retained space, i.e. how much UNSC's projection removes: the more it removes, the "
    "less the update can disturb remaining data, but the less it can push the forget samples.")

from unlearn_core.errors import UnlearnError  # noqa: E402

try:
    from unlearn_core.methods import get_method
    from unlearn_core.nullspace import build_retained_space, sample_per_class

    unsc = get_method("unsc")
except (ImportError, UnlearnError):
    st.info("The null-space module or the UNSC method is not available in this installation yet.")
    st.stop()

from unlearn_app.urlstate import EPS_RANGE  # noqa: E402
from unlearn_core.methods.unsc import forget_gradient_shares  # noqa: E402
from unlearn_core.figures import normalised_spectrum_figure  # noqa: E402
from unlearn_core.figures.vega import energy_chart, rank_chart, removed_chart  # noqa: E402

setup = _shared.current_setup(with_retrain=False)
default_eps = float(unsc.param("eps").default)
default_samples = int(unsc.param("samples_per_class").default)


@st.cache_resource(show_spinner="Building the retained space (Gram matrices, once per model and forget set) ...",
                   max_entries=8)
def _space(data_dir: str, model_key: str, split_key: str, per_class: int, _setup):
    import torch

    from unlearn_core.methods.unsc import pseudo_labels

    bundle, split = _setup.bundle, _setup.split
    chosen = sample_per_class(bundle.train_y.numpy(), np.asarray(split.retain_idx), per_class, _setup.seed)
    indices = np.sort(np.concatenate(list(chosen.values())))
    model = _setup.original.model
    space = build_retained_space(model, bundle.train_x[torch.as_tensor(indices)], default_eps, _setup.device)
    forget_x = bundle.train_x[torch.as_tensor(split.forget_idx)]
    forget_y = bundle.train_y[torch.as_tensor(split.forget_idx)]
    targets = pseudo_labels(model, forget_x, forget_y, tuple(split.forgotten_classes), _setup.device)
    shares = forget_gradient_shares(model, space, forget_x, targets, _setup.device)
    return space, shares


try:
    space, shares = _space(_shared._data_dir(), setup.original.key, setup.split.key(), default_samples, setup)
except UnlearnError as error:
    st.error(str(error))
    st.stop()


names = list(space.layers)
spectra = [(n, space.layers[n].normalized_spectrum()) for n in names]


# One widget redraws this part only (a fragment): the slider rerun skips the page above it, and the
# browser gets the new metrics and three charts, nothing else.
@st.fragment
def eps_view() -> None:
    started = time.perf_counter()
    if (linked := _shared.url_view("eps")) is not None:  # a link's eps (checked in unlearn_app.urlstate)
        st.session_state["w_eps"] = float(linked)
    # A value set through session state must not meet a second default (Streamlit warns on the page).
    eps = st.slider("eps (share of the remaining data's energy to protect)", *EPS_RANGE,
                    value=None if "w_eps" in st.session_state else default_eps, step=0.0005, format="%.4f",
                    key="w_eps")
    _shared.set_view("eps", float(eps))
    _shared.sync_url()  # a fragment rerun ends here, not in app.py: the address bar follows the slider
    ranks = space.ranks(eps)
    dims = [space.layers[n].input_dim for n in names]
    cols = st.columns(len(names))
    for col, name, dim in zip(cols, names, dims):
        # No delta: an arrow would suggest a change over time, and there is none, only a split of the input dimension.
        col.metric(f"{name}: null space", f"{dim - ranks[name]} of {dim}",
                   help=f"{name}'s input has {dim} dimensions; at this eps the remaining data's energy needs "
                        f"{ranks[name]} of them (the rank), so UNSC may change the layer along the other "
                        f"{dim - ranks[name]}.")
        col.caption(f"rank {ranks[name]} (retained)")


    def describe_layer(module) -> str:
        """What a layer's name stands for and what its 'input dimension' counts."""
        from torch import nn

        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            return (f"convolution, {module.in_channels} → {module.out_channels} channels, {kh}×{kw} kernel: "
                    f"input dimension {module.in_channels}·{kh}·{kw} = {module.in_channels * kh * kw} "
                    f"(one image patch)")
        return (f"fully connected, {module.in_features} → {module.out_features}: input dimension "
                f"{module.in_features} (the previous layer's outputs)")


    from unlearn_core.nullspace import tracked_layers  # noqa: E402

    modules = tracked_layers(setup.original.model)
    with st.expander("What the layer names mean"):
        st.markdown("Names are the layers' names inside the model (PyTorch module paths), in the order the data "
                    "passes through them. UNSC constrains every convolution and fully connected layer:\n\n"
                    + "\n".join(f"- **{n}**: {describe_layer(modules[n])}" for n in names if n in modules))
    # Vega-Lite, not plotly: three plotly figures took about 290 ms per key press to redraw in Chromium, these
    # about 110 ms (docs/APP.md).
    st.markdown("**Cumulative energy per layer and the eps threshold** (a diamond marks the rank eps picks)")
    _shared.vega_chart(energy_chart(spectra, eps, ranks), "energy", key="ns_energy", method="unsc")
    left, right = st.columns(2)
    with left:
        st.markdown("**Rank (retained) vs input dimension per layer**")
        _shared.vega_chart(rank_chart(names, [ranks[n] for n in names], dims), "ranks", key="ns_ranks",
                           method="unsc")
    with right:
        removed = [float(shares[n][min(ranks[n], len(shares[n]) - 1)]) * 100 if n in shares else float("nan")
                   for n in names]
        st.markdown("**Share of the forget-set gradient the projection removes** (at this eps)")
        _shared.vega_chart(removed_chart(names, removed), "gradient-removed", key="ns_removed", method="unsc")
        st.caption("The removed share lies in directions the remaining data uses: an update there would change the "
                   "remaining classes' outputs, so UNSC drops it, and that is what protects them. The rest "
                   "(100 % minus the bar) is all UNSC can still use to push the forget samples away; near 100 % "
                   "removed, a layer barely changes at all. A higher eps protects more and leaves less.")
    st.caption(f"Built from {space.samples:,} remaining samples ({default_samples} per class) in {space.seconds:.1f} s; "
               f"this redraw took {(time.perf_counter() - started) * 1000:.0f} ms.")


eps_view()
st.markdown("**Normalised spectrum per layer** Sᵢ² / ΣS² (log-log; it does not depend on eps)")
st.plotly_chart(normalised_spectrum_figure(spectra), width="stretch", key="ns_spectrum",
                config=_shared.chart_config("spectrum", "unsc"))


# -- UNSC beside its training-free rivals ----------------------------------------------------------------------------
st.subheader("UNSC beside its training-free rivals")
st.markdown(
    "UNSC **keeps** the remaining data's subspace and fine-tunes in the rest. Two published methods instead "
    "**remove** a subspace at once, with no training: **SVD forgetting** (Kodge et al., TMLR 2024) projects every "
    "layer's weights away from the class-discriminatory directions (forget-data directions the remaining data "
    "does not use), and **ESC** (CVPR 2025) erases the forget samples' principal directions in the features "
    "the head reads. Per layer: the dimension each one keeps or removes, how much of each removed subspace lies "
    "*inside* UNSC's retained space (what UNSC would protect), and how much of the remaining and forget data's "
    "input energy the removed directions carry (removing remaining energy is what over-unlearns).")


@st.cache_resource(show_spinner="Recording the remaining and forget inputs of every layer (once per model and "
                                "forget set) ...", max_entries=4)
def _comparison(data_dir: str, model_key: str, split_key: str, per_class: int, _setup):
    import torch

    from unlearn_core.subspaces import build_comparison

    bundle, split = _setup.bundle, _setup.split
    chosen = sample_per_class(bundle.train_y.numpy(), np.asarray(split.retain_idx), per_class, _setup.seed)
    indices = np.sort(np.concatenate(list(chosen.values())))
    return build_comparison(_setup.original.model, bundle.train_x[torch.as_tensor(indices)],
                            bundle.train_x[torch.as_tensor(split.forget_idx)], _setup.device)


try:
    comparison = _comparison(_shared._data_dir(), setup.original.key, setup.split.key(), default_samples, setup)
except UnlearnError as error:
    st.error(str(error))
    st.stop()


@st.fragment
def rivals_view() -> None:
    from unlearn_core.figures import subspace_overlap_bars, subspace_rank_bars

    svd_method, esc_method = get_method("svd_forget"), get_method("esc")
    left, middle, right = st.columns(3)
    eps = left.slider("UNSC eps", 0.80, 1.0, value=float(st.session_state.get("w_eps", default_eps)), step=0.0005,
                      format="%.4f", key="w_rivals_eps")
    tau = middle.slider("SVD forgetting: strength threshold", 0.05, 0.95, value=0.5, step=0.05, key="w_rivals_tau",
                        help="A direction counts as removed when the projection removes at least this share of a "
                             "unit input along it (its singular value).")
    p = right.slider("ESC: p (erased directions)", 0.1, 5.0, value=float(esc_method.param("p").default), step=0.1,
                     key="w_rivals_p", help=esc_method.param("p").help)
    rows = comparison.rows(eps=eps, alpha_f=float(svd_method.param("alpha_f").default),
                           alpha_r=float(svd_method.param("alpha_r").default), tau=tau, esc_p=p)
    a, b = st.columns(2)
    with a:
        st.markdown("**Kept or removed: dimension per layer**")
        st.plotly_chart(subspace_rank_bars(rows), width="stretch", key="ns_rival_ranks",
                        config=_shared.chart_config("subspace-ranks"))
    with b:
        st.markdown("**Overlap with UNSC's retained space, and the data energy removed**")
        st.plotly_chart(subspace_overlap_bars(rows), width="stretch", key="ns_rival_overlap",
                        config=_shared.chart_config("subspace-overlap"))
    angles = {row["layer"]: row.get("svd_angles_deg") or [] for row in rows}
    st.caption("Smallest principal angle between the SVD method's removed directions and UNSC's retained space, "
               "per layer: " + ", ".join(f"{name} {values[0]:.0f}°" if values else f"{name} –"
                                         for name, values in angles.items())
               + ". 0° means a direction UNSC protects is one the SVD method removes.")


rivals_view()
