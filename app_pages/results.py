"""Results page: every stored run against the original and the retrained reference."""

import numpy as np
import streamlit as st

from app_pages import _shared

st.title("Results")
_shared.explainer(
    "Each row is a model evaluated on the same data. **FA/RA/TA**: accuracy on the forget, remaining and test sets; "
    "**Acc_f/Acc_r**: test accuracy on the forgotten / remaining classes. Two membership attacks look at the forget "
    "samples: **MIA-SVC** counts how many it calls *non-members* (higher = more forgotten), **MIA-entropy** how many "
    "it calls *members* (lower = more forgotten). Good unlearning means being close to the **retrained** model in "
    "every column, so the *Gaps* tab (distance to it) is what to compare. Hover a column's name for its meaning. "
    "Green marks the best run in a column only when at least two runs compete and the difference is larger than "
    "the sampling noise of that many samples (every run within the noise of the best is green); the speed-up "
    "goes only to runs that forgot. In the per-class view, red cells in a class that was *not* forgotten "
    "are accuracy lost: where the run is also below the retrained model there, the method damaged knowledge it "
    "should have kept (**over-unlearning**).")

from unlearn_app.display import entropy_groups  # noqa: E402
from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.figures import (change_limit, confusion_change, confusion_difference,  # noqa: E402
                                  entropy_histograms, entropy_y_max, per_class_bars, per_class_heatmap)
from unlearn_app.urlstate import forget_label  # noqa: E402
from unlearn_core.slides import figure_filename  # noqa: E402
from unlearn_core.tables import (DISPLAY, FORGOT_SHARE, GAP_COLUMNS, HELP, METRIC_COLUMNS,  # noqa: E402
                                 NOISE_LEGEND, NOT_CANDIDATES, WIDTHS, as_report, best_cells, best_over_seeds,
                                 display_frame, ensemble_band, interval_text, judged_table, missing_seed_runs,
                                 over_unlearning_summary, per_class_shift, run_sample_sizes, seed_groups, shown_csv)

current = _shared.choice()
visible = _shared.store()  # every run, or on a shared server this session's own
runs = visible.list(dataset=current.dataset, model=current.model, forget=current.forget)
if visible.skipped:
    st.warning(f"Skipped {len(visible.skipped)} run(s) whose stored record cannot be read "
               f"(#{', #'.join(str(i) for i in visible.skipped[:10])}).", icon=":material/warning:")
done = [r for r in runs if r["status"] == "done" and r.get("report")]
reports = {r["id"]: as_report(r["report"]) for r in done}  # the stored JSON, read once as typed reports
all_done = done
# A click on the Sweeps page opens one cell's runs here: only those, until the person asks for every run.
focus = st.session_state.get("results_focus")
if focus:
    chosen_ids = set(focus.get("run_ids") or [])
    focused = [r for r in done if r["id"] in chosen_ids]
    if focused:
        done = focused
        cols = st.columns([4, 1])
        cols[0].info(f"Showing the {len(focused)} run(s) of sweep cell {_shared.code(focus.get('label', ''))} "
                     f"(sweep {_shared.code(focus.get('tag', ''))}).", icon=":material/filter_alt:")
        if cols[1].button("Show every run", key="w_results_unfocus"):
            st.session_state.pop("results_focus", None)
            st.rerun()
    else:
        st.session_state.pop("results_focus", None)  # its runs were deleted or belong to another choice
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



@st.cache_data(show_spinner=False, max_entries=8)
def test_counts_of(dataset: str) -> list[int] | None:
    """Test images per class of ``dataset`` (the samples behind TA, Acc_f and Acc_r), or None if it cannot load."""
    from unlearn_core.data import load_dataset

    try:
        bundle = load_dataset(dataset)
    except (UnlearnError, OSError):
        return None
    return np.bincount(bundle.test_y.numpy(), minlength=bundle.num_classes).tolist()


# Samples behind each column: with one seed a difference counts only beyond their binomial noise (tables.noise).
sizes = run_sample_sizes(done, test_counts_of(current.dataset))
table = judged_table(done, sizes)
best = best_cells(table, sizes, reports[done[0]["id"]].avg_gap_keys or None)
HIGHLIGHT = "background-color: #d4edda; font-weight: 600"


