"""Tour page: the canonical comparison on a prepared setting (one class forgotten with UNSC, NatMU and GA against
the retrained reference), run as one job, then four screens that explain what it shows."""

import dataclasses

import streamlit as st

from app_pages import _shared

st.title("Tour")
_shared.explainer(
    "A guided path through machine unlearning in four screens. One click runs the canonical comparison: the "
    "original model forgets one whole class with **UNSC** (null space calibration), **NatMU** (natural machine "
    "unlearning) and **GA** (gradient ascent, the classic baseline), and each is judged against the **retrained** "
    "model, trained from scratch without that class (the gold standard). The runs are ordinary runs: Results, "
    "Embeddings and the other pages show them in full. On a *prepared* setting (Setup's **Prepare a demo**) the "
    "tour waits only for the three methods.")

from unlearn_core.errors import UnlearnError  # noqa: E402
from unlearn_core.tour import (TOUR_EVIDENCE, TOUR_METHODS, forgetting_rows, forgetting_sentence,  # noqa: E402
                               hidden_or_gone, latest_tour, relearn_rows, run_tour, tour_forget, tour_map,
                               tour_map_key, tour_status)

METHOD_TITLES = {"unsc": "UNSC", "natmu": "NatMU", "ga": "GA"}
SCREENS = ["1 · What was forgotten", "2 · What else was lost", "3 · Where the samples went", "4 · Hidden or gone?"]
present = bool(st.session_state.get("present"))


def draw(fig, key: str, chart: str, method: str | None = None) -> None:
    """A chart at the page's width, with projector fonts in presentation mode."""
    if present:
        from unlearn_app.present import enlarge

        enlarge(fig)
    st.plotly_chart(fig, width="stretch", key=key, config=_shared.chart_config(chart, method))


current = _shared.choice()
try:
    from unlearn_core.data import load_dataset

    bundle = load_dataset(current.dataset)
    forget = tour_forget(current.forget, bundle.num_classes)
    status = tour_status(current.dataset, current.model, current.seed, forget)
except UnlearnError as error:
    _shared.show_error(error)
    _shared.stop()
tour_choice = dataclasses.replace(current, forget=forget)
forgotten_name = bundle.class_names[int(forget.split(":")[1])]
st.markdown(f"**Setting:** {_shared.md(current.dataset)} · {current.model} · seed {current.seed} · forget "
            f"{_shared.code(forget)} (**{_shared.md(forgotten_name)}**) · methods "
            f"{', '.join(METHOD_TITLES[m] for m in TOUR_METHODS)} against the retrained model")
if forget != current.forget:
    st.caption(f"The tour forgets one whole class; the current forget set ({_shared.forget_md(current.forget)}) is "
               f"not one, so it takes {_shared.code(forget)}. Starting the tour makes {_shared.code(forget)} the "
               "current forget set, so the pages it links to show its runs.")

runner = _shared.runner()
owner = _shared.session_owner()
meta_key = [current.dataset, status.model, current.seed, forget]
tour_jobs = [j for j in runner.active("tour", owner) if j.snapshot().meta.get("tour") == meta_key]
prepare_jobs = [j for j in runner.active("setup", owner) if j.snapshot().meta.get("tour") == meta_key]
visible = _shared.store()
runs = visible.list(dataset=current.dataset, model=status.model, forget=forget, status="done")
tour_runs = latest_tour(runs)


def start_tour() -> None:
    """Queue the tour: the setup (trained first if a model is missing), then the three runs and the map."""
    request, cache, store = tour_choice, _shared.embedding_cache(), _shared.store()

    def tour(progress, cancel):
        setup = _shared.setups().get(request, progress, cancel, with_retrain=True)
        return run_tour(setup, store, progress, cancel, cache=cache)

    try:
        runner.submit(f"tour: {', '.join(METHOD_TITLES[m] for m in TOUR_METHODS)} forget {forget} on "
                      f"{current.dataset}", tour, kind="tour",
                      meta={"owner": owner, "tour": meta_key, "trainings": len(TOUR_METHODS) + status.trainings})
    except UnlearnError as error:  # the per-session queue and training budgets
        _shared.show_error(error)
        return
    st.session_state["forget"] = forget
    st.session_state["tour_screen"] = 0
    st.rerun()


def prepare_setting() -> None:
    """Queue the training of what the setting lacks: the original and this class's retrained reference."""
    request = tour_choice

    def prepare(progress, cancel):
        _shared.setups().get(request, progress, cancel, with_retrain=True)

    try:
        runner.submit(f"prepare the tour: {status.missing()}", prepare, kind="setup",
                      meta={"owner": owner, "tour": meta_key, "trainings": status.trainings})
    except UnlearnError as error:
        _shared.show_error(error)
        return
    st.rerun()


