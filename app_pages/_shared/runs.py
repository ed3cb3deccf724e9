"""A stored run as the pages read it (its model, its outputs, its map's features), the map work a run's job
does, and the process's background warm-up."""

from __future__ import annotations

import streamlit as st

from app_pages._shared import resources
from unlearn_core.settings import settings


@st.cache_resource(show_spinner="Loading the run's model ...", max_entries=16)
def _run_model(data_dir: str, run_id: int, _run: dict, _bundle, _device):
    from unlearn_app.state import load_run_model

    return load_run_model(_run, _bundle, _device)


def run_model(run: dict, setup):
    """The unlearned model of a stored run (loaded from its checkpoint once per server process)."""
    return _run_model(resources._data_dir(), int(run["id"]), run, setup.bundle, setup.device)


@st.cache_resource(show_spinner="Evaluating the run's model ...", max_entries=16)
def _run_outputs(data_dir: str, run_id: int, _run: dict, _setup):
    from unlearn_core.metrics import model_outputs

    stored = resources._store(data_dir).run_outputs(run_id)  # what its job kept beside the checkpoint
    if stored is not None and all(len(stored.get(part, ())) == len(idx) for part, idx in (
            ("forget", _setup.split.forget_idx), ("retain", _setup.split.retain_idx),
            ("test", _setup.bundle.test_y))):
        return stored
    return model_outputs(run_model(_run, _setup), _setup.bundle, _setup.split, _setup.device)


def run_outputs(run_id: int, setup, run: dict) -> dict:
    """Softmax outputs of a run's model on the forget, remaining and test sets: the ones its job kept beside its
    checkpoint (:meth:`unlearn_core.store.RunStore.run_outputs`), else computed from its model; once per process.
    ``run`` is one the page listed from the session's view of the store."""
    return _run_outputs(resources._data_dir(), int(run_id), run, setup)


@st.cache_resource(show_spinner="Extracting features ...", max_entries=32)
def _features_and_probs(data_dir: str, model_key: str, digest: str, _model, _bundle, _idx):
    import torch

    from unlearn_core.embeddings import model_panel_data

    panel = model_panel_data(_model, _bundle.train_x[torch.as_tensor(_idx, dtype=torch.long)])
    return panel["features"], panel["probs"]


def features_and_probs(model_key: str, digest: str, model, bundle, idx):
    """Penultimate features and softmax of ``model`` on training samples ``idx`` (once per model and sample set)."""
    return _features_and_probs(resources._data_dir(), model_key, digest, model, bundle, idx)


def run_maps_hook():
    """The ``after`` of a run job (:meth:`unlearn_app.jobs.JobRunner.submit_run`): the run's map panels for the
    Embeddings page's default points (PCA, and UMAP unless switched off), computed in the job once the run is
    recorded and stored in the embedding cache (:func:`unlearn_core.embeddings.run_maps`)."""
    from unlearn_core.embeddings import run_maps
    from unlearn_core.progress import ProgressEvent
    from unlearn_core.umapfit import default_reducers

    cache = resources.embedding_cache()  # resolved here, in the script run: the job's thread has no Streamlit context
    reducers = default_reducers()

    def after(setup, result, progress):
        run_id, _, method_run = result
        progress(ProgressEvent(stage="map", message=f"the run's map ({', '.join(r.upper() for r in reducers)})"))
        run_maps(setup, f"run{run_id}", method_run.model, cache, reducers)

    return after


def warm_in_background() -> None:
    """After this script run: load the other pages' modules, then umap unless it is switched off, in one
    low-priority thread per server process (:func:`unlearn_app.warmup.after_page`)."""
    from unlearn_app.warmup import after_page

    after_page(umap=settings().app_auto_umap)
