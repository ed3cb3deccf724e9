"""Results page: every stored run against the original and the retrained reference."""

import numpy as np
import pandas as pd
import streamlit as st

from app_pages import _shared

st.title("Results")
_shared.explainer(
    "Each row is a model evaluated on the same data. **FA/RA/TA**: accuracy on the forget, remaining and test sets; "
    "**Acc_f/Acc_r**: test accuracy on the forgotten / remaining classes; **MIA**: how often a membership attack "
    "still calls forget samples *training members* (lower = better forgotten). Good unlearning means being close to "
    "the **retrained** model, so the `gap_` columns (distance to it) are what to compare; the best run per column is "
    "highlighted. In the per-class view, red cells in a class that was *not* forgotten are **over-unlearning**: the "
    "method damaged knowledge it should have kept.")

from unlearn_core.appstate import (GAP_COLUMNS, METRIC_COLUMNS, best_per_column, entropy_groups,  # noqa: E402
                                   load_run_model, metrics_table, over_unlearning, per_class_shift)
from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.figures import (confusion_difference, entropy_histograms, per_class_bars,  # noqa: E402
                                  per_class_heatmap)

current = _shared.choice()
visible = _shared.store()  # every run, or on a shared server this session's own
runs = visible.list(dataset=current.dataset, model=current.model, forget=current.forget)
if visible.skipped:
    st.warning(f"Skipped {len(visible.skipped)} run(s) whose stored record cannot be read "
               f"(#{', #'.join(str(i) for i in visible.skipped[:10])}).", icon=":material/warning:")
done = [r for r in runs if r["status"] == "done" and r.get("report")]
st.markdown(f"**{_shared.md(current.dataset)}** · **{current.model}** · forget {_shared.forget_md(current.forget)}: "
            f"{len(done)} finished run(s)")
unfinished = [r for r in runs if r["status"] != "done"]
if unfinished:
    with st.expander(f"{len(unfinished)} run(s) that did not finish"):
        for run in unfinished:
            st.write(f"#{run['id']} {run['method']}: **{run['status']}** {_shared.md(run.get('error') or '')}")
if not done:
    st.info("No finished runs for this choice yet. Run a method on the **Unlearn** page.")
    st.page_link(_shared.page("unlearn"), label="Go to Unlearn", icon=":material/play_circle:")
    st.stop()

table = metrics_table(done)
best = best_per_column(table)
shown_columns = ["run", *METRIC_COLUMNS, "avg_gap", *GAP_COLUMNS, "seconds", "rte"]
# Reference rows hold None where a column does not apply; numeric dtypes let the formatter show "–".
view = table[shown_columns].set_index("run").apply(pd.to_numeric, errors="coerce")


def highlight(column):
    winner = best.get(column.name)
    return ["background-color: #d4edda; font-weight: 600" if label == winner else "" for label in column.index]


st.dataframe(view.style.apply(highlight, axis=0).format(precision=2, na_rep="–"), width="stretch")
st.caption("Green: the run closest to the retrained model in that column (largest speed-up for `rte`).")

downloads = st.columns(2)
downloads[0].download_button("Download the table (CSV)",
                             data=_shared.runs_csv(done), file_name=f"unlearning_runs_{current.dataset}.csv",
                             mime="text/csv", icon=":material/download:")

shift, class_names, forgotten = per_class_shift(done)
for warning in over_unlearning(shift, forgotten):
    st.warning(f"Over-unlearning: {warning}", icon=":material/warning:")
tab_heat, tab_bars = st.tabs(["Heatmap (method × class)", "Grouped bars"])
with tab_heat:
    st.plotly_chart(per_class_heatmap(shift, forgotten), width="stretch", key="per_class_heatmap")
with tab_bars:
    st.plotly_chart(per_class_bars(shift, forgotten), width="stretch", key="per_class_bars")

st.subheader("One run in detail")
labels = {r["id"]: f"#{r['id']} {r['method']}" for r in done}
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="w_results_run")
run = next(r for r in done if r["id"] == run_id)
if run.get("checkpoint_path"):
    try:
        with open(run["checkpoint_path"], "rb") as handle:
            downloads[1].download_button(f"Download the unlearned checkpoint of run #{run_id}", data=handle.read(),
                                         file_name=f"run{run_id}_{run['method']}.pt", icon=":material/download:")
    except OSError as error:
        downloads[1].error(f"checkpoint of run #{run_id} is missing: {error}")

try:
    setup = _shared.current_setup(with_retrain=True)
    outputs = _shared.run_outputs(run_id, setup, run)
except UnlearnError as error:
    _shared.show_error(error)
    st.stop()

from unlearn_core.metrics import confusion_matrix  # noqa: E402

test_y = setup.bundle.test_y.numpy()
num_classes = setup.bundle.num_classes
original_conf = confusion_matrix(setup.outputs("original")["test"].argmax(1), test_y, num_classes)
unlearned_conf = confusion_matrix(outputs["test"].argmax(1), test_y, num_classes)
retrained_conf = confusion_matrix(setup.outputs("retrained")["test"].argmax(1), test_y, num_classes)
left, right = st.columns(2)
with left:
    st.plotly_chart(confusion_difference(unlearned_conf, original_conf, class_names,
                                         f"Confusion change: run #{run_id} − original (test set)"),
                    width="stretch", key="confusion_vs_original")
with right:
    st.plotly_chart(confusion_difference(unlearned_conf, retrained_conf, class_names,
                                         f"Confusion change: run #{run_id} − retrained"),
                    width="stretch", key="confusion_vs_retrained")

st.markdown("**Prediction entropy** (what the entropy membership attack sees): after good unlearning, forget "
            "samples look like test samples (higher entropy), not like remaining training samples.")
cols = st.columns(3)
for col, (name, model_outputs) in zip(cols, (("original", setup.outputs("original")), (f"run #{run_id}", outputs),
                                             ("retrained", setup.outputs("retrained")))):
    with col:
        st.plotly_chart(entropy_histograms(entropy_groups(model_outputs), name), width="stretch",
                        key=f"entropy_{name}")
st.caption(f"Forget-set entropy, mean: original {np.mean(entropy_groups(setup.outputs('original'))['forget']):.3f}, "
           f"run #{run_id} {np.mean(entropy_groups(outputs)['forget']):.3f}, retrained "
           f"{np.mean(entropy_groups(setup.outputs('retrained'))['forget']):.3f} nats.")
