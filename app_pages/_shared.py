"""Streamlit glue shared by the pages: session state, cached resources, the jobs panel.

Only drawing and Streamlit state live here; the logic is in ``unlearn_app``
(URL and cookie checks, the session's view of the run store, the setup
cache, the job runner) and ``unlearn_core``. Heavy modules (torch, umap) are
imported inside functions so a page's title and explainer appear before they
load.
"""

from __future__ import annotations

import time

import streamlit as st

from app_pages._progress import job_progress
from unlearn_core.settings import settings

POLL_SECONDS = 0.5

# Plain session keys (not widget keys): they survive page switches, unlike the widgets that set them.
SHARED_KEYS = ("dataset", "model", "forget", "seed")


def init_state() -> None:
    """Defaults for the shared choice: query params, then environment, then the embedded default.

    Runs before any page body. Query parameters are checked against the
    registries first (a URL is anyone's to write): a bad one is dropped with a
    warning that does not repeat it, so no page ever sees an unknown data set
    (``/results?dataset=nope`` was a traceback), a file path or markup.
    Also picks this browser's session token (see :func:`session_owner`).
    """
    from unlearn_app.urlstate import URL_KEYS, VIEW_KEYS, initial_choice, view_from_query

    if "dataset" not in st.session_state:
        from unlearn_app.urlstate import PRESENT_KEY, present_from_query

        values, warnings = initial_choice({k: st.query_params.get(k) for k in URL_KEYS}, settings())
        view, view_warnings = view_from_query({k: st.query_params.get(k) for k in VIEW_KEYS})
        st.session_state.update(values)
        st.session_state["url_view"] = view  # each page takes its values once (url_view), checked again there
        st.session_state["present"], present_warning = present_from_query(st.query_params.get(PRESENT_KEY))
        st.session_state["url_warnings"] = warnings + view_warnings + ([present_warning] if present_warning else [])
    st.session_state.setdefault("seed", 0)
    st.session_state.setdefault("original", "")  # "" = the trained original; else an upload's SHA-256
    st.session_state.setdefault("seen_finished", set())
    _init_session_token()
    # The page sets its view values again during this run (set_view); until it does, the address bar keeps the
    # last run's (or, on a link's first run, the link's checked ones), so the URL is not rewritten twice per run.
    shown = st.session_state.get("_view") or dict(st.session_state.get("url_view") or {})
    st.session_state["_view"] = {}
    sync_url(shown)  # at once too: a page switch may have cleared the query string, and a page may stop early
    for warning in st.session_state.pop("url_warnings", []):  # once, on the page the link opened
        st.warning(md(warning), icon=":material/link_off:")


def browser_token() -> str | None:
    """The session cookie the browser sent when it connected (a reload sends the one set on the earlier visit)."""
    from unlearn_app.urlstate import SESSION_COOKIE

    return st.context.cookies.get(SESSION_COOKIE)


def _init_session_token() -> None:
    """Adopt the browser's session token, or make a new one and have the browser keep it as a cookie.

    A cookie, not a URL parameter: the address bar is what people copy and share, and on a shared server a link
    must never hand its recipient the sender's jobs and runs. The cookie can only be read back on the next
    connection (Streamlit sees the cookies of the opening request), so the writer is sent on every run of a
    session that did not arrive with a valid one: a rerun that replaces the page early cannot lose it.
    """
    from unlearn_app.urlstate import check_session_token, cookie_script, new_session_token

    if "session_token" not in st.session_state:
        token = check_session_token(browser_token())
        st.session_state["session_token"] = token or new_session_token()
        st.session_state["token_from_cookie"] = token is not None
    if not st.session_state["token_from_cookie"]:
        with st.sidebar:
            st.html(cookie_script(st.session_state["session_token"]), unsafe_allow_javascript=True)


