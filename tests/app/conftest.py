"""Shared AppTest fixture: a fresh data directory per test that borrows the shared checkpoint cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import streamlit as st


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    """A fresh data directory (fresh run store) that borrows the shared, keyed checkpoint cache.

    Personal mode, no queue limit from the caller's environment, no UMAP (numba compiles for tens of seconds);
    the test's worker is cancelled at the end so no job outlives its test.
    """
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