def show_table(columns: list[str], key: str) -> None:
    """One table: display names with their direction, a tooltip per column, "–" for missing, green = best."""
    frame = display_frame(table, columns)
    winners = {DISPLAY.get(c, c): best[c] for c in columns if c in best}
    labels = list(table["run"])  # the frame's rows in the same order (its index may carry the ⚠ badge)

    def highlight(column):
        won = winners.get(column.name, set())
        return [HIGHLIGHT if label in won else "" for label in labels]

    styled = frame.style.apply(highlight, axis=0)
    config = {"run": st.column_config.Column("run", width=WIDTHS["run"], help="#id and method; the first two rows "
                                                                             "are the references every run is "
                                                                             "compared with.")}
    for column in columns:
        config[DISPLAY.get(column, column)] = st.column_config.Column(
            DISPLAY.get(column, column), help=HELP.get(column), width=WIDTHS.get(column),
            alignment="left" if column == "scope" else "right")
    st.dataframe(styled, column_config=config, key=key)


outside = table[~table["in_scope"].astype(bool)]
over_seeds = seed_groups(done, [*METRIC_COLUMNS, "avg_gap", "seconds"])
tab_names = ["Metrics", "Gaps to the retrained model"] + (["Over seeds (mean ± 95 %)"] if len(over_seeds) else [])
tab_metrics, tab_gaps, *tab_seeds = st.tabs(tab_names)
with tab_metrics:
    # Out-of-scope runs carry a ⚠ badge on their label here (a column would not fit 1500 px); the gaps tab,
    # which is narrower, also has a scope column.
    show_table([*METRIC_COLUMNS, "avg_gap", "seconds", "rte"], "results_metrics")
with tab_gaps:
    show_table([*(["scope"] if len(outside) else []), *GAP_COLUMNS, "avg_gap"], "results_gaps")
if tab_seeds:
    with tab_seeds[0]:
        # Runs of one method with the same parameters and different seeds: one row each, mean ± the half-width
        # of a 95 % Student-t interval (what a sweep reports per cell). Single runs stay in the tables above.
        rows = []
        gap_of = {**{m: f"gap_{m}" for m in METRIC_COLUMNS}, "avg_gap": "avg_gap"}
        seed_best = best_over_seeds(over_seeds, list(gap_of.values()))
        for _, group in over_seeds.iterrows():
            row = {"method": group["method"], "params": group["params"], "seeds": ", ".join(map(str, group["seeds"])),
                   "n": int(group["n"])}
            for column in [*METRIC_COLUMNS, "avg_gap", "seconds"]:
                row[DISPLAY.get(column, column)] = interval_text(group[column], group[f"{column}±"])
            rows.append(row)
        import pandas as pd

        seed_frame = pd.DataFrame(rows)

        def seed_highlight(column):
            key = next((k for k in gap_of if DISPLAY.get(k, k) == column.name), None)
            won = seed_best.get(gap_of[key], set()) if key else set()
            return [HIGHLIGHT if i in won else "" for i in range(len(column))]

        st.dataframe(seed_frame.style.apply(seed_highlight, axis=0), key="results_seeds", column_config={
            "params": st.column_config.Column("params", help="The method's resolved parameters (JSON)."),
            **{DISPLAY.get(c, c): st.column_config.Column(DISPLAY.get(c, c), help=HELP.get(c))
               for c in [*METRIC_COLUMNS, "avg_gap", "seconds"]}})
        st.caption("Mean over the seeds ± the half-width of a two-sided 95 % Student-t interval of the mean "
                   "(wide with few seeds: with 2 seeds the factor is 12.7 × the standard error). Green: the group "
                   "closest to the retrained model (mean gap over the seeds, each seed against its own retrained "
                   "model) and every group whose 95 % interval of that gap overlaps the best one's.")
if len(outside):
    reasons = {run_id: report.in_scope_reason for run_id, report in reports.items()}
    st.caption("⚠ Out of its method's scope (shown, never highlighted as best): "
               + "; ".join(f"{label}" + (f" ({reasons.get(int(rid))})" if reasons.get(int(rid)) else "")
                           for label, rid in zip(outside["run"], outside["run_id"])) + ".")
competing = int(((~table["method"].isin(NOT_CANDIDATES)) & table["in_scope"]).sum())
if competing < 2:
    st.caption("No cell is highlighted: a best run needs at least two in-scope runs to compare.")
else:
    st.caption(f"Green: the in-scope run(s) closest to the retrained model in that column; tied runs are all green, "
               f"and a column where all runs tie has none. The speed-up award goes only to runs that forgot (FA, "
               f"and Acc_f for classes, closed at least {FORGOT_SHARE:.0%} of the original's distance to the "
               f"retrained model, or came within its noise). Out-of-scope runs are never highlighted. Noise: "
               f"{NOISE_LEGEND}" + (f" (forget {sizes['FA']}, retained {sizes['RA']}"
                                    + (f", test {sizes['TA']}" if sizes.get("TA") else "") + " samples)."
                                    if sizes.get("FA") and sizes.get("RA") else "."))