def sync_url(view: dict | None = None) -> None:
    """Mirror the shared choice and the page's view (:func:`set_view`; ``view`` instead when given) into the
    address bar, so a reload or a copied link opens the same view.

    Only checked values are written (never the session token), and only when they differ from what the URL
    holds: every write is a message to the browser and a history entry. Any other parameter is dropped.
    """
    from unlearn_app.urlstate import URL_KEYS, url_params

    view = st.session_state.get("_view", {}) if view is None else view
    wanted = url_params({key: st.session_state.get(key) for key in URL_KEYS}, view)
    if st.session_state.get("present"):
        wanted["present"] = "1"
    if {key: st.query_params.get(key) for key in st.query_params} != wanted:
        st.query_params.from_dict(wanted)


def set_view(key: str, value) -> None:
    """What the page shows for a view key (``eps``, ``run``...: :data:`unlearn_app.urlstate.VIEW_KEYS`), for the
    address bar at the end of this run; a fragment's rerun calls :func:`sync_url` itself."""
    st.session_state.setdefault("_view", {})[key] = value


def url_view(key: str):
    """The link's checked value for a view key, handed out once (the page applies it on its first visit)."""
    return (st.session_state.get("url_view") or {}).pop(key, None)


def apply_url_choice(key: str, widget_key: str, allowed, reason: str) -> None:
    """Put the link's checked ``key`` value into ``widget_key`` when the page lists it (``allowed``: on a shared
    server only the session's own runs and sweeps, :class:`~unlearn_app.access.RunView`), else drop it with
    ``reason``; then forget a widget value the page no longer lists."""
    linked = url_view(key)
    if linked is not None:
        if linked in allowed:
            st.session_state[widget_key] = linked
        else:
            drop_url_value(key, reason)
    if st.session_state.get(widget_key) not in allowed:
        st.session_state.pop(widget_key, None)


def drop_url_value(key: str, reason: str) -> None:
    """A link's view value the page cannot use (a run this visitor may not see, a sweep that is not there):
    dropped with a warning that does not repeat it."""
    st.warning(f"The link's {key} was ignored: {reason}.", icon=":material/link_off:")
def presentation() -> bool:
    """Presentation mode (:mod:`unlearn_app.present`): its toggle, and its stylesheet while it is on.

    Off, the toggle sits in the sidebar; on, the sidebar is hidden and the toggle sits at the top right of the
    page, in a ``keep_`` container the stylesheet leaves visible. One widget key in both places, mirrored into
    the plain ``present`` key that the address bar keeps (``?present=1``). Returns whether the mode is on.
    """
    from unlearn_app.present import PRESENT_CSS

    st.session_state["w_present"] = bool(st.session_state.get("present"))

    def flip() -> None:
        st.session_state["present"] = bool(st.session_state["w_present"])

    label, tip = "Presentation mode", ("Hide the sidebar and the controls and enlarge text and charts for a "
                                       "projector (1280 x 720); every choice and run stays as it is. The address "
                                       "bar keeps it as ?present=1.")
    if st.session_state["present"]:
        st.html(f"<style>{PRESENT_CSS}</style>")
        with st.container(key="keep_present_toggle", horizontal=True, horizontal_alignment="right"):
            st.toggle(label, key="w_present", on_change=flip, help=tip)
    else:
        with st.sidebar:
            st.toggle(label, key="w_present", on_change=flip, help=tip)
    return bool(st.session_state["present"])


def md(text) -> str:
    """Escape user- or URL-controlled text for any markdown-rendering call (st.markdown, st.error, captions)."""
    from unlearn_app.urlstate import escape_markdown

    return escape_markdown(text)


def code(text) -> str:
    """User-controlled text as a literal inline code span (a backtick can no longer break out of it)."""
    from unlearn_app.urlstate import markdown_code

    return markdown_code(text)


def show_error(error) -> None:
    """An error box whose text cannot turn into a link, an image or other markup."""
    st.error(md(error))


