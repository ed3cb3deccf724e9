"""AppTest of the Sweeps page, the uncertainty on Results and the evidence views (digits + mlp).

One tiny sweep is run inline once per module (ga over 2 learning rates x 2 epoch counts, seeds 0 and 1, the two
retrained models of those seeds as the reference ensemble) into a data directory the tests open read-only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from _apptest import texts  # tests/app

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
TIMEOUT = 180
TAG = "t-app-sweep"


def _borrow_checkpoints(folder: Path) -> None:
    shared = Path(os.environ["UNLEARN_DATA_DIR"]) / "checkpoints"
    shared.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoints").symlink_to(shared, target_is_directory=True)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A data directory holding one real sweep (8 runs + 2 retrained models) recorded by ``run_sweep``."""
    from unlearn_core.store import RunStore
    from unlearn_core.sweeps import SweepSpec, run_sweep

    folder = tmp_path_factory.mktemp("sweep-data")
    _borrow_checkpoints(folder)
    spec = SweepSpec(dataset="digits", model="mlp", forgets=["class:3"], methods=["ga"],
                     grid={"ga": {"lr": [1e-3, 4e-3], "epochs": [1, 3]}}, seeds=[0, 1], tag=TAG)
    result = run_sweep(spec, engine="inline", device="cpu", store=RunStore(folder / "runs.sqlite"),
                       log=lambda _: None, save_checkpoints=False)
    assert len(result["cells"]) == 4 and all(len(c["seeds"]) == 2 for c in result["cells"])
    return folder, result


@pytest.fixture()
def env(monkeypatch):
    def use(folder: Path, shared: bool = False):
        monkeypatch.setenv("UNLEARN_DATA_DIR", str(folder))
        monkeypatch.setenv("UNLEARN_DEFAULT_DATASET", "digits")
        monkeypatch.setenv("UNLEARN_APP_AUTO_UMAP", "0")
        if shared:
            monkeypatch.setenv("UNLEARN_SHARED", "1")
        else:
            monkeypatch.delenv("UNLEARN_SHARED", raising=False)
        st.cache_data.clear()
        st.cache_resource.clear()
    yield use
    st.cache_data.clear()
    st.cache_resource.clear()


