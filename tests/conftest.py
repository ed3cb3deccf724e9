"""Shared fixtures: a persistent test cache directory and prepared digits/mnist5k setups."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Checkpoints are keyed by everything that determines them, so reusing them across test runs is sound.
os.environ.setdefault("UNLEARN_DATA_DIR", str(REPO / ".unlearn_data" / "tests"))
os.environ.setdefault("UNLEARN_IMAGE_ROOT", str(Path(os.environ["UNLEARN_DATA_DIR"]) / "imagefolders"))

_setups: dict = {}


def prepared(dataset: str, forget: str, model: str | None = None, seed: int = 0):
    """A cached :class:`unlearn_core.pipeline.Setup` for this test session."""
    from unlearn_core.pipeline import prepare

    key = (dataset, forget, model, seed)
    if key not in _setups:
        _setups[key] = prepare(dataset, model, forget, seed, device="cpu")
    return _setups[key]


@pytest.fixture(scope="session")
def digits_class3():
    return prepared("digits", "class:3", "mlp")


@pytest.fixture(scope="session")
def digits_random():
    return prepared("digits", "random:0.1", "mlp")


@pytest.fixture(scope="session")
def mnist_class3():
    return prepared("mnist5k", "class:3")


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    """For AppTests: a fresh data directory (fresh run store) that borrows the shared, keyed checkpoint cache.

    Personal mode, no queue limit from the caller's environment, no UMAP (numba compiles for tens of seconds);
    the test's worker is cancelled at the end so no job outlives its test. (Here and not in tests/app/conftest.py:
    two conftest modules would both be imported as ``conftest`` and hide ``prepared`` from the method tests.)
    """
    import streamlit as st

    shared = Path(os.environ["UNLEARN_DATA_DIR"]) / "checkpoints"
    shared.mkdir(parents=True, exist_ok=True)
    (tmp_path / "checkpoints").symlink_to(shared, target_is_directory=True)
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UNLEARN_DEFAULT_DATASET", "digits")
    monkeypatch.setenv("UNLEARN_APP_AUTO_UMAP", "0")
    monkeypatch.delenv("UNLEARN_SHARED", raising=False)
    monkeypatch.delenv("UNLEARN_MAX_JOBS_PER_SESSION", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield tmp_path
    from app_pages import _shared

    _shared._runner(str(tmp_path)).cancel_all()
    st.cache_data.clear()
    st.cache_resource.clear()
