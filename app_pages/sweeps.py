"""Sweeps page: launch a small sweep in the worker or open a stored one; phase map and Pareto scatter of its cells.

The numbers come from ``unlearn_core.sweeps.sweep_result`` (the run store alone); the frames and figures from
``unlearn_core.tables`` and ``unlearn_core.figures``. A click on a cell or point opens its runs in
Results with the choice switched to the sweep's data set, model and forget set.
"""

import secrets

import streamlit as st

from app_pages import _shared

st.title("Sweeps")
_shared.explainer(
    "One run is one draw: a method that forgets at one learning rate may collapse at the next, or with another "
    "seed. A **sweep** runs methods over a small grid of their parameters, several seeds each, next to an "
    "ensemble of retrained models. The **phase map** puts one method's cells on two parameters; the colour is "
    "the cell's gap to the retrained models: on the forget metric (Acc_f for classes, FA otherwise) **blue** "
    "means it still remembers (under-unlearning) and **red** that it forgot more than retraining would "
    "(over-unlearning, e.g. random samples pushed into a wrong class); on retained accuracy red means accuracy "
    "lost. White is \"like retraining\". The **Pareto scatter** shows every cell of every method: left = "
    "forgets like retraining, bottom = keeps the rest like retraining, bigger = slower. Click a cell or a point "
    "to open its runs in Results.")

from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.settings import settings  # noqa: E402
from unlearn_core.tables import (COLOUR_BY, MAX_GRID_VALUES, cell_frame, cell_label, failure_rows,  # noqa: E402
                                 gridable, grid_values, parse_grid_text, pareto_front, phase_matrix,
                                 run_counts, spec_cells, varied_params)

# The app's sweeps share one worker with every session's runs: a cap keeps one click from holding it for hours.
MAX_RUNS = settings().max_sweep_runs

view = _shared.store()


def open_in_results(result: dict, row) -> None:
    """Make the cell's data set, model and forget set the current choice and show only its runs on Results.

    A cell with no finished run stays here and says so, with its failed runs' reason: Results lists finished
    runs, and a focus on none of them would show every run."""
    if not len(row["run_ids"]):
        failed = len(row["failed_ids"])
        st.warning(f"Cell {_shared.code(cell_label(row))} has no finished run to open in Results"
                   + (f": its {failed} run(s) failed ({_shared.md(row['reason'])})." if failed else "."),
                   icon=":material/block:")
        return
    st.session_state.update({"dataset": result["dataset"], "model": result["model"], "forget": row["forget"],
                             "seed": int(row["seeds"][0]) if row["seeds"] else 0, "original": ""})
    st.session_state["results_focus"] = {"run_ids": [int(i) for i in row["run_ids"]], "tag": result["tag"],
                                         "label": cell_label(row)}
    st.session_state.pop("w_results_run", None)
    st.switch_page(_shared.page("results"))


def result_for(tag: str) -> dict | None:
    """``sweep_result`` for ``tag``, kept in the session until the sweep gains runs (100 cells: ~0.3 s to rebuild)."""
    from unlearn_core.sweeps import sweep_result

    sweep = view.get_sweep(tag)
    if sweep is None:
        return None
    stamp = (tag, sweep["updated_at"], sweep["runs"])
    memo = st.session_state.get("sweep_memo")
    if memo is None or memo[0] != stamp:
        memo = (stamp, sweep_result(view, tag))
        st.session_state["sweep_memo"] = memo
    return memo[1]