def start(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at




def chart_specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_sweeps_page_draws_the_phase_map_and_the_pareto_scatter(sweep_dir, env):
    from unlearn_core.tables import cell_frame

    folder, result = sweep_dir
    env(folder)
    at = start("sweeps")
    assert texts(at.title) == ["Sweeps"]
    assert {m.label: m.value for m in at.metric}["Cells"] == "4"
    specs = chart_specs(at)
    assert len(specs) == 2
    phase, pareto = specs
    frame = cell_frame(result).set_index("cell_id")
    points = phase["data"][0]
    assert sorted(points["customdata"]) == sorted(frame.index)
    # The colour of every square is its cell's forget gap on a fixed, symmetric range.
    assert points["marker"]["cmin"] == -points["marker"]["cmax"]
    for cell_id, colour in zip(points["customdata"], points["marker"]["color"]):
        assert colour == pytest.approx(frame.loc[cell_id, "forget_gap"])
    assert {t["name"] for t in pareto["data"]} >= {"ga"}
    # The sweep's take-away report (built on click) and charts saved under names that say what they are.
    assert "Download report (HTML)" in [b.proto.label for b in at.get("download_button")]
    names = [json.loads(c.proto.config)["toImageButtonOptions"]["filename"] for c in at.get("plotly_chart")]
    assert names[0].startswith("ga_") and names[0].endswith("_phase-map") and names[1].endswith("_pareto")
    # Another colour redraws the map with the retained accuracy's gap.
    at.radio(key="w_sweep_colour").set_value("retain drop").run()
    assert not at.exception
    points = chart_specs(at)[0]["data"][0]
    for cell_id, colour in zip(points["customdata"], points["marker"]["color"]):
        assert colour == pytest.approx(frame.loc[cell_id, "retain_gap"])


def test_the_phase_map_colours_cells_by_their_ensemble_verdicts(tmp_path, env):
    """A sweep with 3 seeds and 3 retrained models: forget quality, KLoM P95 and U-LiRA TPR at 1 % FPR are each
    selectable as the phase map's colour, on a fixed range; the two-seed sweep's cells are grey and say why."""
    from unlearn_core.store import RunStore
    from unlearn_core.sweeps import SweepSpec, run_sweep
    from unlearn_core.tables import cell_frame

    _borrow_checkpoints(tmp_path)
    spec = SweepSpec(dataset="digits", model="mlp", forgets=["class:3"], methods=["ga"],
                     grid={"ga": {"lr": [1e-3, 4e-3]}}, seeds=[0, 1, 2], retrains=3, tag="t-verdicts")
    result = run_sweep(spec, engine="inline", device="cpu", store=RunStore(tmp_path / "runs.sqlite"),
                       log=lambda _: None, save_checkpoints=False)
    env(tmp_path)
    at = start("sweeps")
    frame = cell_frame(result).set_index("cell_id")
    for colour, column, low, high in (("forget quality", "forget_quality", 0.0, 1.0),
                                      ("KLoM P95", "klom_p95_forget", 0.0, None),
                                      ("U-LiRA TPR@1%FPR", "ulira_tpr_at_1fpr", 0.0, 1.0)):
        at.radio(key="w_sweep_colour").set_value(colour).run()
        assert not at.exception, at.exception
        points = chart_specs(at)[0]["data"][0]
        assert sorted(points["customdata"]) == sorted(frame.index)
        assert points["marker"]["cmin"] == low and (high is None or points["marker"]["cmax"] == high)
        for cell_id, value in zip(points["customdata"], points["marker"]["color"]):
            assert value == pytest.approx(frame.loc[cell_id, column])
            cell = next(c for c in result["cells"] if c["id"] == cell_id)
            expected = {"forget_quality": cell["forget_quality"], "klom_p95_forget": cell["klom_p95"]["forget"],
                        "ulira_tpr_at_1fpr": cell["ulira"]["tpr_at_1fpr"]}[column]
            assert value == pytest.approx(expected)
    # Results: a run of the sweep shows its cell's KLoM per sample and the attack's ROC against the retrained models.
    run_id = result["cells"][0]["runs"][0]["run_id"]
    at.switch_page("app_pages/results.py").run()
    at.selectbox(key="w_results_run").set_value(run_id).run()
    assert not at.exception, at.exception
    titles = [spec["layout"].get("title", {}).get("text", "") for spec in chart_specs(at)]
    assert any(t.startswith("KLoM per sample of ga") and "K = 3" in t for t in titles)
    roc = next(spec for spec in chart_specs(at) if spec["layout"].get("title", {}).get("text", "").startswith(
        "U-LiRA ROC of ga"))
    assert roc["data"][0]["name"] == f"forget (AUC {result['cells'][0]['ulira']['auc']:.2f})"


def test_a_sweep_without_verdicts_greys_their_colours(sweep_dir, env):
    folder, result = sweep_dir
    env(folder)
    at = start("sweeps")
    at.radio(key="w_sweep_colour").set_value("forget quality").run()
    assert not at.exception
    traces = chart_specs(at)[0]["data"]
    assert any("needs 3+ seeds" in (t.get("name") or "") for t in traces)
    at.switch_page("app_pages/results.py").run()
    at.selectbox(key="w_results_run").set_value(result["cells"][0]["runs"][0]["run_id"]).run()
    assert not at.exception, at.exception
    assert any("has no ensemble verdicts" in c for c in texts(at.caption))


def test_a_cell_opens_its_runs_in_results_with_intervals_over_seeds_and_the_ensemble_band(sweep_dir, env):
    folder, result = sweep_dir
    env(folder)
    at = start("sweeps")
    cell = result["cells"][1]
    at.selectbox(key="w_sweep_cell").set_value(cell["id"]).run()
    next(b for b in at.button if b.label == "Open in Results").click().run()
    assert not at.exception, at.exception
    assert texts(at.title) == ["Results"]
    # AppTest's next run() goes back to the page it last switched to; a browser stays on Results.
    at.switch_page("app_pages/results.py").run()
    assert not at.exception, at.exception
    assert any("Showing the 2 run(s) of sweep cell" in i for i in texts(at.info))
    run_ids = {r["run_id"] for r in cell["runs"]}
    shown = set(at.selectbox(key="w_results_run").options)
    assert {int(o.split()[0].lstrip("#")) for o in shown} == run_ids
    # Two seeds of one method and parameters: a mean ± 95 % interval row.
    assert "Over seeds (mean ± 95 %)" in [t.label for t in at.tabs]
    seeds_table = next(d for d in at.dataframe if d.value.shape[0] == 1 and "seeds" in d.value.columns)
    assert seeds_table.value.iloc[0]["seeds"] == "0, 1" and "±" in seeds_table.value.iloc[0]["Acc_f"]
    # The sweep's two retrained models draw their spread behind the per-class bars.
    bars = next(s for s in chart_specs(at) if any("retrained ensemble" in (t.get("name") or "") for t in s["data"]))
    assert len([s for s in bars["layout"]["shapes"] if s.get("layer") == "below"]) == 10
    assert any("Grey band: the spread of 2 retrained models" in c for c in texts(at.caption))
    # Every run again on request.
    next(b for b in at.button if b.label == "Show every run").click().run()
    assert not any("Showing the" in i for i in texts(at.info))
    assert len(at.selectbox(key="w_results_run").options) == 10  # 8 ga runs + 2 retrained models


def test_a_click_on_a_chart_routes_to_results(sweep_dir, env):
    """The chart's click handler stores the cell id and reruns the page; the full run switches to Results."""
    folder, result = sweep_dir
    env(folder)
    at = start("sweeps")
    at.session_state["sweep_open_cell"] = result["cells"][2]["id"]
    at.run()
    assert texts(at.title) == ["Results"] and not at.exception


def test_launching_a_sweep_runs_it_in_the_worker_and_a_shared_server_hides_it_from_others(tmp_path, env):
    from unlearn_core.store import RunStore

    _borrow_checkpoints(tmp_path)
    env(tmp_path, shared=True)
    at = start("sweeps")
    assert any("No sweep is stored yet for this session" in i for i in texts(at.info))
    at.multiselect(key="w_sweep_methods").set_value(["ga"]).run()
    at.multiselect(key="w_sweep_vary_ga").set_value(["epochs"]).run()
    at.slider(key="w_sweep_n_ga_epochs").set_value(2).run()
    assert any("2 cell(s) × 1 seed(s) + 1 retrained model(s)" in c and "2 method runs" in c
               for c in texts(at.caption))
    next(b for b in at.button if b.label == "Launch the sweep").click().run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + TIMEOUT
    # The sweep shows as soon as its first cell is stored, and fills in while the job runs.
    while {m.label: m.value for m in at.metric}.get("Cells") != "2":
        assert time.monotonic() < deadline, [e.value for e in at.error]
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
    store = RunStore(tmp_path / "runs.sqlite")
    owners = {(r["config"] or {}).get("owner") for r in store.list()}
    sweep = store.list_sweeps()[0]
    assert len(owners) == 1 and None not in owners and sweep["spec"]["owner"] in owners
    # Another browser session on the shared server sees no sweep.
    st.cache_data.clear()
    other = start("sweeps")
    assert any("No sweep is stored yet for this session" in i for i in texts(other.info))


def test_an_interrupted_sweep_is_listed_as_such_and_resumes(tmp_path, env):
    """A server killed after a sweep was queued: its row (saved at queue time) shows as interrupted, and Resume
    runs what is missing under the same tag."""
    from unlearn_core.store import RunStore
    from unlearn_core.sweeps import SweepSpec, validate

    _borrow_checkpoints(tmp_path)
    spec = validate(SweepSpec(dataset="digits", model="mlp", forgets=["class:3"], methods=["ga"],
                              grid={"ga": {"epochs": [1, 2]}}, seeds=[0], retrains=1, tag="app-killed"))
    RunStore(tmp_path / "runs.sqlite").save_sweep("app-killed", "sweep", spec.as_dict())
    env(tmp_path)
    at = start("sweeps")
    assert any("interrupted with 0 of 3 runs" in w for w in texts(at.warning))
    next(b for b in at.button if b.label == "Resume this sweep").click().run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + TIMEOUT
    while {m.label: m.value for m in at.metric}.get("Cells") != "2":
        assert time.monotonic() < deadline, [e.value for e in at.error]
        time.sleep(0.5)
        at.run()
    while RunStore(tmp_path / "runs.sqlite").get_sweep("app-killed")["runs"] < 3:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    at.run()
    assert not any("interrupted" in w for w in texts(at.warning))


def test_bad_seeds_show_an_error_not_a_traceback(tmp_path, env):
    _borrow_checkpoints(tmp_path)
    env(tmp_path)
    at = start("sweeps")
    at.text_input(key="w_sweep_seeds").input("zero").run()
    assert not at.exception
    assert any("Seeds" in e for e in texts(at.error))


def test_results_draw_a_runs_evidence_and_unlearn_asks_for_it(tmp_path, env):
    from unlearn_core.pipeline import prepare
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore

    _borrow_checkpoints(tmp_path)
    env(tmp_path)
    setup = prepare("digits", "mlp", "class:3", 0, device="cpu")
    from unlearn_core.evidence import EvidenceRequest

    run_and_record(setup, "finetune", {"epochs": 1}, store=RunStore(tmp_path / "runs.sqlite"),
                   evidence=EvidenceRequest.parse("all", {"relearn_retain.steps": 20}))
    at = start("results")
    assert any("Evidence of forgetting" in m for m in texts(at.markdown))
    titles = [s["layout"].get("title", {}).get("text", "") for s in chart_specs(at)]
    assert any(t.startswith("Feature probe") for t in titles)
    assert any(t.startswith("Relearning") for t in titles)
    assert any(t.startswith("Unlearning curve of finetune") for t in titles)
    assert any(t.startswith("Linear CKA per layer of finetune") for t in titles)
    assert any(t.startswith("Relearn from retained data only") for t in titles)
    assert {m.label for m in at.metric} >= {"relearn steps: unlearned", "relearn steps: retrained",
                                            "forget acc. after retain-only fine-tuning: unlearned"}

    at.switch_page("app_pages/unlearn.py").run()
    at.multiselect(key="w_methods").set_value(["unsc"]).run()
    assert {"cka", "relearn_retain"} <= set(at.multiselect(key="w_evidence").options) or \
        {"CKA per layer", "relearn from retained data"} <= set(at.multiselect(key="w_evidence").options)
    at.multiselect(key="w_evidence").set_value(["curves"])  # in the form: sent with its submit button
    next(b for b in at.button if b.label.startswith("Run ")).click().run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + TIMEOUT
    store = RunStore(tmp_path / "runs.sqlite")
    while not any(r["method"] == "unsc" and r["status"] == "done" for r in store.list()):
        assert time.monotonic() < deadline
        time.sleep(0.5)
        at.run()
    run = next(r for r in store.list() if r["method"] == "unsc")
    assert run["config"]["evidence"]["kinds"] == ["curves"]
    assert run["report"]["evidence"]["curves"]["points"]
