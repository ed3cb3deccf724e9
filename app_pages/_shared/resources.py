"""What one server process holds for every session, by data directory (the job runner, the setup cache, the
run store, the map cache), and the session's views of them: its choice, its setup, its runs."""

from __future__ import annotations

import streamlit as st

from app_pages._shared import session, text


def choice():
    """The session's shared choice (:func:`unlearn_app.state.resolve_choice`), written back to the session."""
    from unlearn_app.state import resolve_choice

    asked = st.session_state.get("original", "")
    current = resolve_choice(st.session_state, setups(), session.upload_owner())
    if asked and not current.original and setups().upload(session.upload_owner(), asked) is None:
        st.warning("Your uploaded model is no longer held by the server (its memory for uploads is full, or it "
                   "restarted); the trained original is used now. Upload it again on **Setup** to use it.",
                   icon=":material/warning:")
    st.session_state["model"], st.session_state["original"] = current.model, current.original
    return current


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

    return RunView(_store(_data_dir()), session.session_owner(), session.shared(), st.session_state.get("original", ""))


def embedding_cache():
    return _embedding_cache(_data_dir())


def run_artifacts(run_id: int) -> dict | None:
    """Artifacts of a run finished in this server process (the run store keeps reports, not artifacts)."""
    return runner().run_artifacts(run_id, session.session_owner() if session.shared() else None)


def original_ready(current) -> bool:
    return setups().original_ready(current)


def current_setup(with_retrain: bool = False):
    """The prepared setup for the shared choice if its models are on disk, else stop with a pointer to Setup."""
    from unlearn_core.errors import UnlearnError

    try:
        current = choice()
        if not original_ready(current):
            st.info("No original model yet for this data set and model. Train or load it on the **Setup** page.")
            st.page_link(session.page("setup"), label="Go to Setup", icon=":material/tune:")
            session.stop()
        return setups().get(current, with_retrain=with_retrain)
    except UnlearnError as error:
        text.show_error(error)
        session.stop()