repeat = missing_seed_runs(all_done)
if repeat and not current.original:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.caption(f"{len({(m, str(p)) for m, p, _ in repeat})} method setting(s) here have one seed: one seed "
                   "cannot tell small differences apart.")
        clicked = st.button("Run 3 seeds", icon=":material/repeat:", key="w_results_seeds",
                            help="Queue the same runs (method and parameters) with the next two seeds; each seed "
                                 "trains its own original and retrained model. Shown in the 'Over seeds' tab when "
                                 "done.")
    if clicked:
        from dataclasses import replace as replaced

        try:
            queued = _shared.queue_runs([(replaced(current, seed=seed), method, params)
                                         for method, params, seed in repeat])
        except UnlearnError as error:
            _shared.show_error(error)
        else:
            st.success(f"Queued {queued} run(s): seeds " + ", ".join(sorted({str(seed) for _, _, seed in repeat}))
                       + " of the single-seed runs. Their progress is on the Unlearn page.", icon=":material/check:")

downloads = st.columns(3)
downloads[0].download_button("Download the table (CSV)",
                             data=shown_csv(table, [*METRIC_COLUMNS, "avg_gap", "seconds", "rte",
                                                    *(["scope"] if len(outside) else []), *GAP_COLUMNS]),
                             file_name=f"unlearning_runs_{current.dataset}.csv", mime="text/csv",
                             icon=":material/download:",
                             help="The metrics and the gaps as the tables above show them (every stored column: "
                                  "python -m unlearn_core runs export).")
_shared.report_button(downloads[2], done, ("runs", ",".join(str(r["id"]) for r in sorted(done, key=lambda r: r["id"]))),
                      figure_filename("report", dataset=current.dataset, forget=forget_label(current.forget)) + ".html",
                      key="w_results_report")

try:
    setup = _shared.current_setup(with_retrain=True)
except UnlearnError as error:
    st.error(str(error))
    st.stop()

shift, class_names, forgotten = per_class_shift(done)
test_counts = np.bincount(setup.bundle.test_y.numpy(), minlength=len(class_names))
retrained_per_class = reports[done[0]["id"]].retrained.per_class_test if reports[done[0]["id"]].retrained else None
damage, skipped = over_unlearning_summary(shift, forgotten, test_counts, reference_accuracy=retrained_per_class
                                          if retrained_per_class and len(retrained_per_class) == len(test_counts)
                                          else None)
if damage:
    with st.expander(f"⚠ Over-unlearning in {len(damage)} run(s): retained classes below the retrained model",
                     expanded=False):
        for line in damage:
            st.markdown(f"- {line}")
        st.caption("Judged against the retrained model's accuracy per class (more than 2 points, more than the 95 % "
                   "Wilson margin of that accuracy on the class's test images, and at least 3 test images below "
                   "it)." + (f" Not judged (under 20 test images): {', '.join(skipped)}."
                             if skipped else ""))
tab_heat, tab_bars = st.tabs(["Heatmap (method × class)", "Grouped bars"])
with tab_heat:
    st.plotly_chart(per_class_heatmap(shift, forgotten), width="stretch", key="per_class_heatmap",
                    config=_shared.chart_config("per-class-heatmap"))
with tab_bars:
    original_per_class = reports[done[0]["id"]].original.per_class_test
    band = ensemble_band(all_done, original_per_class)
    st.plotly_chart(per_class_bars(shift, forgotten, band), width="stretch", key="per_class_bars",
                    config=_shared.chart_config("per-class-bars"))
    if band is not None:
        st.caption(f"Grey band: the spread of {band['k']} retrained models (mean ± 2 standard deviations of "
                   f"their change per class); a bar inside it is within what retraining itself varies by.")

st.subheader("One run in detail")
labels = {r["id"]: f"#{r['id']} {r['method']}" + (" · evidence" if reports[r["id"]].evidence else "")
          for r in done}
# A focus from Sweeps may also leave the old choice out of the list: it is forgotten then.
_shared.apply_url_choice("run", "w_results_run", labels, "it is not a finished run you can see for this choice")
if "w_results_run" not in st.session_state and _shared.viewed_run(labels) is not None:
    st.session_state["w_results_run"] = _shared.viewed_run(labels)  # the run looked at last, e.g. on Embeddings
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="w_results_run")
_shared.set_view("run", int(run_id))
_shared.note_viewed_run(run_id)  # Embeddings opens on the run looked at last
run = next(r for r in done if r["id"] == run_id)
if reports[run_id].in_scope is False:
    st.warning(f"Run #{run_id} is out of its method's scope: {reports[run_id].in_scope_reason or ''}",
               icon=":material/info:")
