"""Issue 11 in the app (AppTest, digits + mlp): uploads never replace the trained original, the URL is checked
before any page runs, one bad row does not break Results, sessions do not block or see each other."""

from __future__ import annotations

import hashlib
import io
import re
import sqlite3
import threading
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from _apptest import ensure_original as ready, texts  # tests/app

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
TIMEOUT = 180




def unescaped(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)






def accuracy_shown(at: AppTest) -> float:
    return float(next(m for m in at.metric if m.label == "Test accuracy").value.rstrip(" %"))


def _state_bytes(**changes) -> bytes:
    from unlearn_core.data import load_dataset
    from unlearn_core.models import build_for_dataset

    state = dict(build_for_dataset("mlp", load_dataset("digits"), seed=5).state_dict())  # untrained: ~10 %
    state.update(changes)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_an_upload_never_replaces_the_trained_original(app_env, monkeypatch):
    """Item 1: the upload lives in its own namespace; the cache file, other sessions and the CLI keep the trained one."""
    from unlearn_app import state, uploads

    checks = []
    real_accept = uploads.accept_upload
    monkeypatch.setattr(uploads, "accept_upload", lambda *a, **k: checks.append(1) or real_accept(*a, **k))
    at = ready(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    trained_accuracy = accuracy_shown(at)
    cached = state.original_cache_path("digits", "mlp", 0)
    before = hashlib.sha256(cached.read_bytes()).hexdigest()

    # A std of 0 in the normalisation: every weight finite, every output NaN. Refused by the probe batch.
    at.file_uploader(key="w_upload").set_value(
        ("std0.pt", _state_bytes(**{"normalize.std": torch.zeros(1, 1, 1, 1)}), "application/octet-stream")).run()
    assert any("outputs are NaN or infinite" in unescaped(e) for e in texts(at.error))
    assert not any(b.label == "Use it as the original model" for b in at.button)

    at.file_uploader(key="w_upload").set_value(("weak.pt", _state_bytes(), "application/octet-stream")).run()
    at.run().run()  # reruns must not check the file again
    assert len(checks) == 2
    next(b for b in at.button if b.label == "Use it as the original model").click().run()
    assert not at.exception
    assert any("your uploaded checkpoint" in s for s in texts(at.success))
    uploaded_accuracy = accuracy_shown(at)
    assert uploaded_accuracy < 50 < trained_accuracy  # the figure belongs to the weights shown, not to the key
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == before
    assert len(checks) == 2

    # A session that never uploaded (and, on a restart, everyone) still gets the trained original.
    st.cache_data.clear()
    other = ready(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert accuracy_shown(other) == pytest.approx(trained_accuracy)

    next(b for b in at.button if b.label == "Use the trained original instead").click().run()
    assert accuracy_shown(at) == pytest.approx(trained_accuracy)

    # Taken again, then let go by the server (its upload memory full): the page says so and uses the trained one.
    next(b for b in at.button if b.label == "Use it as the original model").click().run()
    assert accuracy_shown(at) == pytest.approx(uploaded_accuracy)
    from app_pages import _shared

    with _shared.setups()._lock:
        for key in [k for k in _shared.setups()._entries if k[0] == "upload"]:
            del _shared.setups()._entries[key]
    at.run()
    assert any("no longer held by the server" in w for w in texts(at.warning))
    assert accuracy_shown(at) == pytest.approx(trained_accuracy)


@pytest.mark.parametrize("param, value", [
    ("forget", "indices:/etc/hostname"),
    ("forget", "class:3](https://evil.example/login)"),
    ("dataset", "[Session expired: click here](https://evil.example)"),
    ("dataset", "nope"),
    ("model", "![](https://evil.example/beacon.png)"),
])
def test_the_url_is_checked_before_any_page_runs(app_env, param, value):
    """Items 3, 4 and 5: a bad query parameter is dropped with a warning, on every page, before its body runs."""
    for page in ("setup", "results", "unlearn"):
        st.cache_resource.clear()
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.query_params[param] = value
        at.run()
        assert not at.exception, at.exception
        warnings = texts(at.warning)
        assert any(f"link's {param} was ignored" in unescaped(w) for w in warnings)
        assert at.session_state[param] in ("digits", "class:3", "", "mlp")
        if page != "setup":
            at.switch_page(f"app_pages/{page}.py").run()
            assert not at.exception, at.exception
        shown = " ".join(texts(at.markdown) + texts(at.caption) + texts(at.error) + texts(at.warning)
                         + texts(at.info) + texts(at.success))
        assert "evil" not in shown and "hostname" not in shown and "nope" not in shown


def _record_runs(data_dir: Path, setup, n: int = 1, owner: str | None = None) -> list[int]:
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore

    store = RunStore(data_dir / "runs.sqlite")
    extra = {"owner": owner} if owner else None
    return [run_and_record(setup, "finetune", {"epochs": 1}, store=store, extra_config=extra)[0] for _ in range(n)]


def test_one_unreadable_row_is_skipped_with_a_warning(app_env, digits_class3):
    """Item 5: a report_json that is not JSON used to break the whole Results page."""
    good, broken = _record_runs(app_env, digits_class3, 2)
    with sqlite3.connect(app_env / "runs.sqlite") as conn:
        conn.execute("UPDATE runs SET report_json = ? WHERE id = ?", ('{"unlearned": {"FA": 1', broken))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/results.py").run()
    assert not at.exception, at.exception
    assert any("Skipped 1 run(s)" in w and f"#{broken}" in w for w in texts(at.warning))
    assert any("1 finished run(s)" in m for m in texts(at.markdown))
    assert f"#{good} finetune" in set(at.dataframe[0].value.index)


def test_another_sessions_training_does_not_block_setup(app_env, monkeypatch):
    """Item 7: Setup lists only this session's setup jobs for this very choice."""
    from app_pages import _shared
    from unlearn_app.state import Choice

    (app_env / "checkpoints").unlink()  # no original on disk: the page must offer training
    (app_env / "checkpoints").mkdir()
    gate = threading.Event()
    runner = _shared._runner(str(app_env))
    theirs = Choice("digits", "mlp", "class:3", 0)
    job = runner.submit("train original mlp on digits", lambda p, c: gate.wait(60), kind="setup",
                        meta={"owner": "another browser", "choice": list(theirs.key())})
    try:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
        assert not at.exception, at.exception
        assert not any("Training the original model" in i for i in texts(at.info))
        assert any(b.label == "Train the original model" for b in at.button)
    finally:
        gate.set()
        runner.wait(job, timeout=30)


def test_a_session_may_queue_only_so_many_runs(app_env, monkeypatch):
    """Item 8: one session queued 52 runs in four clicks; now a batch over the limit is refused whole."""
    monkeypatch.setenv("UNLEARN_MAX_JOBS_PER_SESSION", "2")
    at = ready(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.switch_page("app_pages/unlearn.py").run()
    at.multiselect(key="w_methods").set_value(["finetune", "ga", "rl"]).run()
    next(b for b in at.button if b.label.startswith("Run ")).click().run()
    assert not at.exception, at.exception
    assert any("may have 2 runs queued or running" in e for e in texts(at.error))
    from app_pages import _shared

    assert _shared._runner(str(app_env)).jobs("run") == []


def test_shared_server_sessions_see_only_their_own_runs(app_env, monkeypatch, digits_class3):
    """Shared mode: runs (and their downloads) per browser session; a CLI run is not shown to visitors."""
    from app_pages import _shared

    _record_runs(app_env, digits_class3, 1)  # a CLI run: no owner
    _record_runs(app_env, digits_class3, 1, owner="session A")

    def results_as(owner: str):
        for where in (_shared.session, _shared):  # where it is defined (the run store's view), the pages' name
            monkeypatch.setattr(where, "session_owner", lambda: owner)
        at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
        at.switch_page("app_pages/results.py").run()
        assert not at.exception, at.exception
        return at

    monkeypatch.setenv("UNLEARN_SHARED", "1")
    mine = results_as("session A")
    assert any("1 finished run(s)" in m for m in texts(mine.markdown))
    assert [i for i in mine.dataframe[0].value.index if i.startswith("#")] == ["#2 finetune"]
    # the table, run #2's checkpoint and the report (of the runs this session sees: `done` above)
    assert len(mine.get("download_button")) == 3
    theirs = results_as("session B")
    assert any("No finished runs" in i for i in texts(theirs.info))
    assert not theirs.get("download_button")

    monkeypatch.setenv("UNLEARN_SHARED", "0")  # personal: every run, CLI runs included
    everyone = results_as("session B")
    assert any("2 finished run(s)" in m for m in texts(everyone.markdown))