def estimate_line() -> str:
    """What preparing costs, from the time this server measured training the original (when it is cached)."""
    if not status.original:
        return ("Nothing of this data set and model has been trained here yet, so there is no measured time to "
                "go by: the progress bars below show each training's time as it goes.")
    try:
        setup = _shared.setups().get(tour_choice, with_retrain=False)
    except UnlearnError:
        return ""
    seconds = setup.original.train_seconds
    if seconds != seconds:  # an uploaded original has no training time
        return ""
    share = 1 - len(setup.split.forget_idx) / len(setup.bundle.train_y)
    return (f"The original took {seconds:.0f} s to train here; the reference trains the same recipe on the "
            f"{share:.0%} of the data it keeps: about {seconds * share:.0f} s.")


def start_button(container) -> None:
    label = "Run the tour again" if tour_runs else "Start the tour"
    if container.button(label, type="secondary" if tour_runs else "primary", icon=":material/play_arrow:",
                        key="w_tour_start",
                        help=f"Runs {', '.join(METHOD_TITLES[m] for m in TOUR_METHODS)} at their default parameters "
                             f"on {forget}, each with the relearn-time evidence, then the map of the samples. "
                             "On mnist5k with 2 CPU cores this took about 3.5 minutes, NatMU's fine-tuning 2 of "
                             "them (docs/APP.md); digits takes seconds."):
        start_tour()


if tour_jobs or prepare_jobs or not status.ready or not tour_runs:
    with st.container(key="keep_tour_start"):
        if tour_jobs:
            st.info("The tour is running: the screens appear when its runs are done.",
                    icon=":material/hourglass_top:")
        elif prepare_jobs:
            st.info("Preparing the setting ...", icon=":material/hourglass_top:")
        elif not status.ready:
            st.warning(f"This setting is not prepared: {status.missing()} "
                       f"{'is' if status.trainings == 1 else 'are'} not trained yet. {estimate_line()} Setup's "
                       "**Prepare a demo** prepares every class at once.", icon=":material/school:")
            if st.button("Prepare this setting", icon=":material/model_training:", key="w_tour_prepare",
                         help="Train the original and the retrained reference this tour needs, in the background."):
                prepare_setting()
        else:
            start_button(st)
    _shared.jobs_panel("tour", title="Tour")
    if prepare_jobs:
        _shared.jobs_panel("setup", title="Preparing")
    _shared.stop()
last_tour = next(iter(reversed(runner.jobs("tour", owner))), None)
if last_tour is not None and last_tour.snapshot().status in ("failed", "cancelled"):
    snap = last_tour.snapshot()
    st.warning(_shared.md(f"The last tour {snap.status}" + (f": {snap.error}" if snap.error else "") +
                          "; the screens show the one before it."), icon=":material/warning:")

# -- the four screens ---------------------------------------------------------------------------------------------
by_method = dict(zip(TOUR_METHODS, tour_runs))
tag = tour_runs[0].get("tag") or (tour_runs[0].get("config") or {}).get("tag")
screen = int(st.session_state.get("tour_screen", 0)) % len(SCREENS)
st.session_state["w_tour_screen"] = SCREENS[screen]


def go(step: int) -> None:
    st.session_state["tour_screen"] = (int(st.session_state.get("tour_screen", 0)) + step) % len(SCREENS)


def jump() -> None:
    picked = st.session_state.get("w_tour_screen")
    if picked in SCREENS:
        st.session_state["tour_screen"] = SCREENS.index(picked)


# One row: the screens, Next, and (outside presentation mode) running the tour again.
with st.container(key="keep_tour_nav", horizontal=True, vertical_alignment="center"):
    st.segmented_control("Screen", SCREENS, key="w_tour_screen", on_change=jump, label_visibility="collapsed",
                         required=True)
    st.button("Next", icon=":material/arrow_forward:", key="w_tour_next", on_click=go, args=(1,),
              disabled=screen == len(SCREENS) - 1)
start_button(st.container(horizontal=True, horizontal_alignment="right"))
runs_line = (f"Tour `{tag}`: runs " + ", ".join(f"#{r['id']} {METHOD_TITLES.get(r['method'], r['method'])}"
                                                for r in tour_runs))


def side_by_side():
    """The chart on the left, the screen's title and the teacher's text on the right: one screen at 1280 x 720."""
    return st.columns([3, 2], gap="medium")


if screen == 0:
    from unlearn_core.figures.tour import forget_retain_bars

    rows = forgetting_rows(tour_runs)
    chart, words = side_by_side()
    with words:
        st.subheader("What was forgotten")
        st.markdown(
            "Each bar is one model's accuracy on its own training images: the *forget set* (every training image "
            f"of class {_shared.md(forgotten_name)}) and the *remaining* images. The dotted lines are the "
            "retrained model, trained from scratch without the class: what perfect unlearning would give. A method "
            "is judged by how close it comes to those lines, not by how low it pushes the forget bar. Forgetting a "
            "whole class is easy to *look* done; the next screens ask what it cost and whether it is really gone.")
        st.page_link(_shared.page("results"), label="Every metric on Results", icon=":material/table_chart:")
    with chart:
        draw(forget_retain_bars(rows, height=400), "tour_forgotten", "tour-forget-vs-remaining")
    st.caption(_shared.md(forgetting_sentence(rows)) + " " + runs_line)