# -- launch --------------------------------------------------------------------------------------------------------
def launch_form(current) -> None:
    from unlearn_core.methods import get_method, method_names
    from unlearn_core.sweeps import SweepSpec, parse_seeds, validate

    names = [n for n in method_names() if n != "retrain"]
    _shared.restore_widgets("sweeps")
    st.session_state.setdefault("w_sweep_methods", ["ga"] if "ga" in names else names[:1])
    st.markdown(f"On the current choice: **{_shared.md(current.dataset)}** · **{current.model}** · forget "
                f"{_shared.forget_md(current.forget)}")
    methods = st.multiselect("Methods", names, key="w_sweep_methods", format_func=lambda n: get_method(n).title or n)
    keys = ["w_sweep_methods", "w_sweep_seeds", "w_sweep_retrains"]
    grid: dict[str, dict[str, list]] = {}
    invalid = False
    for method in methods:
        params = {p.name: p for p in gridable(get_method(method))}
        vary_key = f"w_sweep_vary_{method}"
        keys.append(vary_key)
        # The parameters with a measured sweep span are varied unless the person chooses otherwise: the first
        # sweep then crosses the method's transition (docs/SWEEPS.md, "Default grids").
        st.session_state.setdefault(vary_key, [n for n, p in params.items() if p.sweep is not None][:2])
        vary = st.multiselect(f"{get_method(method).title or method}: parameters to vary (up to two)", list(params),
                              key=vary_key, max_selections=2,
                              help="Values are drawn from each parameter's measured sweep span (or around its "
                                   "default), and can be typed.")
        cols = st.columns(max(1, len(vary)))
        for col, name in zip(cols, vary):
            count_key, text_key = f"w_sweep_n_{method}_{name}", f"w_sweep_values_{method}_{name}"
            keys += [count_key, text_key]
            st.session_state.setdefault(count_key, 3)
            st.session_state.setdefault(text_key, values_text(grid_values(params[name], 3)))
            col.slider(f"{method}.{name}: preset values", 2, MAX_GRID_VALUES, key=count_key,
                       on_change=fill_preset, args=(params[name], count_key, text_key),
                       help="Fills the field below with this many values from the parameter's measured sweep span.")
            text = col.text_input(f"{method}.{name}: values", key=text_key,
                                  help="Comma-separated values, e.g. 0.001, 0.002; each must lie in the parameter's "
                                       "declared range.")
            try:
                grid.setdefault(method, {})[name] = parse_grid_text(params[name], text)
            except UnlearnError as error:
                col.error(_shared.md(error), icon=":material/error:")
                invalid = True
    left, right = st.columns(2)
    st.session_state.setdefault("w_sweep_seeds", "0")
    seeds_text = left.text_input("Seeds", key="w_sweep_seeds", help="Comma-separated, e.g. 0,1,2.")
    retrains = right.number_input("Retrained models (reference ensemble)", 0, 20, value=None, key="w_sweep_retrains",
                                  placeholder="one per seed",
                                  help="K retrained models give the ensemble's spread (a band on Results' "
                                       "per-class bars); empty = one per seed, which costs nothing extra.")
    _shared.keep_widgets("sweeps", keys)
    if not methods:
        st.info("Choose at least one method.")
        return
    if invalid:
        return  # the field's own message says what is wrong
    try:
        seeds = parse_seeds(seeds_text or "", "Seeds")
        spec = validate(SweepSpec(dataset=current.dataset, model=current.model, forgets=[current.forget],
                                  methods=methods, grid=grid, seeds=seeds,
                                  retrains=None if retrains is None else int(retrains)))
    except UnlearnError as error:
        _shared.show_error(error)
        return
    from unlearn_core.sweeps import cells, sweep_cost

    n_cells = len(cells(spec))
    try:
        cost = sweep_cost(spec, _shared.store())
    except UnlearnError as error:
        _shared.show_error(error)
        return
    total = cost.trainings
    st.caption(f"{n_cells} cell(s) × {len(seeds)} seed(s) + {spec.reference_count()} retrained model(s); not yet "
               f"stored or cached: {cost.describe()}.")
    if current.original:
        st.warning("Sweeps run on the trained original, not an uploaded one.", icon=":material/info:")
    if st.button("Launch the sweep", type="primary", icon=":material/play_arrow:", key="w_sweep_launch"):
        if MAX_RUNS and total > MAX_RUNS:
            st.error(f"This sweep would train {total} models ({cost.describe()}); the app takes at most {MAX_RUNS} "
                     "per sweep (UNLEARN_MAX_SWEEP_RUNS). Use fewer values or seeds, or the CLI (docs/SWEEPS.md).")
            return
        try:
            _shared.runner().check(_shared.session_owner(), total)
        except UnlearnError as error:
            _shared.show_error(error)
            return
        from unlearn_core.sweeps import new_tag

        # A random suffix: two sessions launching in the same second must not share (and resume) one tag.
        tag = f"{new_tag('app')}-{secrets.token_hex(2)}"
        spec.tag = tag
        store = _shared.store()  # its start() and save_sweep() mark the runs and the sweep with this session
        queue_sweep(spec, store, total)


def values_text(values: list) -> str:
    """Grid values as the text a person can edit: ``0.001, 0.002`` (``:g`` for floats)."""
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def fill_preset(param, count_key: str, text_key: str) -> None:
    """The preset slider's callback: its count of values from the declared sweep span replaces the typed ones."""
    st.session_state[text_key] = values_text(grid_values(param, st.session_state[count_key]))


