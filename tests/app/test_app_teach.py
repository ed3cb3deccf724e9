"""AppTest of the first hour of a teacher (issue 20, problems 1, 2 and 7) on digits + mlp.

1. a retrained reference (a sweep's ``retrain`` run) is never a candidate on Results;
2. a bad class in a link is dropped with a warning and every page stays usable;
7. where closeness to the retrained model is the rule, the header names the target, not a direction.
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from _apptest import texts  # tests/app

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
TIMEOUT = 180


def record(data_dir: Path, methods: dict[str, dict]) -> list[int]:
    """Run methods on digits/mlp/class:3 and record them in the test's store; returns their run ids."""
    from unlearn_core.pipeline import prepare
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore

    setup = prepare("digits", "mlp", "class:3", 0, device="cpu")
    store = RunStore(data_dir / "runs.sqlite")
    return [run_and_record(setup, method, params, store=store)[0] for method, params in methods.items()]


def open_app(page: str | None = None, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def test_a_retrained_reference_is_never_a_candidate_on_results(app_env):
    """One method run beside a sweep's retrain run: nothing competes, so nothing is green (the reference's Avg. Gap
    of 0 took the green mark in every column before)."""
    retrain, ga = record(app_env, {"retrain": {}, "ga": {"epochs": 1}})
    at = open_app("results")
    table = at.dataframe[0].value
    assert f"#{retrain} retrain (reference)" in table.index
    assert f"#{ga} ga" in table.index
    assert any("No cell is highlighted" in c for c in texts(at.caption))
    css = at.dataframe[0].proto.arrow_data.styler.styles + at.dataframe[1].proto.arrow_data.styler.styles
    assert "#d4edda" not in css


def test_closeness_columns_name_the_target_not_a_direction(app_env):
    record(app_env, {"unsc": {"epochs": 1}})
    at = open_app("results")
    columns = list(at.dataframe[0].value.columns)
    assert "MIA-SVC → retrained" in columns and "MIA-ent. → retrained" in columns
    assert not any(c.startswith("MIA") and ("↓" in c or "↑" in c) for c in columns)
    assert "Avg. Gap ↓" in columns  # lower is better there: a direction is right


def test_a_bad_class_in_the_link_is_dropped_with_a_warning(app_env):
    at = open_app(query={"dataset": "digits", "model": "mlp", "forget": "class:33"})
    assert at.session_state["forget"] == "class:3"
    assert any("forget set was ignored" in w and "33" not in w for w in texts(at.warning))
    assert at.query_params["forget"] == "class:3"
    for page in ("forget", "results", "unlearn"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
        assert not any("unknown class" in e for e in texts(at.error)), page
    # A class name the data set knows still opens as given.
    fine = open_app(query={"dataset": "digits", "model": "mlp", "forget": "class:5,7"})
    assert fine.session_state["forget"] == "class:5,7" and not fine.warning


def test_setup_counts_cached_references_and_prepares_a_demo_in_the_worker(app_env, monkeypatch):
    """The status line counts the cache; the button queues the preparation as one background job (the training
    itself is unlearn_core.demo's, tested in tests/test_demo.py, and patched out here)."""
    import re

    import unlearn_core.demo as demo
    from _apptest import run_until

    calls = []

    def fake_prepare(dataset, model=None, seed=0, device=None, recipe=None, progress=None, cancel=None):
        calls.append((dataset, model, seed))
        return demo.demo_status(dataset, model, seed)

    monkeypatch.setattr(demo, "prepare_demo", fake_prepare)
    at = open_app(query={"dataset": "digits", "model": "mlp"})
    line = next(m for m in texts(at.markdown) if "references cached" in m)
    assert re.search(r"ready: \d+ of 10 references cached", line)
    button = next(b for b in at.button if b.label == "Prepare a demo")
    button.click().run()
    assert not at.exception, at.exception
    run_until(at, lambda a: calls and "Preparing ..." not in texts(a.caption))
    assert calls == [("digits", "mlp", 0)]


def test_results_offers_the_report_and_charts_download_under_their_names(app_env):
    import json

    (run_id,) = record(app_env, {"unsc": {"epochs": 1}})
    at = open_app("results")
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download report (HTML)" in labels
    configs = {json.loads(c.proto.config)["toImageButtonOptions"]["filename"]: json.loads(c.proto.config)
               for c in at.get("plotly_chart")}
    assert "digits_class-3_per-class-heatmap" in configs
    assert f"unsc_run{run_id}_digits_class-3_confusion-vs-retrained" in configs
    heatmap = configs["digits_class-3_per-class-heatmap"]["toImageButtonOptions"]
    assert heatmap["format"] == "png" and heatmap["scale"] == 2
    at.sidebar.radio(key="w_chart_format").set_value("SVG").run()
    assert not at.exception, at.exception
    formats = {json.loads(c.proto.config)["toImageButtonOptions"]["format"] for c in at.get("plotly_chart")}
    assert formats == {"svg"}


def test_results_computes_a_runs_ensemble_as_a_job_and_draws_its_verdicts(app_env):
    """Issue 18 §5: a run outside any sweep has no ensemble; one button queues K = 3 runs of its cell and 3
    retrained models (competition protocol) as a job, and the panel then draws KLoM and the ROC and says how many
    models it used."""
    from _apptest import run_until

    (run_id,) = record(app_env, {"ga": {"epochs": 1}})
    at = open_app("results")
    assert not any(c.key == "evidence_klom" for c in at.get("plotly_chart"))
    at.selectbox(key="w_ensemble_k").select(3).run()
    assert any("3 runs of ga (seeds 0-2) and 3 retrained models" in c for c in texts(at.caption)), texts(at.caption)
    at.button(key="w_ensemble_go").click().run()
    assert not at.exception, at.exception

    def drawn(a):
        return any("Against the retrained ensemble" in m for m in texts(a.markdown))

    run_until(at, drawn, timeout=300)
    text = next(m for m in texts(at.markdown) if "Against the retrained ensemble" in m)
    assert "3 runs of this cell, 3 retrained models" in text and "use 3 of each" in text
    keys = {c.proto.id for c in at.get("plotly_chart")}
    assert any("evidence_klom" in k for k in keys) and any("evidence_ulira" in k for k in keys)
    at.selectbox(key="w_ensemble_k").select(3).run()
    assert not any(b.key == "w_ensemble_go" for b in at.button)  # nothing left to compute at K = 3
    assert any("K = 3 is computed and drawn above" in c for c in texts(at.caption))
