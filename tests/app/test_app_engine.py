"""The Unlearn -> Results flow with ``UNLEARN_ENGINE=ray`` (a local Ray on loopback): what a visitor sees is the
same as inline but for the Setup page's "where runs execute" line; the run is recorded by the app with the Ray
node it ran on, and Cancel reaches the task."""

from __future__ import annotations

from pathlib import Path

import pytest

from _apptest import ensure_original, run_until, texts  # tests/app

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_unlearn_to_results_with_the_ray_engine_looks_the_same_and_cancels(app_env, monkeypatch):
    import ray
    from streamlit.testing.v1 import AppTest

    from app_pages import _shared

    monkeypatch.setenv("UNLEARN_ENGINE", "ray")
    app = str(REPO / "app.py")
    try:
        at = ensure_original(AppTest.from_file(app, default_timeout=180).run())
        # The first page does not wait for Ray: "a local Ray on 127.0.0.1 (starting)", then its workers.
        at = run_until(at, lambda a: any(c.startswith("Where runs execute: local Ray with ") for c in texts(a.caption)),
                       timeout=60)
        at.switch_page("app_pages/unlearn.py").run()
        at.multiselect(key="w_methods").set_value(["unsc"]).run()
        next(b for b in at.button if b.label.startswith("Run ")).click().run()
        assert not at.exception, at.exception
        at = run_until(at, lambda a: any("done in" in s for s in texts(a.success)))
        at.switch_page("app_pages/results.py").run()
        assert not at.exception, at.exception
        assert any("1 finished run(s)" in m for m in texts(at.markdown))
        table = at.dataframe[0].value
        assert list(table.index[:2]) == ["original", "retrain (reference)"] and "#1 unsc" in set(table.index)

        from unlearn_core.store import RunStore

        (run,) = RunStore(app_env / "runs.sqlite").list()
        config = RunStore(app_env / "runs.sqlite").get(run["id"])["config"]
        assert config["engine"] == "ray" and config["node_id"] not in ("", "local")
        assert RunStore(app_env / "runs.sqlite").checkpoint_path(run["id"]).exists()

        # Cancel reaches the task: a long fine-tune stops and is recorded cancelled.
        at.switch_page("app_pages/unlearn.py").run()
        at.multiselect(key="w_methods").set_value(["finetune"]).run()
        at.text_input(key="p_finetune_epochs").input("200")
        next(b for b in at.button if b.label.startswith("Run ")).click().run()
        at = run_until(at, lambda a: any(b.label == "Cancel" for b in a.button), timeout=60)
        runner = _shared._runner(str(app_env))
        job = runner.active("run")[0]
        run_until(at, lambda a: job.snapshot().stage not in ("", "preparing"), timeout=60)
        next(b for b in at.button if b.label == "Cancel").click().run()
        run_until(at, lambda a: any("cancelled" in w for w in texts(a.warning)), timeout=60)
        statuses = sorted(r["status"] for r in RunStore(app_env / "runs.sqlite").list())
        assert statuses == ["cancelled", "done"]
    finally:
        _shared._runner(str(app_env)).shutdown()
    assert not ray.is_initialized()