def queue_sweep(spec, store, trainings: int, select: bool = True) -> None:
    """Queue ``spec`` (tag set) in the worker (:func:`unlearn_app.sweepjobs.submit_sweep`: its row saved first,
    so a server killed before it ends lists it as interrupted and the same tag resumes it)."""
    from unlearn_app.sweepjobs import submit_sweep

    try:
        submit_sweep(_shared.runner(), spec, store, _shared.session_owner(), trainings)
    except UnlearnError as error:
        _shared.show_error(error)
        return
    if select:  # a new sweep becomes the one shown (a resumed one already is)
        st.session_state["w_sweep_tag"] = spec.tag
    st.toast(f"Queued sweep {spec.tag} ({trainings} model trainings).")
    st.rerun()


def sweep_state(sweep: dict) -> tuple[int, bool]:
    """``(planned runs, interrupted)``: a sweep with fewer linked runs than planned and no job of this server
    on it was cut off (the server stopped, or it was killed) and can be resumed."""
    from unlearn_core.sweeps.spec import planned_run_count

    spec = sweep["spec"]
    try:
        planned = planned_run_count(spec.get("grid") or {}, list(spec.get("methods") or []),
                                    len(spec.get("forgets") or []), len(spec.get("seeds") or []))
        planned += int(spec.get("retrains") or 0) * len(spec.get("forgets") or [])
    except (TypeError, ValueError, AttributeError):
        return 0, False
    running = any(job.snapshot().meta.get("tag") == sweep["tag"] for job in _shared.runner().active())
    return planned, sweep["runs"] < planned and not running


current = _shared.choice()
sweeps = view.list_sweeps()
with st.expander("Launch a sweep", expanded=not sweeps, icon=":material/add_circle:"):
    if not _shared.original_ready(current):
        st.info("No original model yet for this data set and model. Train or load it on the **Setup** page.")
    else:
        launch_form(current)
_shared.jobs_panel("sweep", title="Sweeps running")
sweeps = view.list_sweeps()  # again: a sweep launched above is listed once its job has started

# -- open ----------------------------------------------------------------------------------------------------------
st.subheader("Open a sweep")
if not sweeps:
    st.info("No sweep is stored yet" + (" for this session" if _shared.shared() else "")
            + ". Launch one above, or run `python -m unlearn_core sweep` (docs/SWEEPS.md).")
    _shared.stop()
by_tag = {s["tag"]: s for s in sweeps}
if (linked := _shared.url_view("sweep")) is not None:
    # Only a sweep this session may see (on a shared server: its own, deny by default).
    if linked in by_tag:
        st.session_state["w_sweep_tag"] = linked
    else:
        _shared.drop_url_value("sweep", "no sweep you can see has that tag")
        _shared.url_view("cell")  # a cell of a sweep that is not shown means nothing
if st.session_state.get("w_sweep_tag") not in by_tag:
    st.session_state["w_sweep_tag"] = sweeps[0]["tag"]


counts = {t: run_counts(view.sweep_runs(t)) for t in by_tag}  # by status, read on every run of the page


def sweep_option(tag: str) -> str:
    s, n = by_tag[tag], counts[tag]
    spec = s["spec"]
    return (f"{tag} · {s['kind']} · {spec.get('dataset')}/{spec.get('model')} · {s['created_at'][:16]} · "
            f"{spec_cells(spec)} cells · {n['done']} runs done" + (f", {n['failed']} failed" if n["failed"] else "")
            + (f", {n['running']} running" if n["running"] else ""))


tag = st.selectbox("Sweep", list(by_tag), key="w_sweep_tag", format_func=sweep_option)
_shared.set_view("sweep", tag)
planned, interrupted = sweep_state(by_tag[tag])
if interrupted and by_tag[tag]["kind"] == "sweep":
    st.warning(f"Sweep {_shared.code(tag)} was interrupted with {by_tag[tag]['runs']} of {planned} runs stored "
               "(the server stopped before it finished). Resuming runs only what is missing.",
               icon=":material/pause_circle:")
    if st.button("Resume this sweep", icon=":material/play_arrow:", key="w_sweep_resume"):
        from unlearn_core.sweeps import SweepSpec, sweep_cost, validate

        stored = by_tag[tag]["spec"]
        try:
            spec = validate(SweepSpec(dataset=stored["dataset"], model=stored["model"], forgets=stored["forgets"],
                                      methods=stored["methods"], grid=stored.get("grid") or {},
                                      seeds=stored["seeds"], retrains=stored.get("retrains"),
                                      recipe_overrides=stored.get("recipe_overrides"), tag=tag,
                                      evidence=stored.get("evidence")))
            trainings = sweep_cost(spec, view).trainings
            _shared.runner().check(_shared.session_owner(), trainings)
        except (UnlearnError, KeyError, TypeError) as error:
            _shared.show_error(error)
        else:
            queue_sweep(spec, view, trainings, select=False)