elif screen == 1:
    import numpy as np

    from unlearn_core.figures import per_class_heatmap
    from unlearn_core.tables import over_unlearning_summary, per_class_shift

    shift, _, forgotten = per_class_shift(tour_runs)
    test_counts = np.bincount(bundle.test_y.numpy(), minlength=bundle.num_classes)
    damage, _ = over_unlearning_summary(shift, forgotten, test_counts)
    chart, words = side_by_side()
    with words:
        st.subheader("What else was lost")
        st.markdown(
            "Each row is a model, each column a class of the test set, each cell the points of test accuracy it "
            "gained (blue) or lost (red) against the original. The forgotten class should fall as far as the "
            "retrained model's row shows. Every other class should stay white: red there is **over-unlearning**, "
            "knowledge the method destroyed that it was asked to keep, often in classes that look like the "
            "forgotten one.")
        st.page_link(_shared.page("results"), label="Per-class shifts and confusions on Results",
                     icon=":material/table_chart:")
    with chart:
        figure = per_class_heatmap(shift, forgotten)
        figure.update_layout(height=max(300, figure.layout.height or 0))
        draw(figure, "tour_shift", "tour-per-class-change")
    if damage:
        st.markdown("\n".join(f"- {_shared.md(line)}" for line in damage))
    else:
        st.caption("No run lost more than 2 points (and 3 test images) on a kept class below the retrained model.")
    st.caption(runs_line)
elif screen == 2:
    from unlearn_core.figures import embedding_scatter, legend_html, shared_ranges

    cache = _shared.embedding_cache()
    key = tour_map_key(tag, {m: int(r["id"]) for m, r in by_method.items()})
    coords = cache.get(key)
    if coords is None:  # the tour job stores it; an emptied cache is recomputed from the runs' checkpoints
        try:
            setup = _shared.setups().get(tour_choice, with_retrain=True)
            with st.spinner("Computing the map ..."):
                coords = cache.get_or_compute(key, lambda: tour_map(
                    setup, {m: _shared.run_model(r, setup) for m, r in by_method.items()}))
        except UnlearnError as error:
            _shared.show_error(error)
            _shared.stop()
    title, choice_box = st.columns([3, 2], vertical_alignment="bottom")
    title.subheader("Where the samples went")
    with choice_box.container(key="keep_tour_method"):
        after = st.segmented_control("The unlearned model", list(TOUR_METHODS), format_func=METHOD_TITLES.get,
                                     default=TOUR_METHODS[0], key="w_tour_after", required=True,
                                     label_visibility="collapsed") or TOUR_METHODS[0]
    names = bundle.class_names
    forget_mask = coords["forget"].astype(bool)
    ranges = shared_ranges(*(coords[s] for s in ("before", after, "retrained")))
    titles = {"before": "before (original)", after: f"after ({METHOD_TITLES[after]})",
              "retrained": "retrained (aligned)"}
    for panel, state in zip(st.columns(3), ("before", after, "retrained")):
        with panel:
            fig = embedding_scatter(coords[state], coords["labels"], coords["idx"], forget_mask, names,
                                    title=titles[state], height=340, ranges=ranges, show_legend=False)
            draw(fig, f"tour_map_{state if state != after else 'after'}", f"tour-map-{state}",
                 None if state in ("before", "retrained") else after)
    st.markdown(legend_html(names, sorted(set(coords["labels"].tolist())), "", bool(forget_mask.any())),
                unsafe_allow_html=True)
    st.markdown(
        "Every point is one training image, placed by what the model's last hidden layer computes for it (one PCA "
        "map of the three models' features; crosses are the forgotten class). *Before*, the class is its own "
        "cluster. The retrained model never learnt it, so its images land among the classes they resemble. If the "
        "crosses stay one tight cluster *after*, the method changed only the final verdict: the features still "
        "separate the class, and the knowledge is still inside the network.")
    st.page_link(_shared.page("embeddings"), label="The full map (UMAP, hover, lasso) on Embeddings",
                 icon=":material/scatter_plot:")
    st.caption(runs_line)
else:
    from unlearn_core.figures.tour import relearn_steps_bars

    rows = relearn_rows(tour_runs)
    verdicts = hidden_or_gone(rows)
    chart, words = side_by_side()
    with words:
        st.subheader("Hidden or gone?")
        st.markdown(
            "A copy of each model is fine-tuned on 64 images of the forgotten class; the bar counts the steps until "
            "it is half way back to the original's accuracy on that class. The retrained model learns the class "
            "from scratch: that is what *gone* costs. A model that gets it back in under half those steps had only "
            "*hidden* it, and anyone with a few samples can undo its unlearning.")
        st.page_link(_shared.page("results"), label="Each run's evidence on Results", icon=":material/table_chart:")
    with chart:
        draw(relearn_steps_bars(rows, verdicts, height=360), "tour_relearn", "tour-relearn-steps")
    st.caption("Relearn time (Golatkar et al., CVPR 2020; Lynch et al., 2024; docs/EVIDENCE.md), recorded as "
               f"`{TOUR_EVIDENCE}` evidence with each run. " + runs_line)
