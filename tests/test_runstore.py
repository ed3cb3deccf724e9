"""The run store: round trips, filters, export, WAL, concurrent writers, crash safety, run_and_record."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import sqlite3
import threading

import pytest
import torch

from unlearn_core.checkpoints import load_state_strict, read_checkpoint
from unlearn_core.errors import Cancelled, DivergenceError
from unlearn_core.methods.base import METHODS, UnlearningMethod
from unlearn_core.runstore import RunNotFoundError, RunStore, run_and_record
from unlearn_core.training import predict_logits

CONFIG = {"dataset": "digits", "model": "mlp", "forget": "class:3", "method": "finetune",
          "params": {"lr": 0.01, "epochs": 2}, "seed": 0, "device": "cpu"}


def fake_report(fa: float, seconds: float = 1.5) -> dict:
    metrics = {"FA": fa, "RA": 99.0, "TA": 95.0, "Acc_f": 0.0, "Acc_r": 96.0, "MIA_svc": 80.0, "MIA_entropy": 5.0,
               "per_class_test": [90.0 + i for i in range(10)]}
    return {"method": "finetune", "seconds": seconds, "retrain_seconds": 3.0, "rte": 3.0 / seconds, "avg_gap": 1.25,
            "unlearned": metrics, "original": {**metrics, "FA": 100.0}, "retrained": {**metrics, "FA": 0.0}}


def test_start_finish_get_round_trip(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.start(CONFIG)
    running = store.get(run_id)
    assert running["status"] == "running"
    assert running["config"]["params"] == {"lr": 0.01, "epochs": 2}
    assert running["code_version"] and running["started_at"] and running["finished_at"] is None

    store.finish(run_id, fake_report(12.5), checkpoint_path="/x/1.pt")
    done = store.get(run_id)
    assert done["status"] == "done"
    assert done["FA"] == 12.5 and done["RA"] == 99.0 and done["avg_gap"] == 1.25 and done["rte"] == 2.0
    assert done["report"]["unlearned"]["per_class_test"][3] == 93.0
    assert done["checkpoint_path"] == "/x/1.pt" and done["finished_at"] >= done["started_at"]
    with pytest.raises(RunNotFoundError):
        store.get(run_id + 100)


def test_nan_metrics_are_stored_as_null(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.start(CONFIG)
    report = fake_report(float("nan"))
    report["unlearned"]["Acc_f"] = float("inf")
    store.finish(run_id, report)
    run = store.get(run_id)
    assert run["FA"] is None and run["Acc_f"] is None and run["report"]["unlearned"]["FA"] is None


def test_list_filters_newest_first_and_fail(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    ids = []
    for method in ("finetune", "ga", "finetune"):
        ids.append(store.start({**CONFIG, "method": method}))
    store.finish(ids[0], fake_report(1.0))
    store.fail(ids[1], "loss became nan")
    store.fail(ids[2], "stopped by user", status="cancelled")

    assert [r["id"] for r in store.list()] == ids[::-1]
    assert [r["id"] for r in store.list(method="finetune")] == [ids[2], ids[0]]
    assert [r["id"] for r in store.list(status="failed")] == [ids[1]]
    assert store.get(ids[1])["error"] == "loss became nan"
    assert store.get(ids[2])["status"] == "cancelled"
    assert len(store.list(limit=2)) == 2
    assert store.list(dataset="mnist5k") == []


def test_wal_mode_and_integrity(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).start(CONFIG)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_export_csv_and_json(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    first = store.start(CONFIG)
    store.finish(first, fake_report(7.0))
    second = store.start({**CONFIG, "method": "ga"})
    store.fail(second, "boom")
    runs = store.list()
    store.export_csv(runs, tmp_path / "runs.csv")
    store.export_json(runs, tmp_path / "runs.json")

    with open(tmp_path / "runs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["id"]) for r in rows] == [second, first]
    done = rows[1]
    assert float(done["unlearned_FA"]) == 7.0 and float(done["original_FA"]) == 100.0
    assert float(done["retrained_FA"]) == 0.0 and float(done["avg_gap"]) == 1.25
    assert json.loads(done["params"]) == {"epochs": 2, "lr": 0.01}
    assert rows[0]["status"] == "failed" and rows[0]["error"] == "boom" and rows[0]["unlearned_FA"] == ""

    exported = json.loads((tmp_path / "runs.json").read_text())
    assert [r["id"] for r in exported] == [second, first]
    assert exported[1]["report"]["unlearned"]["FA"] == 7.0


def _write_many(path: str, worker: int, count: int) -> None:
    store = RunStore(path)
    for i in range(count):
        run_id = store.start({**CONFIG, "method": f"worker{worker}", "seed": i})
        store.finish(run_id, fake_report(float(i)))


def test_two_processes_write_at_once(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    count = 60
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_many, args=(path, w, count)) for w in range(2)]
    for worker in workers:
        worker.start()
    # The parent writes from a thread at the same time: threads and processes share the store safely.
    thread = threading.Thread(target=_write_many, args=(path, 9, 20))
    thread.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    thread.join(120)
    store = RunStore(path)
    runs = store.list()
    assert len(runs) == 2 * count + 20
    assert all(r["status"] == "done" for r in runs)
    for worker in (0, 1):
        seeds = sorted(r["seed"] for r in store.list(method=f"worker{worker}"))
        assert seeds == list(range(count))
        assert all(r["FA"] == float(r["seed"]) for r in store.list(method=f"worker{worker}"))


def _crash_mid_write(path: str) -> None:
    store = RunStore(path)
    store.start({**CONFIG, "method": "crashing"})
    # Die with a write transaction open (as a killed process would), half-way through updating every run.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE runs SET status = 'done', FA = -1, report_json = 'garbage'")
    conn.execute("INSERT INTO runs (status, params_json, config_json, started_at) VALUES ('x', '{}', '{}', 'now')")
    os.kill(os.getpid(), signal.SIGKILL)


def test_crash_during_a_run_keeps_earlier_runs(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    store = RunStore(path)
    earlier = []
    for i in range(3):
        run_id = store.start({**CONFIG, "seed": i})
        store.finish(run_id, fake_report(float(i)))
        earlier.append(store.get(run_id))
    process = multiprocessing.get_context("spawn").Process(target=_crash_mid_write, args=(path,))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL

    runs = RunStore(path).list()
    assert [r["id"] for r in runs[1:]] == [r["id"] for r in earlier[::-1]]
    # The crashed process's run is reaped when the store is reopened: failed, never left "running".
    assert runs[0]["method"] == "crashing" and runs[0]["status"] == "failed"
    assert "interrupted" in runs[0]["error"]
    for before in earlier:
        assert store.get(before["id"]) == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    # The store still takes new runs after the crash.
    store.finish(store.start(CONFIG), fake_report(5.0))
    assert store.count() == 5


def test_run_and_record_saves_a_loadable_checkpoint(tmp_path, digits_class3):
    store = RunStore(tmp_path / "runs.sqlite")
    run_id, report, run = run_and_record(digits_class3, "finetune", {"epochs": 1}, store=store, tag="t")
    saved = store.get(run_id)
    assert saved["status"] == "done" and saved["tag"] == "t"
    assert saved["params"]["epochs"] == 1 and saved["params"]["lr"] == 0.01  # resolved, defaults filled in
    assert saved["FA"] == pytest.approx(report["unlearned"]["FA"])
    assert saved["report"]["retrained"]["TA"] == pytest.approx(report["retrained"]["TA"])
    assert saved["checkpoint_path"] == str(tmp_path / "runs" / f"{run_id}.pt")

    from unlearn_core.models import build_for_dataset

    model = build_for_dataset("mlp", digits_class3.bundle, seed=123)
    load_state_strict(model, read_checkpoint(saved["checkpoint_path"])["state_dict"])
    images = digits_class3.bundle.test_x[:50]
    assert torch.equal(predict_logits(model, images, torch.device("cpu")),
                       predict_logits(run.model, images, torch.device("cpu")))


class _Diverging(UnlearningMethod):
    name = "test_diverging"

    def unlearn(self, task, params):
        raise DivergenceError("test: loss became nan")


def test_run_and_record_marks_failures_and_cancels(tmp_path, digits_class3, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite")
    monkeypatch.setitem(METHODS, "test_diverging", _Diverging)
    with pytest.raises(DivergenceError):
        run_and_record(digits_class3, "test_diverging", store=store)
    failed = store.list(method="test_diverging")[0]
    assert failed["status"] == "failed" and "loss became nan" in failed["error"]
    assert failed["checkpoint_path"] is None

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        run_and_record(digits_class3, "finetune", store=store, cancel=cancel)
    cancelled = store.list(method="finetune")[0]
    assert cancelled["status"] == "cancelled" and cancelled["checkpoint_path"] is None
    assert not (tmp_path / "runs" / f"{cancelled['id']}.pt").exists()


def test_cli_runs_list_show_export(tmp_path, capsys):
    from unlearn_core.cli import main

    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    done = store.start(CONFIG)
    store.finish(done, fake_report(3.0))
    failed = store.start({**CONFIG, "method": "ga"})
    store.fail(failed, "diverged")
    capsys.readouterr()

    assert main(["runs", "list", "--store", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].split()[:3] == [str(failed), "failed", "ga"]
    assert main(["runs", "list", "--store", str(path), "--status", "done", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == [done] and listed[0]["unlearned_FA"] == 3.0

    assert main(["runs", "show", str(done), "--store", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"run {done} [done] finetune" in shown and "per-class test accuracy" in shown
    assert main(["runs", "show", str(done), "--store", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"]["unlearned"]["FA"] == 3.0

    assert main(["runs", "export", "--store", str(path), "--csv", str(tmp_path / "a.csv"),
                 "--json", str(tmp_path / "a.json")]) == 0
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 3
    assert len(json.loads((tmp_path / "a.json").read_text())) == 2

    for argv in (["runs", "show", "999", "--store", str(path)], ["runs", "show", "x", "--store", str(path)],
                 ["runs", "export", "--store", str(path)], ["runs"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_cli_unlearn_records_its_run(tmp_path, capsys, monkeypatch, digits_class3):
    import unlearn_core.runstore as runstore
    from unlearn_core.cli import main

    monkeypatch.setattr(runstore, "default_store_path", lambda: tmp_path / "runs.sqlite")
    argv = ["unlearn", "--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--method", "finetune",
            "--param", "epochs=1", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    assert "recorded as run 1" in capsys.readouterr().out
    run = RunStore(tmp_path / "runs.sqlite").get(1)
    assert run["status"] == "done" and run["method"] == "finetune" and run["params"]["epochs"] == 1
    assert (tmp_path / "runs" / "1.pt").is_file()
    assert main(argv + ["--no-record"]) == 0
    assert RunStore(tmp_path / "runs.sqlite").count() == 1
    assert main(argv[:-3] + ["--param", "epochs=0"]) == 2  # bad parameter: one line, nothing recorded
    assert RunStore(tmp_path / "runs.sqlite").count() == 1
