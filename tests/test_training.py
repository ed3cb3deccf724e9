"""Training and the checkpoint cache: accuracy, cache hits, atomicity, shared init."""

from __future__ import annotations

import pytest
import torch

from unlearn_core import training
from unlearn_core.checkpoints import CheckpointCache, read_checkpoint
from unlearn_core.data import load_dataset
from unlearn_core.errors import CheckpointError
from unlearn_core.forget import ForgetSpec
from unlearn_core.models import build_for_dataset
from unlearn_core.training import accuracy, default_recipe, get_original, get_retrained


@pytest.fixture
def cache(tmp_path):
    return CheckpointCache(tmp_path / "ckpt")


def test_second_request_loads_from_cache_without_training_and_identically(cache, monkeypatch):
    bundle = load_dataset("digits")
    events = []
    first = get_original(bundle, "mlp", seed=0, device="cpu", progress=events.append, cache=cache)
    assert not first.from_cache and events and events[-1].epoch == default_recipe("digits").epochs
    assert events[-1].fraction == pytest.approx(1.0)

    def no_training(*args, **kwargs):
        raise AssertionError("the second request trained instead of loading the cached model")

    monkeypatch.setattr(training, "train_supervised", no_training)
    later = []
    second = get_original(bundle, "mlp", seed=0, device="cpu", progress=later.append, cache=cache)
    assert second.from_cache and second.key == first.key and later == []
    saved = read_checkpoint(cache.path_for(second.key))["state_dict"]
    assert set(saved) == set(second.model.state_dict())
    for key, value in second.model.state_dict().items():
        assert torch.equal(value, saved[key]) and torch.equal(value, first.model.state_dict()[key])
    assert second.train_seconds == pytest.approx(first.train_seconds)
    assert accuracy(second.model, bundle.test_x, bundle.test_y) > 90
    # The test accuracy travels with the checkpoint, so a page can show it without a pass over the test set.
    assert second.meta["test_accuracy"] == pytest.approx(accuracy(second.model, bundle.test_x, bundle.test_y))


def test_cache_key_separates_seed_recipe_and_forget_set(cache):
    bundle = load_dataset("digits")
    short = default_recipe("digits", epochs=2)
    base = get_original(bundle, "mlp", seed=0, recipe=short, device="cpu", cache=cache)
    other_seed = get_original(bundle, "mlp", seed=1, recipe=short, device="cpu", cache=cache)
    other_recipe = get_original(bundle, "mlp", seed=0, recipe=default_recipe("digits", epochs=3), device="cpu",
                                cache=cache)
    retrain3 = get_retrained(bundle, ForgetSpec.parse("class:3").resolve(bundle), "mlp", 0, short, "cpu", cache=cache)
    retrain4 = get_retrained(bundle, ForgetSpec.parse("class:4").resolve(bundle), "mlp", 0, short, "cpu", cache=cache)
    keys = {base.key, other_seed.key, other_recipe.key, retrain3.key, retrain4.key}
    assert len(keys) == 5


def test_retrain_starts_from_the_same_initial_weights_and_never_sees_the_forget_set(cache):
    bundle = load_dataset("digits")
    split = ForgetSpec.parse("class:3").resolve(bundle)
    initial = build_for_dataset("mlp", bundle, seed=0)
    again = build_for_dataset("mlp", bundle, seed=0)
    assert all(torch.equal(initial.state_dict()[k], again.state_dict()[k]) for k in initial.state_dict())
    retrained = get_retrained(bundle, split, "mlp", 0, device="cpu", cache=cache)
    test_3 = bundle.test_y == 3
    assert accuracy(retrained.model, bundle.test_x[test_3], bundle.test_y[test_3]) == 0.0
    assert accuracy(retrained.model, bundle.test_x[~test_3], bundle.test_y[~test_3]) > 90


def test_corrupt_checkpoint_is_set_aside_and_rebuilt(cache):
    bundle = load_dataset("digits")
    recipe = default_recipe("digits", epochs=1)
    first = get_original(bundle, "mlp", seed=0, recipe=recipe, device="cpu", cache=cache)
    path = cache.path_for(first.key)
    path.write_bytes(path.read_bytes()[:100])  # a truncated file, as a crash mid-write would leave without atomicity
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
    rebuilt = get_original(bundle, "mlp", seed=0, recipe=recipe, device="cpu", cache=cache)
    assert not rebuilt.from_cache
    assert path.with_suffix(".corrupt").exists()
    assert read_checkpoint(path)["meta"]["kind"] == "original"


def test_atomic_save_leaves_no_temporary_files(cache):
    bundle = load_dataset("digits")
    get_original(bundle, "mlp", seed=5, recipe=default_recipe("digits", epochs=1), device="cpu", cache=cache)
    assert not list(cache.root.glob("*.tmp"))


@pytest.mark.slow
def test_default_recipe_on_mnist5k_reaches_95_percent(mnist_class3):
    bundle = mnist_class3.bundle
    assert accuracy(mnist_class3.original.model, bundle.test_x, bundle.test_y) >= 95.0


class _Runs:
    """A pickle that would run a command when loaded: ``read_meta`` must refuse it without running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_read_meta_reads_a_checkpoints_metadata_without_torch_and_refuses_anything_else(tmp_path):
    import pickle
    import zipfile

    from unlearn_core.checkpoints import read_meta, save_checkpoint
    from unlearn_core.models import build_model

    meta = {"test_accuracy": 91.25, "parameters": 12, "recipe": {"epochs": 3, "lr": 0.05}, "spec": [1, "x"]}
    save_checkpoint(tmp_path / "model.pt", build_model("small_cnn", 1, (8, 8), 10, seed=0), meta)
    assert read_meta(tmp_path / "model.pt") == read_checkpoint(tmp_path / "model.pt")["meta"] == meta
    assert read_meta(tmp_path / "missing.pt") is None
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert read_meta(tmp_path / "text.pt") is None
    marker = tmp_path / "ran"
    with zipfile.ZipFile(tmp_path / "hostile.pt", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"meta": {"x": _Runs(marker)}, "state_dict": {}}))
    assert read_meta(tmp_path / "hostile.pt") is None and not marker.exists()
    # The cache's own trainings keep the figures a page shows without loading the weights.
    trained = get_original(load_dataset("digits"), "mlp", 0, default_recipe("digits", epochs=1),
                           cache=CheckpointCache(tmp_path / "cache"))
    stored = read_meta(CheckpointCache(tmp_path / "cache").path_for(trained.key))
    assert stored["parameters"] == sum(p.numel() for p in trained.model.parameters())
    assert stored["weight_bytes"] == sum(t.numel() * t.element_size() for t in trained.model.state_dict().values())