checkpoint = _shared.store().owned_checkpoint(run_id) if run.get("checkpoint_path") else None
if run.get("checkpoint_path") and checkpoint is None:
    downloads[1].warning(f"Run #{run_id}'s checkpoint is not one this run store wrote; it is not offered.")
if checkpoint is not None:
    try:
        with open(checkpoint, "rb") as handle:
            downloads[1].download_button(f"Download the unlearned checkpoint of run #{run_id}", data=handle.read(),
                                         file_name=f"run{run_id}_{run['method']}.pt", icon=":material/download:")
    except OSError as error:
        downloads[1].error(f"checkpoint of run #{run_id} is missing: {error}")

with st.popover(f"Delete run #{run_id}", icon=":material/delete:"):
    pinned = " It is **pinned**: unpin it first (`python -m unlearn_core runs unpin ID`)." if run.get("pinned") else ""
    st.markdown(f"Delete run **#{run_id} {run['method']}** from the run store, with its checkpoint? This cannot "
                f"be undone.{pinned}")
    if st.button(f"Delete run #{run_id}", type="primary", key="w_results_delete"):
        try:
            _shared.store().delete(run_id)
        except UnlearnError as error:
            st.error(str(error))
        else:
            st.session_state.pop("w_results_run", None)
            st.toast(f"Deleted run #{run_id}.")
            st.rerun()

evidence = reports[run_id].evidence
if evidence:
    from app_pages._evidence import show_evidence

    show_evidence(evidence, run)
from app_pages._evidence import show_cell_verdicts  # noqa: E402

show_cell_verdicts(_shared.store(), run, uploaded=bool(current.original))
try:
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
# One fixed, symmetric range for both charts, so the same colour means the same change in each.
limit = change_limit(confusion_change(unlearned_conf, original_conf), confusion_change(unlearned_conf, retrained_conf))
left, right = st.columns(2)
with left:
    st.plotly_chart(confusion_difference(unlearned_conf, original_conf, class_names,
                                         f"Confusion change: run #{run_id} − original (test set)", limit),
                    width="stretch", key="confusion_vs_original",
                    config=_shared.chart_config("confusion-vs-original", run["method"], run_id))
with right:
    st.plotly_chart(confusion_difference(unlearned_conf, retrained_conf, class_names,
                                         f"Confusion change: run #{run_id} − retrained", limit),
                    width="stretch", key="confusion_vs_retrained",
                    config=_shared.chart_config("confusion-vs-retrained", run["method"], run_id))
st.caption(f"Each row is a true class's test images, in % of that class (colour range ±{limit:.0f}). Red = a share "
           "lost (on the diagonal: accuracy lost), blue = a share gained (off the diagonal: where those images are "
           "predicted now).")

panels = (("original", setup.outputs("original")), (f"run #{run_id}", outputs),
          ("retrained", setup.outputs("retrained")))
groups = {name: entropy_groups(model_outputs) for name, model_outputs in panels}
y_max = entropy_y_max(list(groups.values()), num_classes)
class_forgetting = bool(forgotten)
if class_forgetting:
    intro = ("**Prediction entropy** (what the entropy membership attack sees). The target is the *retrained* panel: "
             "it never learnt the forgotten class(es), so its forget samples are images of a class it cannot "
             "name, and their entropy need not look like the test set's. Compare the run's red (forget) bars with "
             "the retrained model's.")
else:
    intro = ("**Prediction entropy** (what the entropy membership attack sees). The retrained model never saw the "
             "forget samples, so for it they look like unseen test images; after good unlearning the run's red "
             "(forget) bars move from the remaining samples' towards the test samples', as in the retrained panel.")
st.markdown(intro)
cols = st.columns(3)
for col, (name, _) in zip(cols, panels):
    with col:
        st.plotly_chart(entropy_histograms(groups[name], name, num_classes, y_max), width="stretch",
                        key=f"entropy_{name}", config=_shared.chart_config(f"entropy-{name}", run["method"], run_id))
st.caption("All three panels share both axes. Forget-set entropy, median: "
           + ", ".join(f"{name} {np.median(groups[name]['forget']):.1e}" for name, _ in panels) + " nats.")