def finish_run() -> None:
    """End of a script run: the address bar and the sidebar show the choice now in force."""
    sync_url()
    with st.sidebar:
        original = " · uploaded original" if st.session_state.get("original") else ""
        st.caption(f"**Current choice**  \n{md(st.session_state['dataset'])} · "
                   f"{md(st.session_state['model'] or 'default model')} · seed {int(st.session_state['seed'])}"
                   f" · forget {forget_md(st.session_state['forget'])}{original}")
        if st.session_state.get("forget_pending"):
            st.caption(":orange[The Forget set page has no samples picked yet; the forget set above stays in force.]")
        st.caption("The address bar keeps this choice: reload, bookmark or share it. Your jobs come back on reload "
                   "in this browser; a shared link opens the choice, never your jobs or runs.")
        if shared():
            st.caption("Shared server: you see and download only the runs of this browser session.")
        st.radio("Chart downloads (camera button)", list(CHART_FORMATS), horizontal=True, key="w_chart_format",
                 help="What the camera button of every chart saves: a PNG at twice the drawn size, or an SVG that "
                      "scales without loss (for slides). The file is named after the chart, method, data set and "
                      "forget set.")


def stop() -> None:
    """``st.stop()`` that still updates the address bar and the sidebar (nothing can be drawn after a stop)."""
    finish_run()
    st.stop()


def forget_md(spec) -> str:
    """A forget spec for markdown: a literal code span, or "hand-picked, N samples" instead of an index list."""
    from unlearn_app.urlstate import forget_label

    label = forget_label(spec)
    return code(label) if label == str(spec) else md(label)


def shared() -> bool:
    """``UNLEARN_SHARED``: a server many people open; each session sees only its own runs and uploads."""
    return settings().shared


def upload_owner() -> str:
    """Whose uploads these are: the browser session on a shared server; everyone on a personal one."""
    return session_owner() if shared() else ""


def choice():
    """The session's shared choice (:func:`unlearn_app.state.resolve_choice`), written back to the session."""
    from unlearn_app.state import resolve_choice

    asked = st.session_state.get("original", "")
    current = resolve_choice(st.session_state, setups(), upload_owner())
    if asked and not current.original and setups().upload(upload_owner(), asked) is None:
        st.warning("Your uploaded model is no longer held by the server (its memory for uploads is full, or it "
                   "restarted); the trained original is used now. Upload it again on **Setup** to use it.",
                   icon=":material/warning:")
    st.session_state["model"], st.session_state["original"] = current.model, current.original
    return current


CHART_FORMATS = {"PNG 2x": "png", "SVG": "svg"}


def chart_config(chart: str, method: str | None = None, run_id: int | None = None) -> dict:
    """A chart's plotly config: its camera button saves PNG at 2x or SVG (the sidebar's choice) under a name that
    says what it shows (:func:`unlearn_core.slides.figure_filename`: method, run, data set, forget set, chart)."""
    from unlearn_app.urlstate import forget_label
    from unlearn_core.slides import download_config, figure_filename

    name = figure_filename(chart, method=method, dataset=st.session_state.get("dataset"),
                           forget=forget_label(st.session_state.get("forget", "")), run_id=run_id)
    return download_config(name, CHART_FORMATS.get(st.session_state.get("w_chart_format"), "png"))


def vega_chart(spec: dict, chart: str, key: str, method: str | None = None) -> None:
    """Draw a Vega-Lite ``spec`` (:mod:`unlearn_core.figures.vega`) with a download button under it that saves it
    as the sidebar's chart format (PNG at 2x or SVG) under :func:`chart_config`'s file name, rendered on click."""
    from unlearn_core.figures.vega import export_chart

    config = chart_config(chart, method)["toImageButtonOptions"]
    fmt, name = config["format"], config["filename"]
    st.vega_lite_chart(None, {**spec, "datasets": dict(spec.get("datasets") or {})}, width="stretch", key=key)
    st.download_button(f"{name}.{fmt}", data=lambda: export_chart(spec, fmt), file_name=f"{name}.{fmt}",
                       mime="image/svg+xml" if fmt == "svg" else "image/png", on_click="ignore", type="tertiary",
                       icon=":material/download:", key=f"{key}_download",
                       help="Save this chart (the sidebar chooses PNG at twice the drawn size or SVG).")