try:
    result = result_for(tag)
except (UnlearnError, ValueError, KeyError, TypeError) as error:
    st.error(f"Sweep {_shared.code(tag)} cannot be read: {_shared.md(error)}")
    _shared.stop()
if result is None:
    st.error(f"Sweep {_shared.code(tag)} is no longer in the store.")
    _shared.stop()
if not result["cells"]:
    st.info("This sweep has no finished cell yet.")
    _shared.stop()

forgets = [f["forget"] for f in result["forgets"]] or sorted({c["forget"] for c in result["cells"]})
forget = forgets[0] if len(forgets) == 1 else st.selectbox("Forget set", forgets, key="w_sweep_forget",
                                                           format_func=lambda f: str(f))
frame = cell_frame(result, forget)
reference = next((f["reference"] for f in result["forgets"] if f["forget"] == forget), {})
done_runs = int(frame["n"].sum()) if len(frame) else 0
cols = st.columns(4)
cols[0].metric("Cells", len(frame))
cols[1].metric("Runs done", done_runs)
cols[2].metric("Failed runs", int(frame["failed"].sum()) if len(frame) else 0)
cols[3].metric("Retrained models", len(reference.get("run_ids") or []))
if not reference.get("run_ids"):
    st.warning("This sweep has no retrained model for this forget set: gaps cannot be computed.")
f_metric, r_metric = frame.attrs["forget_metric"], frame.attrs["retain_metric"]

# A click on a chart reruns the fragment; routing to Results needs a full run of the page.
pending = st.session_state.pop("sweep_open_cell", None)
if pending:
    match = frame[frame["cell_id"] == pending]
    if len(match):
        open_in_results(result, match.iloc[0])


def clicked_cell(event) -> str | None:
    points = (event or {}).get("selection", {}).get("points") or []
    for point in points:
        cell_id = point.get("customdata")
        if isinstance(cell_id, list):
            cell_id = cell_id[0] if cell_id else None
        if cell_id:
            return str(cell_id)
    return None


VERDICT_CAPTIONS = {
    "forget quality": "Colour: forget quality as the NeurIPS 2023 competition's released metric.py computes it "
                      "(1 = no threshold attack tells the cell's models from the retrained ones, 0 = every forget "
                      "sample gives them away).",
    "KLoM P95": "Colour: the 95th percentile over forget samples of KLoM, the KL divergence between the margins "
                "of the cell's models and of the retrained models (EasyDUB; 0 = alike, 11.5 = no overlap).",
    "U-LiRA TPR@1%FPR": "Colour: true-positive rate at 1 % false positives of a per-sample likelihood-ratio attack "
                        "that tells the cell's models from the retrained ones on forget samples (0.01 = chance).",
}


