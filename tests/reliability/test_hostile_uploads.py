"""Issue 11, items 1, 2, 5 and 6: uploads that unpack to gigabytes, exotic tensors, values that only turn
non-finite in the model's dtype, and weights whose outputs are non-finite. Real files, no mocks."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import pytest
import torch

from unlearn_core.checkpoints import (load_state_strict, max_unpacked_bytes, read_checkpoint, save_checkpoint)
from unlearn_core.errors import CheckpointError
from unlearn_core.models import build_model
from unlearn_core.settings import SettingsError


def _mlp():
    return build_model("mlp", 1, (8, 8), 10, seed=0)


def _saved(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _repack(data: bytes, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """The same torch.save archive, entry by entry, re-packed with another compression."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", compression) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
    return out.getvalue()


def test_a_deflated_bomb_is_refused_before_anything_is_unpacked():
    # 64 MiB of zeros deflates to ~64 KiB (about 1000:1); torch.load would inflate it all.
    bomb = _repack(_saved({"weight": torch.zeros(16 * 2**20)}))
    assert len(bomb) < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="compressed entries"):
            read_checkpoint(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20  # nothing near the 64 MiB it declares was allocated


def test_a_deflated_copy_of_a_valid_checkpoint_is_refused_too():
    data = _repack(_saved(_mlp().state_dict()))
    with pytest.raises(CheckpointError, match="torch.save never compresses"):
        read_checkpoint(data)
    assert read_checkpoint(_repack(data, zipfile.ZIP_STORED))["state_dict"]  # stored entries still load


def test_declared_size_over_the_cap_is_refused(monkeypatch):
    data = _saved({"weight": torch.zeros(2**20)})  # 4 MiB declared, stored as torch.save writes it
    monkeypatch.setenv("UNLEARN_MAX_UNPACKED_MB", "2")
    assert max_unpacked_bytes() == 2 * 2**20
    with pytest.raises(CheckpointError, match="declares 4 MiB.*UNLEARN_MAX_UNPACKED_MB"):
        read_checkpoint(data)
    monkeypatch.setenv("UNLEARN_MAX_UNPACKED_MB", "8")
    assert read_checkpoint(data)["state_dict"]["weight"].numel() == 2**20
    monkeypatch.setenv("UNLEARN_MAX_UNPACKED_MB", "-1")
    with pytest.raises(SettingsError, match="UNLEARN_MAX_UNPACKED_MB must be a number of MiB, more than 0"):
        read_checkpoint(data)


def test_our_own_cache_files_are_not_held_to_the_upload_cap(tmp_path, monkeypatch):
    path = tmp_path / "own.pt"
    save_checkpoint(path, _mlp())
    monkeypatch.setenv("UNLEARN_MAX_UNPACKED_MB", "0.01")
    assert read_checkpoint(path)["state_dict"]  # a path is ours (cache, run store), only uploads are capped
    with pytest.raises(CheckpointError, match="UNLEARN_MAX_UNPACKED_MB"):
        read_checkpoint(path.read_bytes())


@pytest.mark.parametrize("make, message", [
    (lambda t: t.to_sparse(), "sparse_coo tensor"),
    (lambda t: t.to_sparse_csr(), "sparse_csr tensor"),
    (lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8), "quantized tensor"),
])
def test_sparse_and_quantized_tensors_are_refused_with_a_message(make, message):
    state = dict(_mlp().state_dict())
    state["body.1.weight"] = make(state["body.1.weight"])
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(_saved(state))


@pytest.mark.parametrize("key, value, message", [
    ("head.bias", torch.full((10,), 1e300, dtype=torch.float64), "infinite values in 'head.bias' \\(as float32"),
    ("head.bias", torch.full((10,), 2**62, dtype=torch.int64), None),  # finite as float32: the probe's job
    ("head.bias", torch.ones(10, dtype=torch.complex64), "complex values"),
])
def test_values_are_judged_in_the_models_dtype(key, value, message):
    model = _mlp()
    state = dict(model.state_dict())
    state[key] = value
    if message is None:
        load_state_strict(model, state)
        assert model.head.bias.dtype == torch.float32 and torch.isfinite(model.head.bias).all()
    else:
        with pytest.raises(CheckpointError, match=message):
            load_state_strict(model, state)
