"""Preparing a demo: the original and every single-class retrained reference, cached and counted."""

import threading

import pytest


# One epoch per model: the tests count and resume cached models; what they learn does not matter here.
def _recipe():
    from unlearn_core.training import default_recipe

    return default_recipe("digits", epochs=1)


def test_status_counts_cached_references_and_prepare_fills_them(tmp_path, monkeypatch):
    """A fresh cache counts 0 of 10; after preparing, 10 of 10 and each key names the model prepare() loads."""
    from unlearn_core.demo import demo_status, prepare_demo
    from unlearn_core.pipeline import prepare

    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    status = demo_status("digits", "mlp", seed=0, recipe=_recipe())
    assert (status.ready, status.total, status.original, status.complete) == (0, 10, False, False)
    assert status.line() == "ready: 0 of 10 references cached (original not trained yet)"
    events = []
    done = prepare_demo("digits", "mlp", seed=0, device="cpu", recipe=_recipe(), progress=events.append,
                        maps=("pca",))
    assert (done.ready, done.total, done.original, done.complete) == (10, 10, True, True)
    demo_steps = [e for e in events if e.stage == "prepare demo"]
    # Each reference, then its setting's maps, under the same step.
    assert [e.step for e in demo_steps] == [0, *[i for i in range(1, 11) for _ in (0, 1)], 11]
    assert demo_steps[0].steps == 11 and demo_steps[2].message == "maps for class:0 (PCA)"
    # A second call trains nothing (every model comes from the cache) and a prepared setting loads, not trains.
    again = []
    prepare_demo("digits", "mlp", seed=0, device="cpu", recipe=_recipe(), progress=again.append, maps=())
    assert [e.stage for e in again] == ["prepare demo"] * 12
    setup = prepare("digits", "mlp", "class:7", 0, device="cpu", recipe=_recipe())
    assert setup.original.from_cache and setup.retrained.from_cache
    # The setting's before map and retrained panel are stored: a run's first map only places its own model.
    import numpy as np

    from unlearn_core.embeddings import EmbeddingCache, cached_panels, default_points, indices_digest, map_indices

    labels = setup.bundle.train_y.numpy()
    idx = map_indices(labels, setup.split.forget_idx, default_points(len(labels)))
    keys = {"before": setup.original.key, "retrained": setup.retrained.key}
    panels = cached_panels(EmbeddingCache(), "pca", indices_digest(idx), np.isin(idx, setup.split.forget_idx), keys)
    assert panels is not None and panels["before"]["coords"].shape == (len(idx), 2)
    assert cached_panels(EmbeddingCache(), "umap", indices_digest(idx), np.isin(idx, setup.split.forget_idx),
                         keys) is None  # only the reducers asked for


def test_prepare_resumes_after_a_cancel(tmp_path, monkeypatch):
    from unlearn_core.demo import demo_status, prepare_demo
    from unlearn_core.errors import Cancelled

    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    cancel = threading.Event()

    def stop_after_two(event):
        if event.stage == "prepare demo" and event.step == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        prepare_demo("digits", "mlp", seed=0, device="cpu", recipe=_recipe(), progress=stop_after_two, cancel=cancel,
                     maps=())
    status = demo_status("digits", "mlp", seed=0, recipe=_recipe())
    assert status.original and status.ready == 2
    assert [c for c, cached in status.references.items() if cached] == [0, 1]
