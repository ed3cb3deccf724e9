"""Outputs computed once and kept: the reference models' (data_dir/outputs) and each run's (beside its
checkpoint), so a new server process opens Results without running any model over the data again."""

from __future__ import annotations

import numpy as np
import pytest

from tests.app.test_app_views import open_page, record


def _no_model_outputs(*args, **kwargs):
    raise AssertionError("a model was evaluated over the data again")


def test_reference_outputs_are_read_back_by_a_new_setup_without_running_the_model(app_env, monkeypatch):
    from unlearn_core import metrics, pipeline
    from unlearn_core.pipeline import prepare

    first = prepare("digits", "mlp", "class:3", 0, device="cpu")
    computed = {which: first.outputs(which) for which in ("original", "retrained")}
    fresh = metrics.model_outputs(first.original.model, first.bundle, first.split, first.device)
    assert all(np.allclose(computed["original"][k], fresh[k]) for k in fresh)
    assert len(list((app_env / "outputs").glob("*.npz"))) == 2

    pipeline._outputs_caches.clear()  # as in a new process: nothing in memory, the files on disk
    monkeypatch.setattr(pipeline, "model_outputs", _no_model_outputs)
    again = prepare("digits", "mlp", "class:3", 0, device="cpu")
    for which in ("original", "retrained"):
        assert all(np.array_equal(again.outputs(which)[k], computed[which][k]) for k in ("forget", "retain", "test"))
    # Another forget set is another split: its outputs are not these.
    other = prepare("digits", "mlp", "class:5", 0, device="cpu")
    with pytest.raises(AssertionError, match="evaluated"):
        other.outputs("original")


def test_a_recorded_run_keeps_its_outputs_beside_its_checkpoint_and_loses_them_with_it(app_env):
    from unlearn_core import metrics
    from unlearn_core.pipeline import prepare
    from unlearn_core.store import RunStore, delete_run

    run_id, = record(app_env, {"finetune": {"epochs": 1}})
    store = RunStore(app_env / "runs.sqlite")
    path = store.run_outputs_path(run_id)
    assert path.exists() and path.parent == store.checkpoint_path(run_id).parent
    kept = store.run_outputs(run_id)
    from unlearn_app.state import load_run_model

    setup = prepare("digits", "mlp", "class:3", 0, device="cpu")
    unlearned = load_run_model(store.get(run_id), setup.bundle, setup.device)
    fresh = metrics.model_outputs(unlearned, setup.bundle, setup.split, setup.device)
    assert set(kept) == {"forget", "retain", "test"}
    assert all(np.allclose(kept[k], fresh[k], atol=1e-6) for k in kept)

    delete_run(run_id, store)
    assert not path.exists() and store.run_outputs(run_id) is None


def test_results_opens_a_stored_run_without_evaluating_any_model(app_env, monkeypatch):
    from unlearn_core import metrics, pipeline

    record(app_env, {"finetune": {"epochs": 1}, "ga": {}})
    pipeline._outputs_caches.clear()
    monkeypatch.setattr(metrics, "model_outputs", _no_model_outputs)
    monkeypatch.setattr(pipeline, "model_outputs", _no_model_outputs)
    at = open_page("results")
    assert not at.exception, at.exception
    # Down to the last section, drawn from the stored outputs: the confusion changes and the entropy panels.
    assert any("Prediction entropy" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 7
