"""The checkpoint cache stays under UNLEARN_CHECKPOINT_CACHE_MB: least recently used first, pinned never."""

from __future__ import annotations

import os
import time

import torch

from unlearn_core.checkpoints import CheckpointCache


def _model(width: int) -> torch.nn.Module:
    return torch.nn.Linear(width, width, bias=False)  # width**2 * 4 bytes of weights


def test_oldest_unpinned_entries_go_first(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_CHECKPOINT_CACHE_MB", "100")
    cache = CheckpointCache(tmp_path)
    for i, key in enumerate(("a", "b", "c", "d")):
        cache.save(key, _model(128))  # ~64 KiB each
        os.utime(cache.path_for(key), (time.time() - 100 + i, time.time() - 100 + i))
    cache.pin("a")
    size = cache.path_for("b").stat().st_size
    pruned = cache.enforce_quota(quota_bytes=2 * size + 10)
    assert pruned == ["b", "c"]  # a is pinned, d the most recent
    assert sorted(k for k, *_ in cache.entries()) == ["a", "d"]


def test_a_load_counts_as_a_use(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_CHECKPOINT_CACHE_MB", "100")
    cache = CheckpointCache(tmp_path)
    cache.save("old", _model(64))
    cache.save("new", _model(64))
    os.utime(cache.path_for("old"), (1, 1))
    os.utime(cache.path_for("new"), (2, 2))
    assert cache.load("old", _model(64)) is not None  # used now: "new" becomes the least recent
    assert cache.enforce_quota(quota_bytes=cache.path_for("old").stat().st_size + 10) == ["new"]


def test_save_keeps_the_cache_under_its_quota(tmp_path, monkeypatch):
    cache = CheckpointCache(tmp_path)
    cache.save("x", _model(128))
    size = cache.path_for("x").stat().st_size
    monkeypatch.setenv("UNLEARN_CHECKPOINT_CACHE_MB", str(2.5 * size / 2**20))
    for key in ("y", "z", "w"):
        time.sleep(0.01)
        cache.save(key, _model(128))
        assert cache.total_bytes() <= 2.5 * size
        assert cache.path_for(key).exists()  # never the entry just written
