"""Unlearn page: pick methods, set their declared hyperparameters, run them in the worker with live progress."""

import streamlit as st

from app_pages import _shared

st.title("Unlearn")
_shared.explainer(
    "Each **method** takes the original model and the forget set and returns an unlearned model. The widgets below "
    "come from each method's declared hyperparameters (hover the ? for what each does). Runs go to one background "
    "worker, one after another, with live progress and a cancel button, and every finished run is stored: a reload "
    "or a restart of the app loses nothing. The **retrained** reference is trained once per forget set and cached.")

from unlearn_app.forms import field_error, field_text, read_fields  # noqa: E402
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
    """One input widget drawn from a declared Param; the key keeps values per method.

    Numbers are text fields read by :func:`unlearn_app.forms.field_error` (a browser number field turns "0,5"
    into "05" and refuses out-of-range values without a word); what is wrong shows under the field.
    """
    key = f"p_{method}_{param.name}"
    label = param.name
    param_keys.append(key)
    if param.type is bool:
        default = bool(param.default)
    elif param.type in (int, float):
        default = field_text(param, param.default)
    else:
        default = str(param.default)
    if key not in st.session_state:  # set once here, so a remembered value never meets a second default
        st.session_state[key] = default
    if param.type is bool:
        return st.checkbox(label, help=param.help, key=key)
    if param.choices:
        options = [str(c) for c in param.choices]
        if st.session_state[key] not in options:
            st.session_state[key] = str(param.default)
        return st.selectbox(label, options, help=param.help, key=key)
    if param.type in (int, float) and not isinstance(st.session_state[key], str):
        st.session_state[key] = field_text(param, st.session_state[key])  # a number kept from an older session
    bounds = ""
    if param.type in (int, float) and (param.low is not None or param.high is not None):
        bounds = (f" Allowed: {'-∞' if param.low is None else f'{param.low:g}'} to "
                  f"{'∞' if param.high is None else f'{param.high:g}'}.")
    text = st.text_input(label, help=(param.help or "") + bounds, key=key)
    problem = field_error(param, text)
    if problem:
        st.markdown(f":red[{_shared.md(problem)}]")
    return text


param_keys: list[str] = []


if chosen:
    # Enter in a field does not submit: only the Run button queues runs.
    with st.form("method_params", enter_to_submit=False):
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
        if (linked := _shared.url_view("evidence")) is not None:  # a link's evidence kinds, checked
            st.session_state["w_evidence"] = list(linked)
        evidence = st.multiselect(
            "Evidence", EVIDENCE_KINDS, key="w_evidence", format_func=EVIDENCE_LABELS.get,
            help="Record deeper evidence of forgetting with each run: a linear/k-NN probe on the frozen features, "
                 "how many fine-tuning steps relearn the forget set, Acc_f/Acc_r along the method's steps, linear "
                 "CKA per layer against the original and the retrained model, and how much forget accuracy "
                 "fine-tuning on retained data alone brings back. "
                 "Shown in Results under the run. Adds seconds per run.")
        _shared.set_view("evidence", tuple(evidence))
        submitted = st.form_submit_button(f"Run {len(chosen)} method(s)", type="primary",
                                          icon=":material/play_arrow:")
    _shared.keep_widgets("unlearn", ["w_methods", "w_evidence", *param_keys])
    if submitted:
        request = current
        problems = {}
        for m in chosen:
            problems.update({f"{name} ({get_method(m).title or m})": line
                             for name, line in read_fields(get_method(m).params, values[m])[1].items()})
        try:
            if problems:
                raise UnlearnError(f"Nothing was queued: {len(problems)} field(s) to fix first: "
                                   + "; ".join(problems) + ". See the message under each field.")
            resolved = {m: get_method(m).resolve_params(values[m]) for m in chosen}
            queued = _shared.queue_runs([(request, m, resolved[m]) for m in chosen], evidence=evidence)
        except UnlearnError as error:
            _shared.show_error(error)
        else:
            st.toast(f"Queued {queued} run(s).")
            st.rerun()
else:
    _shared.keep_widgets("unlearn", ["w_methods"])
    st.info("Choose at least one method.")

_shared.jobs_panel("run", title="Runs")
_shared.wait_note()
if any(j.snapshot().status == "done" for j in _shared.runner().jobs("run", _shared.session_owner())):
    st.page_link(_shared.page("results"), label="See the results", icon=":material/arrow_forward:")