@st.fragment
def phase_section() -> None:
    """Method, axes and colour redraw only this chart (a fragment), never the Pareto scatter below."""
    from unlearn_core.figures import phase_map

    st.subheader("Phase map")
    candidates = [m for m in dict.fromkeys(frame["method"]) if varied_params(frame, m)]
    if not candidates:
        st.info("No method of this sweep varies a parameter: the phase map needs a grid (launch one above, or "
                "`--grid METHOD.PARAM=V1,V2` on the CLI). The Pareto scatter below still compares the cells.")
        return
    cols = st.columns(4)
    method = cols[0].selectbox("Method", candidates, key="w_sweep_method")
    axes = varied_params(frame, method)
    x = cols[1].selectbox("x axis", axes, key=f"w_sweep_x_{method}")
    y_options = [a for a in axes if a != x]
    y = cols[2].selectbox("y axis", y_options, key=f"w_sweep_y_{method}") if y_options else None
    colour = cols[3].radio("Colour", list(COLOUR_BY), key="w_sweep_colour", horizontal=True)
    matrix = phase_matrix(frame, method, x, y, colour)
    event = st.plotly_chart(phase_map(matrix, method), width="stretch", key="sweep_phase_map",
                            config=_shared.chart_config("phase-map", method), on_select="rerun",
                            selection_mode="points")
    if matrix["collisions"]:
        others = [a for a in varied_params(frame, method) if a not in (x, y)]
        st.caption(f"{matrix['collisions']} cell(s) share a grid point with another (they differ in "
                   f"{', '.join(others)}); each point shows the one with the most seeds.")
    metric = {"forget gap": f_metric, "retain drop": r_metric}.get(colour)
    if matrix["range"]:
        st.caption(VERDICT_CAPTIONS[colour] + " Computed over the cell's seeds against the retrained models "
                   "(docs/EVIDENCE.md); the range is fixed, so the same colour means the same value in every "
                   "sweep. Click a cell to open its runs in Results.")
    else:
        st.caption((f"Colour: mean {metric} over seeds minus the retrained models' mean, in points. " if metric else
                    "Colour: mean Avg. Gap over seeds (0 = like retraining). ")
                   + "The colour range is fixed and symmetric, so the same colour means the same gap in every "
                     "sweep. Click a cell to open its runs in Results.")
    cell_id = clicked_cell(event)
    if cell_id:
        st.session_state["sweep_open_cell"] = cell_id
        st.rerun(scope="app")


phase_section()

failures = failure_rows(frame)
if failures:
    with st.container(key="sweep_failures"):
        st.markdown(f"**Failed cells** ({len(failures)}): the reason stored with the first failed run of each")
        st.markdown("\n".join(f"- {_shared.code(f['cell'])}: {f['failed']} of "
                              f"{f['failed'] + f['done']} run(s) failed: {_shared.md(f['reason'])}"
                              for f in failures))

st.subheader("Pareto scatter")
from unlearn_core.figures import pareto_note, pareto_scatter  # noqa: E402

front = pareto_front(frame)
if (note := pareto_note(frame)) is not None:
    st.info(note, icon=":material/info:")
event = st.plotly_chart(pareto_scatter(frame, front), width="stretch", key="sweep_pareto",
                        config=_shared.chart_config("pareto"), on_select="rerun",
                        selection_mode="points")
st.caption(f"x: |mean {f_metric} − the retrained models' mean|; y: how far the mean {r_metric} fell below theirs "
           "(0 when above). Marker area grows with the mean time per run. The dashed line joins the cells no other "
           "cell beats on both axes. Click a point to open its runs in Results.")
cell_id = clicked_cell(event)
if cell_id:
    match = frame[frame["cell_id"] == cell_id]
    if len(match):
        open_in_results(result, match.iloc[0])

st.subheader("Cells")
varied = {m: set(varied_params(frame, m)) for m in frame["method"].unique()}
labels = {}
for _, row in frame.iterrows():
    labels[row["cell_id"]] = cell_label({**row.to_dict(), "varied": varied.get(row["method"]) or {"-"}})
table = frame.assign(cell=[labels[c] for c in frame["cell_id"]])[
    ["cell", "n", "failed", "forget_gap", "retain_drop", "avg_gap", "seconds"]]
st.dataframe(table.rename(columns={"n": "seeds done", "forget_gap": f"{f_metric} gap", "retain_drop":
                                   f"{r_metric} drop", "avg_gap": "Avg. Gap", "seconds": "time (s)"}).round(2),
             hide_index=True, key="sweep_cells")
cols = st.columns([3, 1])
_shared.apply_url_choice("cell", "w_sweep_cell", labels, "this sweep has no such cell")
chosen = cols[0].selectbox("Open a cell's runs", list(labels), format_func=labels.get, key="w_sweep_cell")
_shared.set_view("cell", chosen)
if cols[1].button("Open in Results", icon=":material/table_chart:", key="w_sweep_open"):
    open_in_results(result, frame[frame["cell_id"] == chosen].iloc[0])

from unlearn_core.sweeps import csv_bytes, json_bytes  # noqa: E402

downloads = st.columns(3)
downloads[0].download_button("Download the sweep (CSV)", data=csv_bytes(result), file_name=f"{tag}.csv",
                             mime="text/csv", icon=":material/download:")
downloads[1].download_button("Download the sweep (JSON)", data=json_bytes(result), file_name=f"{tag}.json",
                             mime="application/json", icon=":material/download:")
_shared.report_button(downloads[2], view.sweep_runs(tag), ("sweep", tag), f"{tag}_report.html",
                      key="w_sweep_report", sweep=view.get_sweep(tag))
