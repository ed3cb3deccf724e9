"""The app package's plain-Python state: the session's view of the run store (deny by default), the first choice
of a session, the choice an upload falls back from, and the artifacts of a finished job."""

from __future__ import annotations

import types

import pytest
import torch

from unlearn_app.access import RunView
from unlearn_app.jobs import JobRunner
from unlearn_app.state import Choice, SetupCache, resolve_choice
from unlearn_app.uploads import UploadedModel
from unlearn_app.urlstate import initial_choice
from unlearn_core.store import RunNotFoundError, RunStore
from unlearn_core.settings import settings

CONFIG = {"dataset": "digits", "model": "mlp", "forget": "class:3", "method": "ga", "params": {}, "seed": 0,
          "device": "cpu"}
REPORT = {"original": {"FA": 99.0}, "unlearned": {"FA": 1.0}, "seconds": 1.0}


def test_run_view_exposes_only_named_store_operations(tmp_path):
    view = RunView(RunStore(tmp_path / "runs.sqlite"), owner="a", shared=True)
    for name in ("pin", "count", "list_checked", "export_json", "reap_stale", "_store_nothing"):
        with pytest.raises(AttributeError, match="does not expose"):
            getattr(view, name)
    assert callable(view.export_csv) and callable(view.enforce_checkpoint_quota)


def test_run_view_writes_only_its_own_runs_on_a_shared_server(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    mine, theirs = RunView(store, "a", shared=True), RunView(store, "b", shared=True)
    own = mine.start(dict(CONFIG))
    mine.finish(own, REPORT)
    assert store.get(own)["status"] == "done" and store.get(own)["config"]["owner"] == "a"
    other = theirs.start(dict(CONFIG))
    for write in (lambda: mine.finish(other, REPORT), lambda: mine.fail(other, "no"),
                  lambda: mine.checkpoint_path(other)):
        with pytest.raises(RunNotFoundError):
            write()
    assert store.get(other)["status"] == "running"  # untouched
    personal = RunView(store, "a", shared=False)
    personal.fail(other, "stopped")  # a personal server is one person's: every run is theirs
    assert store.get(other)["status"] == "failed"


def test_run_view_csv_bytes_is_the_stores_export(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    view = RunView(store, "a", shared=False)
    view.finish(view.start(dict(CONFIG)), REPORT)
    text = view.csv_bytes(view.list()).decode()
    assert text.splitlines()[0].startswith("id,") and len(text.splitlines()) == 2


def test_initial_choice_takes_the_servers_defaults_and_a_links_checked_values(monkeypatch):
    monkeypatch.setenv("UNLEARN_DEFAULT_DATASET", "digits")
    monkeypatch.setenv("UNLEARN_DEFAULT_MODEL", "mlp")
    monkeypatch.setenv("UNLEARN_DEFAULT_FORGET", "class:1")
    none = {"dataset": None, "model": None, "forget": None, "seed": None}
    values, warnings = initial_choice(none, settings())
    assert values == {"dataset": "digits", "model": "mlp", "forget": "class:1", "seed": 0} and warnings == []
    # Another data set without a model: the default model belonged to the default data set.
    values, _ = initial_choice({**none, "dataset": "mnist5k"}, settings())
    assert values["dataset"] == "mnist5k" and values["model"] == ""
    values, warnings = initial_choice({**none, "dataset": "nope", "seed": "7"}, settings())
    assert values["dataset"] == "digits" and values["seed"] == 7 and len(warnings) == 1


def test_resolve_choice_drops_an_upload_the_server_no_longer_holds_for_this_choice():
    cache = SetupCache(max_bytes=0)
    session = {"dataset": "digits", "model": "", "forget": "class:3", "seed": "0", "original": "f" * 64}
    current = resolve_choice(session, cache, "owner")
    assert current == Choice("digits", "mlp", "class:3", 0)  # the data set's default model, the trained original
    cache.add_upload("owner", UploadedModel("f" * 64, "digits", "mlp", 0, torch.nn.Linear(1, 1), 50.0, 8))
    assert resolve_choice(session, cache, "owner").original == "f" * 64
    assert resolve_choice(session, cache, "owner").owner == "owner"
    assert resolve_choice({**session, "seed": 1}, cache, "owner").original == ""  # another seed: not this upload
    assert resolve_choice(session, cache, "someone else").original == ""


def test_run_artifacts_come_from_the_owners_finished_run_job():
    runner = JobRunner()
    try:
        output = types.SimpleNamespace(artifacts={"gallery": 1})
        job = runner.submit("run", lambda progress, cancel: (7, None, output), kind="run", meta={"owner": "a"})
        runner.wait(job, timeout=10)
        assert runner.run_artifacts(7, "a") == {"gallery": 1} and runner.run_artifacts(7) == {"gallery": 1}
        assert runner.run_artifacts(7, "b") is None and runner.run_artifacts(8, "a") is None
    finally:
        runner.shutdown()


def test_run_view_deletes_only_its_own_runs(tmp_path):
    """A shared-server session deletes its own run; another session's run answers as missing and stays."""

    store = RunStore(tmp_path / "runs.sqlite")
    mine = store.start({"dataset": "digits", "model": "mlp", "forget": "class:3", "method": "ga", "params": {},
                        "seed": 0, "owner": "me"})
    theirs = store.start({"dataset": "digits", "model": "mlp", "forget": "class:3", "method": "ga", "params": {},
                          "seed": 0, "owner": "them"})
    for run_id in (mine, theirs):
        store.fail(run_id, "stopped")
    view = RunView(store, owner="me", shared=True)
    with pytest.raises(RunNotFoundError):
        view.delete(theirs)
    assert store.get(theirs)["id"] == theirs
    view.delete(mine)
    with pytest.raises(RunNotFoundError):
        store.get(mine)
    with pytest.raises(AttributeError):
        view._write  # the raw connection is not exposed
