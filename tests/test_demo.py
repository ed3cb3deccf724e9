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
    done = prepare_demo("digits", "mlp", seed=0, device="cpu", recipe=_recipe(), progress=events.append)
    assert (done.ready, done.total, done.original, done.complete) == (10, 10, True, True)
    demo_steps = [e for e in events if e.stage == "prepare demo"]
    assert [e.step for e in demo_steps] == list(range(12)) and demo_steps[0].steps == 11
    # A second call trains nothing (every model comes from the cache) and a prepared setting loads, not trains.
    again = []
    prepare_demo("digits", "mlp", seed=0, device="cpu", recipe=_recipe(), progress=again.append)
    assert [e.stage for e in again] == ["prepare demo"] * 12
    setup = prepare("digits", "mlp", "class:7", 0, device="cpu", recipe=_recipe())
    assert setup.original.from_cache and setup.retrained.from_cache


def test_prepare_resumes_after_a_cancel(tmp_path, monkeypatch):
    from unlearn_core.demo import demo_status, prepare_demo
    from unlearn_core.errors import Cancelled

    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    cancel = threading.Event()

    def stop_after_two(event):
        if event.stage == "prepare demo" and event.step == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        prepare_demo("digits", "mlp", seed=0, device="cpu", recipe=_recipe(), progress=stop_after_two, cancel=cancel)
    status = demo_status("digits", "mlp", seed=0, recipe=_recipe())
    assert status.original and status.ready == 2
    assert [c for c, cached in status.references.items() if cached] == [0, 1]
