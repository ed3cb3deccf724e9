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
