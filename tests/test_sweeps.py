"""Sweeps: a 2-CPU local Ray sweep on digits (grid x seeds), resume, a killed worker, bad grid arguments, and the
inline engine giving the same numbers as Ray for the same seeds.

One Ray instance serves the whole module (its start costs about ten seconds here); the sweeps share it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from unlearn_core.cli import main
from unlearn_core.errors import ParameterError
from unlearn_core.store import RunStore
from unlearn_core.sweeps import SweepSpec, parse_grid, run_sweep, summarize, sweep_result

REPO = Path(__file__).resolve().parents[1]
COMPARED = ("FA", "RA", "TA", "Acc_r", "MIA_entropy", "MIA_svc", "avg_gap")


@pytest.fixture(scope="module")
def ray_instance():
    pytest.importorskip("ray")
    from unlearn_core.raycluster import private_dir
    from unlearn_core.sweeps import RayEngine

    engine = RayEngine(num_cpus=2)  # sweeps in this module find Ray running and share it
    assert engine.slots == 2
    # Ray's token file sits with its temp files (data dir or system temp), never in ~/.ray or the repository.
    # Ray's core reads its token once per process: after an earlier module's local instance in another data
    # directory, the token stays in that instance's private folder (a private_dir() of its own).
    token = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    assert token.is_file() and token.parent.stat().st_mode & 0o077 == 0
    assert token.parent == private_dir() or token.parent.name.startswith("unlearn-ray-") or \
        token.parent.name == "ray"
    assert REPO not in token.parents and Path.home() / ".ray" not in token.parents
    yield engine
    engine.close()


def _spec(tag: str, **changes) -> SweepSpec:
    values = dict(dataset="digits", model="mlp", forgets=["class:3"], methods=["rl"],
                  grid={"rl": {"epochs": [1, 2]}}, seeds=[0, 1], retrains=2, tag=tag)
    values.update(changes)
    return SweepSpec(**values)


def _by_key(result: dict) -> dict:
    runs = {}
    for cell in result["cells"]:
        for run in cell["runs"]:
            runs[(cell["method"], json.dumps(cell["params"], sort_keys=True), run["seed"])] = run
    return runs


def test_ray_sweep_grid_and_seeds_then_resume_and_inline_agrees(tmp_path, ray_instance):
    store = RunStore(tmp_path / "runs.sqlite")
    events = []
    result = run_sweep(_spec("t-grid"), engine="ray", store=store, progress=events.append, log=lambda _: None)
    # 2 grid points x 2 seeds, plus a reference ensemble of 2 retrained models.
    assert result["ran"] == 6 and result["skipped"] == 0 and store.count() == 6
    assert [c["params"]["epochs"] for c in result["cells"]] == [1, 2]
    for cell in result["cells"]:
        assert cell["seeds"] == [0, 1] and cell["failed"] == 0
        values = [run["metrics"]["TA"] for run in cell["runs"]]
        stats = cell["summary"]["TA"]
        assert stats["mean"] == pytest.approx(sum(values) / 2)
        assert stats["ci_low"] <= stats["mean"] <= stats["ci_high"]
        reference = result["forgets"][0]["reference"]["metrics"]["TA"]
        assert cell["summary"]["TA"]["gap"] == pytest.approx(stats["mean"] - reference["mean"])
        assert cell["summary"]["FA"]["mean"] < 50.0  # RL forgets class 3 at both grid points
    assert result["forgets"][0]["reference"]["seeds"] == [0, 1]
    assert events[-1].done == 6 and events[-1].failed == 0 and events[-1].running == 0
    recorded = store.list(tag="t-grid")
    assert len(recorded) == 6 and all(r["status"] == "done" for r in recorded)
    assert {r["config"]["engine"] for r in recorded} == {"ray"}
    # Each run names the Ray node it ran on: the local instance's one node, in the store and in the result.
    import ray

    assert {r["config"]["node_id"] for r in recorded} == {ray.get_runtime_context().get_node_id()}
    assert {run["node_id"] for cell in result["cells"] for run in cell["runs"]} == \
        {ray.get_runtime_context().get_node_id()}
    assert all(Path(r["checkpoint_path"]).is_file() for r in recorded)
    assert len({r["config"]["sweep_key"] for r in recorded}) == 6

    # Resume: the same sweep again trains nothing and records nothing (Ray is not even needed).
    again = run_sweep(_spec("t-grid"), engine="inline", store=store, log=lambda _: None)
    assert again["ran"] == 0 and again["skipped"] == 6 and store.count() == 6
    assert _by_key(again) == _by_key(result)

    # The inline engine, in its own store, gives the same numbers for the same seeds.
    inline = run_sweep(_spec("t-inline"), engine="inline", device="cpu", store=RunStore(tmp_path / "inline.sqlite"),
                       log=lambda _: None)
    assert inline["ran"] == 6
    assert {run["node_id"] for cell in inline["cells"] for run in cell["runs"]} == {"local"}
    ray_runs, inline_runs = _by_key(result), _by_key(inline)
    assert ray_runs.keys() == inline_runs.keys()
    for key, run in ray_runs.items():
        for metric in COMPARED:
            assert inline_runs[key]["metrics"][metric] == pytest.approx(run["metrics"][metric], abs=1e-6), (key, metric)


def _descends_from_us(pid: int) -> bool:
    me = os.getpid()
    for _ in range(6):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        pid = int(fields[1])
        if pid == me:
            return True
        if pid <= 1:
            return False
    return False


def _kill_one_run_worker(killed: list, stop: threading.Event) -> None:
    """SIGKILL the first Ray worker of this test process that is executing a run (its title: ray::execute_run)."""
    while not stop.is_set() and not killed:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::execute_run") and _descends_from_us(int(entry.name)):
                time.sleep(0.3)  # well inside the run, not at its first instruction
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
                return
        time.sleep(0.05)


def test_a_killed_worker_is_retried_and_every_cell_is_recorded_once(tmp_path, ray_instance):
    store = RunStore(tmp_path / "runs.sqlite")
    # Fine-tuning for 20 epochs takes long enough on digits for the killer to catch a run in flight.
    spec = _spec("t-kill", methods=["finetune"], grid={"finetune": {"epochs": [20]}}, seeds=[0, 1], retrains=1)
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_one_run_worker, args=(killed, stop), daemon=True)
    killer.start()
    try:
        result = run_sweep(spec, engine="ray", store=store, log=lambda _: None)
    finally:
        stop.set()
        killer.join(5)
    assert killed, "no run worker was caught in flight"
    runs = store.list(tag="t-kill")
    assert len(runs) == 3 and all(r["status"] == "done" for r in runs)
    assert sorted((r["method"], r["seed"]) for r in runs) == [("finetune", 0), ("finetune", 1), ("retrain", 0)]
    (cell,) = result["cells"]
    assert cell["seeds"] == [0, 1] and cell["failed"] == 0


def test_bad_grid_arguments_fail_before_anything_runs(tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    base = ["sweep", "--dataset", "digits", "--model", "mlp", "--methods", "ga,rl", "--store", str(store),
            "--engine", "inline"]
    for extra in (["--grid", "ga.nope=1"], ["--grid", "ga.lr=5"], ["--grid", "ga.lr=abc"], ["--grid", "ga.lr="],
                  ["--grid", "unsc.lr=0.1"], ["--grid", "ga.epochs=1.5"], ["--grid", "lr=0.1"],
                  ["--grid", "ga.lr=1e-3,1e-3"], ["--grid", "ga.optimizer=sgd,rmsprop"], ["--seeds", "0,٣"],
                  ["--retrains", "-1"], ["--forget", "class:"], ["--methods", "nope"]):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not store.exists() or RunStore(store).count() == 0
    with pytest.raises(ParameterError):
        parse_grid(["ga.lr=1e-3"], ["rl"])


def test_nothing_imports_ray_until_a_ray_sweep_starts():
    code = ("import sys, unlearn_core.cli, unlearn_core.sweeps, unlearn_core.bench; "
            "from unlearn_core.cli import build_parser; build_parser(); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_summary_statistics():
    stats = summarize([1.0, 2.0, 3.0, None, float("nan")])
    assert stats["n"] == 3 and stats["mean"] == pytest.approx(2.0) and stats["std"] == pytest.approx(1.0)
    # t(0.975, 2) = 4.3027: the 95 % interval of the mean is 2 ± 4.3027 / sqrt(3).
    assert stats["ci_high"] - 2.0 == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    single = summarize([5.0])
    assert single["mean"] == 5.0 and single["std"] is None and single["ci_low"] is None
    assert summarize([])["mean"] is None


def test_cli_sweep_inline_prints_the_table_and_writes_files(tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    argv = ["sweep", "--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--methods", "rl",
            "--grid", "rl.epochs=1", "--seeds", "0", "--retrains", "1", "--engine", "inline", "--store", str(store),
            "--json", str(tmp_path / "s.json"), "--csv", str(tmp_path / "s.csv"), "--quiet", "--tag", "t-cli"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| Retrain ensemble | 1 |" in out and "`rl` epochs=1" in out and "sweep t-cli: 2 runs now" in out
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["cells"][0]["runs"][0]["status"] == "done"
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0].startswith("sweep,dataset,model,row") and sum(r.count(",run,") for r in rows) == 1
    assert main(argv) == 0
    assert "sweep t-cli: 0 runs now, 2 already stored" in capsys.readouterr().out
    assert sweep_result(RunStore(store), "t-cli")["cells"][0]["summary"]["TA"]["n"] == 1


def test_cancel_stops_between_runs_and_the_rest_runs_on_resume(tmp_path):
    import threading as _threading

    from unlearn_core.errors import Cancelled

    store = RunStore(tmp_path / "runs.sqlite")
    cancel = _threading.Event()

    def progress(event):
        if event.done >= 2:
            cancel.set()

    spec = _spec("t-cancel", grid={"rl": {"epochs": [1]}}, seeds=[0, 1, 2], retrains=1)  # 1 reference + 3 runs
    with pytest.raises(Cancelled):
        run_sweep(spec, engine="inline", device="cpu", store=store, progress=progress, cancel=cancel,
                  log=lambda _: None)
    assert store.count() == 2  # nothing half-recorded, nothing after the cancel
    resumed = run_sweep(spec, engine="inline", device="cpu", store=store, log=lambda _: None)
    assert resumed["ran"] == 2 and resumed["skipped"] == 2 and store.count() == 4


def test_a_narrower_request_under_the_same_tag_shows_only_its_own_runs(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_sweep(_spec("t-narrow", seeds=[0], retrains=1), engine="inline", device="cpu", store=store,
              log=lambda _: None)
    narrower = run_sweep(_spec("t-narrow", grid={"rl": {"epochs": [1]}}, seeds=[0], retrains=1), engine="inline",
                         device="cpu", store=store, log=lambda _: None)
    assert narrower["ran"] == 0 and narrower["skipped"] == 2
    assert [cell["params"]["epochs"] for cell in narrower["cells"]] == [1]
    assert store.count() == 3 and len(store.sweep_runs("t-narrow")) == 2


def test_inline_sweep_scores_each_cell_against_the_reference_ensemble_and_keeps_evidence(tmp_path):
    """Three seeds and three retrained models: every cell gets the ensemble verdicts (forget quality as released,
    the competition score, KLoM P95, U-LiRA), the sweep names its protocol, a random forget set (drawn anew per seed)
    gets a note instead of verdicts, and ``evidence`` puts the probe's numbers into every method run's metrics."""
    store = RunStore(tmp_path / "runs.sqlite")
    spec = _spec("ev", forgets=["class:3", "random:0.1"], methods=["finetune", "unsc"],
                 grid={"unsc": {"epochs": [1]}, "finetune": {"epochs": [1]}}, evidence="probe", seeds=[0, 1, 2],
                 retrains=3)
    result = run_sweep(spec, engine="inline", device="cpu", store=store, save_checkpoints=False,
                       log=lambda _m: None)
    assert result["protocol"] == "seeds"
    class_cells = [c for c in result["cells"] if c["forget"] == "class:3"]
    assert {c["method"] for c in class_cells} == {"finetune", "unsc"}
    for cell in class_cells:
        info = cell["verdicts"]
        assert info["protocol"] == "seeds" and info["k_unlearned"] == info["k_retrained"] == info["k_used"] == 3
        assert info["note"] is None and info["seconds"] >= 0
        assert 0.0 <= cell["forget_quality"] <= 1.0
        assert set(cell["klom_p95"]) == {"forget", "retain", "validation"}
        assert all(v >= 0.0 for v in cell["klom_p95"].values())
        assert 0.0 <= cell["ulira"]["auc"] <= 1.0 and 0.0 <= cell["ulira"]["tpr_at_1fpr"] <= 1.0
        assert 0.0 <= cell["ulira"]["tpr_at_5fpr"] <= 1.0 and "auc" in cell["ulira"]["retain"]
        score = cell["competition_score"]
        ra, ta = cell["summary"]["RA"]["mean"], cell["summary"]["TA"]["mean"]
        ref = result["forgets"][0]["reference"]["metrics"]
        assert score["forget_quality"] == cell["forget_quality"]
        assert score["final_score"] == pytest.approx(cell["forget_quality"] * ra / ref["RA"]["mean"]
                                                     * ta / ref["TA"]["mean"])
        assert cell["summary"]["ev_probe_forget"]["n"] == 3
        assert cell["summary"]["ev_probe_forget_retrained"]["mean"] is not None
    # A one-epoch fine-tune still recognises most 3s: its forget-set margins sit far from the retrained models'.
    finetune = next(c for c in class_cells if c["method"] == "finetune")
    assert finetune["klom_p95"]["forget"] > 1.0 and finetune["forget_quality"] < 0.5
    for cell in (c for c in result["cells"] if c["forget"] == "random:0.1"):
        assert cell["forget_quality"] is None and "differs between seeds" in cell["verdicts"]["note"]
    # The outputs stay in the store, not in the result handed to tables and JSON.
    assert all("_outputs" not in run for cell in result["cells"] for run in cell["runs"])
    assert all("verdict_outputs" in (store.get(run["run_id"])["report"] or {})
               for cell in class_cells for run in cell["runs"])
    from unlearn_core.sweeps import flat_rows, markdown_tables

    text = markdown_tables(result)
    assert "Forget quality (K) | KLoM P95 | TPR@1%FPR" in text and "(3)" in text and "protocol `seeds`" in text
    row = next(r for r in flat_rows(result) if r.get("cell") == finetune["id"] and r["row"] == "cell")
    assert row["forget_quality"] == finetune["forget_quality"] and row["protocol"] == "seeds"
    assert row["ulira_tpr_at_1fpr"] == finetune["ulira"]["tpr_at_1fpr"]


def test_competition_protocol_runs_a_deterministic_method_from_one_original_and_scores_zero(tmp_path):
    """SSD three times from the first seed's original model (method seeds 0-2) against three retrained models:
    the unlearned models are identical up to float noise, so forget quality is 0, as the released metric.py gives
    (tests/test_verdicts.py does the same by hand). Its runs at seeds 1 and 2 are not the ``seeds`` runs."""
    from unlearn_core.sweeps import plan, validate

    store = RunStore(tmp_path / "runs.sqlite")
    spec = _spec("comp", methods=["ssd"], grid={}, seeds=[0, 1, 2], retrains=3, protocol="competition")
    result = run_sweep(spec, engine="inline", device="cpu", store=store, save_checkpoints=False,
                       log=lambda _m: None)
    assert result["protocol"] == "competition" and result["spec"]["protocol"] == "competition"
    (cell,) = result["cells"]
    assert cell["verdicts"]["protocol"] == "competition" and cell["verdicts"]["k_used"] == 3
    assert cell["forget_quality"] == 0.0 and cell["competition_score"]["final_score"] == 0.0
    runs = [store.get(run["run_id"]) for run in cell["runs"]]
    assert len({r["config"]["original_checkpoint"] for r in runs}) == 1       # one original model
    assert [r["seed"] for r in runs] == [0, 1, 2]                              # the method's seed varies
    references = [store.get(i) for i in result["forgets"][0]["reference"]["run_ids"]]
    assert len({r["config"]["retrained_checkpoint"] for r in references}) == 3
    # Under ``seeds`` the runs at seeds 1 and 2 start from their own originals: other keys, not confused.
    recipe = result["spec"]["recipe"]
    keys = {p.seed: p.key for p in plan(validate(spec), recipe, "cpu") if p.role == "run"}
    spec.protocol = "seeds"
    seed_keys = {p.seed: p.key for p in plan(validate(spec), recipe, "cpu") if p.role == "run"}
    assert keys[0] == seed_keys[0] and keys[1] != seed_keys[1] and keys[2] != seed_keys[2]
    with pytest.raises(ParameterError, match="--protocol"):
        validate(_spec("bad", protocol="one"))
    # Per-sample views of the cell for Results: KLoM per sample and the attack's ROC, the cell's numbers behind them.
    from unlearn_core.sweeps import cell_verdict_details

    details = cell_verdict_details(store, "comp", cell["id"])
    assert details["k_used"] == 3 and details["protocol"] == "competition" and details["forget_quality"] == 0.0
    n_forget = len(store.get(cell["runs"][0]["run_id"])["report"]["verdict_outputs"]["forget"]["phi"])
    assert len(details["klom"]["forget"]) == n_forget and set(details["klom"]) == {"forget", "retain", "validation"}
    assert details["klom_p95"]["forget"] == pytest.approx(cell["klom_p95"]["forget"])
    roc = details["roc"]["forget"]
    assert roc["auc"] == pytest.approx(cell["ulira"]["auc"]) and roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    assert all(a <= b for a, b in zip(roc["fpr"], roc["fpr"][1:]))
    assert cell_verdict_details(store, "comp", "no-such-cell") is None


def test_bench_with_evidence_prints_the_evidence_table(tmp_path, capsys):
    argv = ["bench", "--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--seeds", "0",
            "--methods", "unsc", "--param", "unsc.epochs=1", "--device", "cpu", "--store",
            str(tmp_path / "r.sqlite"), "--evidence", "probe,relearn", "--evidence-param", "relearn.max_steps=20",
            "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Evidence of forgetting" in printed and "| probe_f after |" in printed
    line = next(row for row in printed.splitlines() if row.startswith("| UNSC") and "relearn" not in row
                and row.count("|") == 8)
    assert "–" not in line.split("|")[2]  # the unlearned model's probe accuracy is there
    assert "--evidence probe,relearn" in printed  # the reproducing command names it


def test_optuna_search_draws_from_the_declared_ranges_and_records_every_trial(tmp_path, ray_instance):
    pytest.importorskip("optuna")
    from ray.tune.search.sample import Float

    from unlearn_core.methods import get_method
    from unlearn_core.sweeps import run_search, search_space

    space = search_space("rl", {"epochs": [1], "batch_size": [64]})
    assert space["epochs"] == 1 and space["batch_size"] == 64
    assert isinstance(space["lr"], Float) and space["lr"].lower == get_method("rl").param("lr").low
    assert "LogUniform" in type(space["lr"].get_sampler()).__name__  # lr is declared log-scale
    store = RunStore(tmp_path / "runs.sqlite")
    spec = _spec("t-search", grid={"rl": {"epochs": [1], "batch_size": [64]}}, seeds=[0], retrains=1)
    result = run_search(spec, trials=2, store=store, log=lambda _: None)
    info = result["search"]["rl"]
    assert info["trials"] == 2 and isinstance(info["best_value"], float)
    assert set(info["space"]) == {"lr", "momentum", "weight_decay", "label_pool"}  # label_pool: a declared choice
    lr = get_method("rl").param("lr")
    for cell in result["cells"]:
        assert cell["params"]["epochs"] == 1 and lr.low <= cell["params"]["lr"] <= lr.high
    assert 1 <= len(result["cells"]) <= 2
    # The reference and every trial's run are recorded, by the driver, once.
    assert store.count() == 1 + sum(len(c["runs"]) for c in result["cells"])
    assert min(c["summary"]["avg_gap"]["mean"] for c in result["cells"]) == pytest.approx(info["best_value"])


@pytest.mark.parametrize("value", ["\u0663", "\uff11", "1_0", "inf"])
def test_grid_and_param_share_one_number_parser(value):
    """``--grid ga.epochs=٣`` is refused like ``--param epochs=٣`` (both go through Param.coerce)."""
    from unlearn_core.methods import get_method
    from unlearn_core.sweeps import parse_grid

    with pytest.raises(ParameterError, match="ASCII digits"):
        parse_grid([f"ga.epochs={value}"], ["ga"])
    with pytest.raises(ParameterError, match="ASCII digits"):
        get_method("ga").resolve_params({"epochs": value})


def test_a_huge_grid_is_counted_and_refused_before_any_cell_is_built():
    """The run count comes from the grid's sizes: 10 parameters x 10 values is 10^10 without building a cell."""
    from unlearn_core.sweeps import validate
    from unlearn_core.sweeps.spec import planned_run_count

    assert planned_run_count({"ga": {f"p{i}": list(range(10)) for i in range(10)}}, ["ga", "rl"], 1, 1) == 10**10 + 1
    huge = _spec("huge", methods=["ga"], seeds=list(range(20)),
                 grid={"ga": {"epochs": list(range(1, 101)), "lr": [1e-4 * i for i in range(1, 101)]}})
    with pytest.raises(ParameterError, match="would plan 200,000 method runs"):
        validate(huge)
    assert validate(_spec("small", methods=["ga"], grid={"ga": {"epochs": [1, 2]}}))


def test_a_bad_forget_set_fails_before_the_sweep_is_saved(tmp_path):
    """``indices:/etc/shadow``-like files and unknown classes fail before any row or link exists."""
    from unlearn_core.errors import ForgetSpecError
    from unlearn_core.sweeps import run_sweep

    store = RunStore(tmp_path / "runs.sqlite")
    for forget in (f"indices:{tmp_path / 'missing.txt'}", "class:33"):
        with pytest.raises(ForgetSpecError):
            run_sweep(_spec("bad-forget", forgets=["class:3", forget]), engine="inline", store=store)
    assert store.list_sweeps() == [] and store.list() == []