def explainer(text: str) -> None:
    with st.expander("What am I looking at?", expanded=False):
        st.markdown(text)


def _data_dir() -> str:
    from unlearn_core.paths import data_dir

    return str(data_dir())


@st.cache_resource(show_spinner=False)
def _runner(data_dir: str):
    from unlearn_app.state import Limits
    from unlearn_app.jobs import JobRunner

    limits = Limits.from_env()

    def disk_check():
        from unlearn_core.cost import disk_full_reason
        from unlearn_core.store import RunStore

        return disk_full_reason(RunStore())

    from unlearn_app.dispatch import make_engine
    from unlearn_core.settings import settings

    current = settings()
    engine = make_engine(current)
    engine.start()  # Ray starts beside the first page rather than on the first click
    return JobRunner(max_per_owner=limits.jobs_per_session, results_bytes=limits.job_results_bytes,
                     max_trainings_per_owner=limits.trainings_per_session,
                     max_queued_trainings=limits.server_queued_trainings, disk_check=disk_check,
                     engine=engine, max_running=current.max_running,
                     max_running_per_visitor=current.max_running_per_visitor)


@st.cache_resource(show_spinner=False)
def _setups(data_dir: str):
    from unlearn_app.state import SetupCache

    return SetupCache()  # bounded by UNLEARN_SETUP_CACHE_MB


@st.cache_resource(show_spinner=False)
def _store(data_dir: str):
    from unlearn_core.store import RunStore

    return RunStore()


@st.cache_resource(show_spinner=False)
def _embedding_cache(data_dir: str):
    from unlearn_core.embeddings import EmbeddingCache

    return EmbeddingCache()


# The data directory is part of every key, so tests that switch UNLEARN_DATA_DIR never share state.
def runner():
    return _runner(_data_dir())


def setups():
    return _setups(_data_dir())


def store():
    """The run store as this session may see it (every run, or on a shared server only its own)."""
    from unlearn_app.access import RunView

    return RunView(_store(_data_dir()), session_owner(), shared(), st.session_state.get("original", ""))


def embedding_cache():
    return _embedding_cache(_data_dir())


def run_artifacts(run_id: int) -> dict | None:
    """Artifacts of a run finished in this server process (the run store keeps reports, not artifacts)."""
    return runner().run_artifacts(run_id, session_owner() if shared() else None)


def original_ready(current) -> bool:
    return setups().original_ready(current)


def current_setup(with_retrain: bool = False):
    """The prepared setup for the shared choice if its models are on disk, else stop with a pointer to Setup."""
    from unlearn_core.errors import UnlearnError

    try:
        current = choice()
        if not original_ready(current):
            st.info("No original model yet for this data set and model. Train or load it on the **Setup** page.")
            st.page_link(page("setup"), label="Go to Setup", icon=":material/tune:")
            stop()
        return setups().get(current, with_retrain=with_retrain)
    except UnlearnError as error:
        show_error(error)
        stop()


PAGES: dict = {}


def page(name: str):
    return PAGES[name]


def session_owner() -> str:
    """This browser's session token: jobs (and on a shared server runs and uploads) belong to it.

    Streamlit's own session id changes on every reload, which emptied the jobs panel; the token comes back with
    the browser's cookie (``init_state``). Outside a script run (never in the app) it is "local".
    """
    token = st.session_state.get("session_token") if _in_script_run() else None
    return token or "local"


def _in_script_run() -> bool:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return get_script_run_ctx() is not None


JOBS_PER_PAGE = 8


