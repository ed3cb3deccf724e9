"""Deterministic mode: what one seed reproduces, whatever thread count the process starts with."""

from __future__ import annotations

import os

import pytest
import torch

from unlearn_core.device import deterministic_mode, timing_conditions
from unlearn_core.errors import UnlearnError
from unlearn_core.pipeline import run_method


@pytest.fixture()
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_deterministic_mode_sets_and_restores_torch_state(restore_threads, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.set_num_threads(2)
    assert timing_conditions("cpu")["deterministic"] is False
    with deterministic_mode(threads=1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        conditions = timing_conditions("cpu")
        assert conditions["deterministic"] is True and conditions["threads"] == 1
    assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with deterministic_mode():
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # a user's own setting is kept
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(UnlearnError):
            with deterministic_mode(threads=bad):
                pass


def _weights(setup, method, params):
    return run_method(setup, method, params).model.state_dict()


def test_same_seed_gives_identical_weights_from_processes_at_1_and_2_threads(digits_class3, restore_threads):
    """RL on digits, seed 0: started at 1 and at 2 torch threads, deterministic mode computes both with one thread,
    so the weights are bit-identical. (Without the mode the two differ on this machine's CPU torch, by ~3e-8: the
    two-thread reductions add in another order.) Two runs at the same thread count also agree."""
    params = {"epochs": 1}
    runs = []
    for start_threads in (1, 2):
        torch.set_num_threads(start_threads)
        with deterministic_mode(threads=1):
            runs.append(_weights(digits_class3, "rl", params))
    assert runs[0].keys() == runs[1].keys()
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
    with deterministic_mode(threads=2):
        first, second = _weights(digits_class3, "rl", params), _weights(digits_class3, "rl", params)
    for key in first:
        assert torch.equal(first[key], second[key]), key
