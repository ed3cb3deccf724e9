"""Unlearn page: pick methods, set their declared hyperparameters, run them in the worker with live progress."""

import streamlit as st

from app_pages import _shared

st.title("Unlearn")
_shared.explainer(
    "Each **method** takes the original model and the forget set and returns an unlearned model. The widgets below "
    "come from each method's declared hyperparameters (hover the ? for what each does). Runs go to one background "
    "worker, one after another, with live progress and a cancel button, and every finished run is stored: a reload "
    "or a restart of the app loses nothing. The **retrained** reference is trained once per forget set and cached.")

from unlearn_app.urlstate import forget_label  # noqa: E402
from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.evidence import KINDS as EVIDENCE_KINDS  # noqa: E402
from unlearn_core.methods import get_method, method_names  # noqa: E402

setup = _shared.current_setup(with_retrain=False)
current = _shared.choice()
size = "" if forget_label(current.forget) != current.forget else f" ({len(setup.split.forget_idx):,} samples)"
st.markdown(f"**{_shared.md(current.dataset)}** · **{current.model}** · forget {_shared.forget_md(current.forget)}"
            f"{size}" + (" · uploaded original" if current.original else ""))
if st.session_state.get("forget_pending"):
    st.warning("The Forget set page is on hand-picked samples with none picked yet: runs started here use the "
               "forget set above.", icon=":material/info:")

EVIDENCE_LABELS = {"probe": "feature probe", "relearn": "relearn time", "curves": "unlearning curves",
                   "cka": "CKA per layer", "relearn_retain": "relearn from retained data"}
names = method_names()
# The chosen methods and their parameters come back on every visit (Streamlit forgets widgets of other pages).
_shared.restore_widgets("unlearn")
if "w_methods" not in st.session_state:
    st.session_state["w_methods"] = ["unsc"] if "unsc" in names else names[:1]
chosen = st.multiselect("Methods", names, key="w_methods",
                        format_func=lambda n: f"{get_method(n).title or n}",
                        help="Every registered method appears here as soon as its module exists.")


def widget_for(method: str, param):
    """One input widget drawn from a declared Param; the key keeps values per method."""
    key = f"p_{method}_{param.name}"
    label = param.name
    param_keys.append(key)
    if param.type is bool:
        default = bool(param.default)
    elif param.type is int:
        default = int(param.default)
    elif param.type is float:
        default = float(param.default)
    else:
        default = str(param.default)
    if key not in st.session_state:  # set once here, so a remembered value never meets a second default
        st.session_state[key] = default
    if param.type is bool:
        return st.checkbox(label, help=param.help, key=key)
    if param.type is int:
        return st.number_input(label, step=1, help=param.help, key=key,
                               min_value=int(param.low) if param.low is not None else None,
                               max_value=int(param.high) if param.high is not None else None)
    if param.type is float:
        step = abs(param.default) / 10 if param.log and param.default else 0.01
        return st.number_input(label, help=param.help, key=key, format="%g", step=step or 0.01,
                               min_value=float(param.low) if param.low is not None else None,
                               max_value=float(param.high) if param.high is not None else None)
    if param.choices:
        options = [str(c) for c in param.choices]
        if st.session_state[key] not in options:
            st.session_state[key] = str(param.default)
        return st.selectbox(label, options, help=param.help, key=key)
    return st.text_input(label, help=param.help, key=key)


param_keys: list[str] = []


if chosen:
    with st.form("method_params"):
        tabs = st.tabs([get_method(n).title or n for n in chosen])
        values = {}
        for tab, method in zip(tabs, chosen):
            cls = get_method(method)
            with tab:
                st.caption(cls.summary)
                cols = st.columns(3)
                values[method] = {}
                for i, param in enumerate(cls.params):
                    with cols[i % 3]:
                        values[method][param.name] = widget_for(method, param)
        # Deeper evidence costs time per run (docs/EVIDENCE.md: the probe and relearn read three models), so it
        # is asked for, never on by default; Results draws what each run recorded.
        evidence = st.multiselect(
            "Evidence", EVIDENCE_KINDS, key="w_evidence", format_func=EVIDENCE_LABELS.get,
            help="Record deeper evidence of forgetting with each run: a linear/k-NN probe on the frozen features, "
                 "how many fine-tuning steps relearn the forget set, Acc_f/Acc_r along the method's steps, linear "
                 "CKA per layer against the original and the retrained model, and how much forget accuracy "
                 "fine-tuning on retained data alone brings back. "
                 "Shown in Results under the run. Adds seconds per run.")
        submitted = st.form_submit_button(f"Run {len(chosen)} method(s)", type="primary",
                                          icon=":material/play_arrow:")
    _shared.keep_widgets("unlearn", ["w_methods", "w_evidence", *param_keys])
    if submitted:
        request = current
        try:
            resolved = {m: get_method(m).resolve_params(values[m]) for m in chosen}
        except UnlearnError as error:
            _shared.show_error(error)
        else:
            from unlearn_core.cost import run_cost
            from unlearn_core.forget import ForgetSpec, index_root

            try:
                # What the batch trains: its runs, and the original and retrained model while they are not cached.
                spec = ForgetSpec.parse(request.forget, allow_files=False, files_root=index_root())
                models = run_cost(request.dataset, request.model, spec, request.seed, method_runs=0)
                if request.original:
                    models = type(models)(0, 0, models.references)
                # All or nothing: a half-queued batch would leave the user guessing which methods run.
                _shared.runner().check(_shared.session_owner(), len(chosen) + models.trainings, jobs=len(chosen))
            except UnlearnError as error:
                _shared.show_error(error)
            else:
                def provider(progress, cancel, request=request):
                    return _shared.setups().get(request, progress, cancel, with_retrain=True)

                maps = _shared.run_maps_hook()  # each run's map for Embeddings, computed in its job
                for number, method in enumerate(chosen):
                    _shared.runner().submit_run(
                        provider, method, resolved[method], store=_shared.store(),
                        label=f"{method} on {request.dataset}/{forget_label(request.forget)}",
                        meta={"forget": request.forget, "dataset": request.dataset, "owner": _shared.session_owner(),
                              "trainings": 1 + (models.trainings if number == 0 else 0)},
                        # Runs of an uploaded original are shown only next to that upload, never as the trained one's.
                        extra_config={"original_upload": request.original} if request.original else None,
                        evidence=",".join(evidence) or None, after=maps)
                _shared.warm_umap_in_background()  # numba compiles while the runs train, so the map is quick later
                st.toast(f"Queued {len(chosen)} run(s).")
                st.rerun()
else:
    _shared.keep_widgets("unlearn", ["w_methods"])
    st.info("Choose at least one method.")

_shared.jobs_panel("run", title="Runs")
_shared.wait_note()
if any(j.snapshot().status == "done" for j in _shared.runner().jobs("run", _shared.session_owner())):
    st.page_link(_shared.page("results"), label="See the results", icon=":material/arrow_forward:")