def _job_row(job, snap) -> None:
    """One job: a progress bar with Cancel while it runs, then its outcome."""
    from unlearn_app.jobs import DONE, FAILED

    if not snap.finished:
        cols = st.columns([5, 1])
        with cols[0]:
            job_progress(snap, *runner().wait_estimate(job))  # one bar per phase, each with its time
        if cols[1].button("Cancel", key=f"cancel_{snap.job_id}", icon=":material/stop_circle:"):
            job.cancel()
            st.toast(f"Cancelling {snap.label} ...")
    elif snap.status == DONE:
        st.success(md(snap.describe() + (f" (run #{snap.run_id})" if snap.run_id else "")),
                   icon=":material/check_circle:")
    elif snap.status == FAILED:
        st.error(md(f"{snap.label} failed: {snap.error}"))
    else:
        st.warning(md(snap.describe()), icon=":material/cancel:")


def jobs_panel(kind: str | None = None, title: str = "Jobs") -> None:
    """Live progress of this session's jobs with cancel buttons; reruns the page when a job ends.

    Every job of the session is listed: the running and queued ones always (the queue limit keeps them few),
    the finished ones newest first, a page of ``JOBS_PER_PAGE`` at a time (the panel used to show the last 8 and
    silently hide the rest).
    """
    owner = session_owner()
    active = runner().active(kind, owner)

    @st.fragment(run_every=POLL_SECONDS if active else None)
    def panel():
        jobs = runner().jobs(kind, owner)
        if not jobs:
            return
        st.markdown(f"**{title}**")
        mine = runner().active(owner=owner)
        others = len(runner().active()) - len(mine)
        if mine and others > 0:
            st.caption(f"{others} job(s) of other sessions share the worker; yours run in turn.")
        snaps = {job.job_id: job.snapshot() for job in jobs}
        unfinished = [job for job in reversed(jobs) if not snaps[job.job_id].finished]
        finished = [job for job in reversed(jobs) if snaps[job.job_id].finished]
        for job in unfinished:
            _job_row(job, snaps[job.job_id])
        if finished:
            pages = -(-len(finished) // JOBS_PER_PAGE)
            page_no = 1
            if pages > 1:
                def span(p: int) -> str:
                    last = min(p * JOBS_PER_PAGE, len(finished))
                    return f"{(p - 1) * JOBS_PER_PAGE + 1}-{last} of {len(finished)} finished"

                page_no = st.selectbox("Finished jobs, newest first", range(1, pages + 1), format_func=span,
                                       key=f"jobs_page_{kind or 'all'}")
            for job in finished[(page_no - 1) * JOBS_PER_PAGE:page_no * JOBS_PER_PAGE]:
                _job_row(job, snaps[job.job_id])
        # Rerun the whole page once when a job that was running as the page drew has ended, so its results show.
        seen = st.session_state.setdefault("seen_finished", set())
        ended = {job.job_id for job in finished} & {job.job_id for job in active} - seen
        seen.update(ended)
        if ended:
            st.rerun(scope="app")

    panel()


def queue_runs(items: list, evidence=()) -> int:
    """Queue ``items`` (``(choice, method, resolved params)``) in the worker, all or none; returns how many.

    Checked as one batch first (:meth:`unlearn_app.jobs.JobRunner.check`): the session's limits, counting the
    original and retrained models each setting still has to train, and no run identical to one of the session's
    queued or running runs (:func:`unlearn_app.jobs.run_fingerprint`). Raises ``UnlearnError`` with one line.
    """
    from unlearn_app.jobs import run_fingerprint
    from unlearn_app.urlstate import forget_label
    from unlearn_core.cost import run_cost
    from unlearn_core.forget import ForgetSpec, index_root
    from unlearn_core.sweeps.single import run_request

    trainings = {}
    for request, _, _ in items:
        if request.key() not in trainings:
            # What the batch trains: its runs, and the original and retrained model while they are not cached.
            spec = ForgetSpec.parse(request.forget, allow_files=False, files_root=index_root())
            models = run_cost(request.dataset, request.model, spec, request.seed, method_runs=0)
            trainings[request.key()] = models.references if request.original else models.trainings
    fingerprints = [run_fingerprint(request.dataset, request.model, request.forget, request.seed, method, params,
                                    request.original) for request, method, params in items]
    # All or nothing: a half-queued batch would leave the user guessing which runs run. A run identical to one
    # still queued or running (a double click, a second submission) is refused.
    runner().check(session_owner(), len(items) + sum(trainings.values()), jobs=len(items),
                   fingerprints=tuple(fingerprints))
    maps = run_maps_hook()  # each run's map for Embeddings, computed in its job
    for (request, method, params), fingerprint in zip(items, fingerprints):
        def provider(progress, cancel, request=request):
            return setups().get(request, progress, cancel, with_retrain=True)

        runner().submit_run(
            provider, method, params, store=store(),
            label=f"{method} on {request.dataset}/{forget_label(request.forget)}"
                  + (f" · seed {request.seed}" if request.seed else ""),
            meta={"forget": request.forget, "dataset": request.dataset, "owner": session_owner(),
                  "fingerprint": fingerprint, "trainings": 1 + trainings.pop(request.key(), 0)},
            # Runs of an uploaded original are shown only next to that upload, never as the trained one's.
            extra_config={"original_upload": request.original} if request.original else None,
            evidence=",".join(evidence or ()) or None,
            # The same choice as plain data, for an engine that runs it elsewhere (UNLEARN_ENGINE=ray); an
            # uploaded original lives in this process only, so its runs execute here.
            request=None if request.original else run_request(request.dataset, request.model, request.forget,
                                                              request.seed, method, device=request.device),
            after=maps)
    warm_in_background()  # umap loads while the runs train, so the map is quick later
    return len(items)


def keep_widgets(name: str, keys) -> None:
    """Remember widget values in a plain key: Streamlit drops a widget's key when a page without it runs."""
    kept = st.session_state.setdefault(f"kept_{name}", {})
    kept.update({key: st.session_state[key] for key in keys if key in st.session_state})


def restore_widgets(name: str) -> None:
    """Put remembered widget values back before the page draws its widgets again."""
    for key, value in st.session_state.get(f"kept_{name}", {}).items():
        if key not in st.session_state:
            st.session_state[key] = value


def wait_note() -> None:
    st.caption("Work runs in one background worker: you can switch pages while it runs; nothing is lost on reload.")


def timed(label: str):
    """A tiny context manager for dev timing in the page footer (shown only with UNLEARN_APP_TIMINGS=1)."""
    class _Timer:
        def __enter__(self):
            self.started = time.perf_counter()
            return self

        def __exit__(self, *exc):
            if settings().app_timings:
                st.caption(f"{label}: {time.perf_counter() - self.started:.3f} s")
    return _Timer()


def report_button(container, runs: list[dict], source: tuple[str, str], file_name: str, key: str,
                  sweep: dict | None = None) -> None:
    """A "Download report (HTML)" button: :mod:`unlearn_core.handout`'s self-contained report of ``runs``.

    The page is built only when the button is clicked (Streamlit calls ``data`` then, on its own thread, with no
    Streamlit call inside), so drawing the page costs nothing. ``runs`` are the ones this session may see.
    """
    from unlearn_core.handout import Selection, build_handout

    done = [r for r in runs if r.get("status") == "done" and r.get("report")]
    if not done:
        return
    done_ids = {r["id"] for r in done}
    selection = Selection(source, sorted(done, key=lambda r: r["id"]),
                          [r for r in runs if r["id"] not in done_ids], sweep)
    raw_store = None if shared() else _store(_data_dir())  # a shared server does not show its paths

    def build() -> bytes:
        return build_handout(raw_store, selection).encode("utf-8")

    container.download_button("Download report (HTML)", data=build, file_name=file_name, mime="text/html",
                              on_click="ignore", icon=":material/description:", key=key,
                              help="One self-contained HTML file to take away: the setting, the metrics (mean and "
                                   "95 % interval over seeds), per-class shifts, the aligned embeddings, UNSC's "
                                   "spectrum, NatMU's hybrids, the evidence and the recipe to reproduce every run. "
                                   "It opens offline. Built when you click (some seconds).")


@st.cache_resource(show_spinner="Loading the run's model ...", max_entries=16)
def _run_model(data_dir: str, run_id: int, _run: dict, _bundle, _device):
    from unlearn_app.state import load_run_model

    return load_run_model(_run, _bundle, _device)


def run_model(run: dict, setup):
    """The unlearned model of a stored run (loaded from its checkpoint once per server process)."""
    return _run_model(_data_dir(), int(run["id"]), run, setup.bundle, setup.device)


@st.cache_resource(show_spinner="Evaluating the run's model ...", max_entries=16)
def _run_outputs(data_dir: str, run_id: int, _run: dict, _setup):
    from unlearn_core.metrics import model_outputs

    stored = _store(data_dir).run_outputs(run_id)  # what its job kept beside the checkpoint
    if stored is not None and all(len(stored.get(part, ())) == len(idx) for part, idx in (
            ("forget", _setup.split.forget_idx), ("retain", _setup.split.retain_idx),
            ("test", _setup.bundle.test_y))):
        return stored
    return model_outputs(run_model(_run, _setup), _setup.bundle, _setup.split, _setup.device)


def run_outputs(run_id: int, setup, run: dict) -> dict:
    """Softmax outputs of a run's model on the forget, remaining and test sets: the ones its job kept beside its
    checkpoint (:meth:`unlearn_core.store.RunStore.run_outputs`), else computed from its model; once per process.
    ``run`` is one the page listed from the session's view of the store."""
    return _run_outputs(_data_dir(), int(run_id), run, setup)


@st.cache_resource(show_spinner="Extracting features ...", max_entries=32)
def _features_and_probs(data_dir: str, model_key: str, digest: str, _model, _bundle, _idx):
    import torch

    from unlearn_core.embeddings import model_panel_data

    panel = model_panel_data(_model, _bundle.train_x[torch.as_tensor(_idx, dtype=torch.long)])
    return panel["features"], panel["probs"]


def features_and_probs(model_key: str, digest: str, model, bundle, idx):
    """Penultimate features and softmax of ``model`` on training samples ``idx`` (once per model and sample set)."""
    return _features_and_probs(_data_dir(), model_key, digest, model, bundle, idx)


def run_maps_hook():
    """The ``after`` of a run job (:meth:`unlearn_app.jobs.JobRunner.submit_run`): the run's map panels for the
    Embeddings page's default points (PCA, and UMAP unless switched off), computed in the job once the run is
    recorded and stored in the embedding cache (:func:`unlearn_core.embeddings.run_maps`)."""
    from unlearn_core.embeddings import run_maps
    from unlearn_core.progress import ProgressEvent

    cache = embedding_cache()  # resolved here, in the script run: the job's thread has no Streamlit context
    reducers = ("pca", "umap") if settings().app_auto_umap else ("pca",)

    def after(setup, result, progress):
        run_id, _, method_run = result
        progress(ProgressEvent(stage="map", message=f"the run's map ({', '.join(r.upper() for r in reducers)})"))
        run_maps(setup, f"run{run_id}", method_run.model, cache, reducers)

    return after


VIEWED_RUN = "viewed_run"  # session key: the run the user looked at last (Results' detail, the Embeddings map)


def note_viewed_run(run_id) -> None:
    """Remember ``run_id`` as the run the user looked at last."""
    if run_id is not None:
        st.session_state[VIEWED_RUN] = int(run_id)


def viewed_run(run_ids) -> int | None:
    """The run the user looked at last if it is among ``run_ids``, else None."""
    viewed = st.session_state.get(VIEWED_RUN)
    return viewed if viewed in list(run_ids) else None


def warm_in_background() -> None:
    """After this script run: load the other pages' modules, then umap unless it is switched off, in one
    low-priority thread per server process (:func:`unlearn_app.warmup.after_page`)."""
    from unlearn_app.warmup import after_page

    after_page(umap=settings().app_auto_umap)
