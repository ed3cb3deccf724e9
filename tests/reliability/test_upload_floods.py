"""An upload of many tiny tensors sharing one storage is refused from its zip directory, before torch.load."""

from __future__ import annotations

import io
import tracemalloc

import pytest
import torch

from unlearn_core.checkpoints import MAX_CHECKPOINT_TENSORS, read_checkpoint
from unlearn_core.errors import CheckpointError
from unlearn_core.models import MODELS, build_model


def _saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_fits_the_tensor_bound(name):
    model = build_model(name, 3, (32, 32), 100, (0.5,) * 3, (0.25,) * 3, seed=0)
    assert len(model.state_dict()) < MAX_CHECKPOINT_TENSORS / 4
    loaded = read_checkpoint(_saved({"state_dict": model.state_dict(), "meta": {}}))  # accepted as before
    assert set(loaded["state_dict"]) == set(model.state_dict())


def test_a_flood_of_views_of_one_storage_is_refused_quickly():
    base = torch.zeros(64)
    flood = {f"t{i}": base[i % 64:i % 64 + 1] for i in range(100_000)}  # 100,000 views of one storage
    data = _saved(flood)
    assert len(data) < 20 * 2**20
    tracemalloc.start()
    with pytest.raises(CheckpointError, match=f"more than {MAX_CHECKPOINT_TENSORS:,} tensors"):
        read_checkpoint(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Refused from the opcodes of data.pkl: the bytes of the upload itself, not the 100,000 rebuilt tensors.
    assert peak < 3 * len(data) + 16 * 2**20


def test_just_under_the_bound_is_accepted():
    state = {f"w{i}": torch.zeros(1) for i in range(MAX_CHECKPOINT_TENSORS - 1)}
    assert len(read_checkpoint(_saved(state))["state_dict"]) == MAX_CHECKPOINT_TENSORS - 1
