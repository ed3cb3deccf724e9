"""The run store: round trips, filters, export, WAL, concurrent writers, crash safety, run_and_record."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
import warnings

import pytest
import torch

from unlearn_core.checkpoints import load_state_strict, read_checkpoint
from unlearn_core.errors import Cancelled, DivergenceError
from unlearn_core.methods.base import METHODS, UnlearningMethod
from unlearn_core.record import run_and_record
from unlearn_core.store import RunNotFoundError, RunStore
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
    import unlearn_core.store.runs as store_runs
    from unlearn_core.cli import main

    monkeypatch.setattr(store_runs, "default_store_path", lambda: tmp_path / "runs.sqlite")
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


# -- issue 11: unreadable rows, damaged pages, limits, the checkpoint quota, reaping --------------------------------

def _raw_update(path, sql: str, *values) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql, values)
    finally:
        conn.close()


def test_an_unreadable_json_row_comes_back_flagged_and_never_breaks_readers(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    ids = [store.start({**CONFIG, "seed": i}) for i in range(3)]
    for run_id in ids:
        store.finish(run_id, fake_report(float(run_id)))
    _raw_update(path, "UPDATE runs SET report_json = '{\"unlearned\": {\"FA\": 1' WHERE id = ?", ids[1])
    _raw_update(path, "UPDATE runs SET params_json = '[1, 2]', FA = 'abc' WHERE id = ?", ids[2])

    with pytest.warns(UserWarning) as caught:  # RunStoreWarning (imported below, so this fails on the behaviour)
        runs = store.list()
    assert sorted(str(w.message) for w in caught) == [
        f"run {ids[1]}: its report is not readable JSON (JSONDecodeError); shown without it",
        f"run {ids[2]}: its params is a JSON list, not an object; its FA is not a number; shown without it"]
    assert [r["id"] for r in runs] == ids[::-1]
    bad = {r["id"]: r for r in runs}
    assert bad[ids[1]]["report"] is None and "report" in bad[ids[1]]["read_error"]
    assert bad[ids[1]]["FA"] == float(ids[1])  # the indexed columns still read
    assert bad[ids[2]]["params"] == {} and bad[ids[2]]["FA"] is None and "params" in bad[ids[2]]["read_error"]
    assert "read_error" not in bad[ids[0]] and bad[ids[0]]["report"]["unlearned"]["FA"] == float(ids[0])

    # The safe reader for pages that show their own warnings: problems come back, nothing is warned.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs, problems = store.list_checked(status="done")
    assert len(runs) == 3 and len(problems) == 2 and all("shown without it" in p for p in problems)
    from unlearn_core.store import RunStoreWarning

    with pytest.warns(RunStoreWarning):
        assert store.get(ids[1])["report"] is None
    with pytest.warns(RunStoreWarning):
        store.export_csv(store.list(), tmp_path / "out.csv")
        store.export_json(store.list(), tmp_path / "out.json")
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 4
    assert json.loads((tmp_path / "out.json").read_text())[1]["read_error"]


def _damaged_store(tmp_path, runs: int = 60, damaged_run: int = 31):
    """A store whose table page holding ``damaged_run`` (and its neighbours) is overwritten with zeros."""
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    for i in range(runs):
        run_id = store.start({**CONFIG, "seed": i})
        report = fake_report(float(i))
        report["note"] = f"MARK{run_id:04d}" + "x" * 400  # several rows per 4 KiB page, none overflowing
        store.finish(run_id, report)
    _raw_update(path, "PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    offset = data.find(f"MARK{damaged_run:04d}".encode())
    assert offset > 0
    page = offset // 4096
    data[page * 4096:(page + 1) * 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_page_costs_only_the_runs_on_it(tmp_path):
    from unlearn_core.store import RunStoreError, RunStoreWarning

    path = _damaged_store(tmp_path)
    with pytest.warns(RunStoreWarning, match="is damaged .*malformed.* cannot be read and are skipped"):
        store = RunStore(path)
        runs = store.list()
    listed = {r["id"] for r in runs}
    assert 45 <= len(listed) < 60 and 31 not in listed and {1, 60} <= listed
    assert all(r["report"]["unlearned"]["FA"] == float(r["id"] - 1) for r in runs)
    # Reads that never reach the damaged page are plain reads.
    assert [r["id"] for r in store.list(limit=3)] == [60, 59, 58]
    assert store.list(status="done", limit=0) == []
    with pytest.warns(RunStoreWarning):
        assert len(store.list(limit=45)) == 45
    with pytest.raises(RunStoreError, match="run 31 cannot be read"):
        store.get(31)
    assert store.get(60)["seed"] == 59


def test_limits_and_run_ids_out_of_range_are_clear_errors(tmp_path):
    from unlearn_core.store import RunStoreError

    store = RunStore(tmp_path / "runs.sqlite")
    store.finish(store.start(CONFIG), fake_report(1.0))
    for bad in (10**20, -1, "٣", "1_0"):
        with pytest.raises(RunStoreError, match="limit must be"):
            store.list(limit=bad)
    for bad in ("99999999999999999999", 10**20, "٣", "x", 0, "1.0"):
        with pytest.raises(RunNotFoundError):
            store.get(bad)
    assert store.get("1")["id"] == 1 and len(store.list(limit="1")) == 1


def _finished_with_checkpoint(store: RunStore, size: int, **config) -> int:
    run_id = store.start({**CONFIG, **config})
    path = store.checkpoint_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    store.finish(run_id, fake_report(1.0), checkpoint_path=str(path))
    return run_id


def test_the_checkpoint_quota_prunes_the_oldest_unpinned_checkpoints_and_keeps_every_report(tmp_path, monkeypatch):
    from unlearn_core.store import RunStoreWarning

    store = RunStore(tmp_path / "runs.sqlite")
    mib = 2**20
    ids = [_finished_with_checkpoint(store, mib, seed=i) for i in range(5)]  # 5 MiB in all
    assert store.checkpoint_usage() == (5 * mib, 5)
    store.pin(ids[0])
    outside = tmp_path / "precious.bin"  # a row edited to point outside the store must never cost that file
    outside.write_bytes(b"\0" * (3 * mib))
    _raw_update(store.path, "UPDATE runs SET checkpoint_path = ? WHERE id = ?", str(outside), ids[2])

    monkeypatch.setenv("UNLEARN_RUN_CHECKPOINT_QUOTA_MB", "2.5")
    assert store.enforce_checkpoint_quota() == [ids[1], ids[3]]
    assert outside.exists()
    for run_id in ids:
        run = store.get(run_id)
        assert run["report"]["unlearned"]["FA"] == 1.0  # reports are never pruned
        pruned = run_id in (ids[1], ids[3])
        assert store.checkpoint_path(run_id).exists() is (not pruned or run_id == ids[2])
        assert (run["checkpoint_pruned_at"] is not None) is pruned
        assert (run["checkpoint_path"] is None) is pruned
    assert store.checkpoint_usage() == (2 * mib, 2)  # the pinned first run and the newest

    # Quota 0: every unpinned checkpoint goes; the pinned one stays, with a warning that it alone is over.
    monkeypatch.setenv("UNLEARN_RUN_CHECKPOINT_QUOTA_MB", "0")
    with pytest.warns(RunStoreWarning, match="pinned run checkpoints alone"):
        assert store.enforce_checkpoint_quota() == [ids[4]]
    assert store.checkpoint_path(ids[0]).exists() and store.get(ids[0])["pinned"] == 1
    store.pin(ids[0], False)
    assert store.enforce_checkpoint_quota() == [ids[0]]


@pytest.mark.parametrize("value", ["-1", "lots", "nan", "inf", "٣"])
def test_a_bad_quota_setting_is_refused_before_the_run(tmp_path, monkeypatch, value, digits_class3):
    from unlearn_core.store import RunStoreError

    monkeypatch.setenv("UNLEARN_RUN_CHECKPOINT_QUOTA_MB", value)
    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.raises(RunStoreError, match="UNLEARN_RUN_CHECKPOINT_QUOTA_MB must be"):
        run_and_record(digits_class3, "finetune", {"epochs": 1}, store=store)
    assert store.count() == 0


def test_run_and_record_applies_the_quota(tmp_path, monkeypatch, digits_class3):
    monkeypatch.setenv("UNLEARN_RUN_CHECKPOINT_QUOTA_MB", "0")
    store = RunStore(tmp_path / "runs.sqlite")
    run_id, report, _ = run_and_record(digits_class3, "finetune", {"epochs": 1}, store=store)
    run = store.get(run_id)
    assert run["status"] == "done" and run["FA"] == pytest.approx(report["unlearned"]["FA"])
    assert run["checkpoint_path"] is None and run["checkpoint_pruned_at"]
    assert not store.checkpoint_path(run_id).exists()


def test_a_full_disk_while_saving_the_checkpoint_keeps_the_report(tmp_path, monkeypatch, digits_class3):
    import errno

    from unlearn_core import checkpoints

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoints, "atomic_write_bytes", full)
    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.warns(UserWarning, match="checkpoint not saved: no space left on device"):
        run_id, report, _ = run_and_record(digits_class3, "finetune", {"epochs": 1}, store=store)
    run = store.get(run_id)
    assert run["status"] == "done" and run["report"]["unlearned"]["FA"] == pytest.approx(report["unlearned"]["FA"])
    assert run["checkpoint_path"] is None and run["error"] == "checkpoint not saved: no space left on device"


def test_two_stores_in_one_folder_keep_their_checkpoints_apart(tmp_path):
    default, other = RunStore(tmp_path / "runs.sqlite"), RunStore(tmp_path / "other.sqlite")
    assert default.checkpoint_path(1) == tmp_path / "runs" / "1.pt"
    assert other.checkpoint_path(1) == tmp_path / "other-runs" / "1.pt"


def _old_schema_store(path) -> None:
    """A store as version 1 wrote it (before the pinned / checkpoint_pruned_at columns)."""
    from unlearn_core import store

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for statement in store.SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (status, params_json, config_json, started_at, report_json, checkpoint_path) "
                 "VALUES ('done', '{}', '{}', '2026-01-01', '{\"seconds\": 1}', NULL)")
    conn.close()


def test_an_old_store_gains_the_quota_columns_and_keeps_its_runs(tmp_path):
    path = tmp_path / "runs.sqlite"
    _old_schema_store(path)
    store = RunStore(path)
    run = store.get(1)
    assert run["report"] == {"seconds": 1} and run["pinned"] == 0 and run["checkpoint_pruned_at"] is None
    assert store.pin(1)["pinned"] == 1


def _die_after_saving_the_checkpoint(path: str) -> None:
    from unlearn_core import checkpoints

    store = RunStore(path)
    run_id = store.start(CONFIG)
    checkpoints.atomic_write_bytes(store.checkpoint_path(run_id), b"a complete checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)  # killed between the checkpoint and finish()


def test_reaping_a_killed_run_removes_its_checkpoint_and_stale_temp_files(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    store = RunStore(path)
    kept = _finished_with_checkpoint(store, 10)
    process = multiprocessing.get_context("spawn").Process(target=_die_after_saving_the_checkpoint, args=(path,))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    killed = kept + 1
    assert store.checkpoint_path(killed).is_file()
    folder = store.checkpoint_path(killed).parent
    stale, fresh = folder / f".{killed}.pt.abc123.tmp", folder / f".{killed + 1}.pt.def456.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"a write in progress")
    os.utime(stale, (time.time() - 2 * 3600,) * 2)

    reopened = RunStore(path)
    run = reopened.get(killed)
    assert run["status"] == "failed" and "interrupted" in run["error"]
    assert not reopened.checkpoint_path(killed).exists()  # a failed run keeps no checkpoint
    assert not stale.exists() and fresh.exists()
    assert reopened.checkpoint_path(kept).is_file() and reopened.get(kept)["status"] == "done"


def test_a_full_database_is_a_one_line_store_error(tmp_path, monkeypatch):
    from unlearn_core.store import RunStoreError

    store = RunStore(tmp_path / "runs.sqlite")
    store.finish(store.start(CONFIG), fake_report(1.0))
    opened = RunStore._open

    def capped(self):  # sqlite's own "database or disk is full" (SQLITE_FULL), as on a full disk
        conn = opened(self)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(RunStore, "_open", capped)
    with pytest.raises(RunStoreError, match=r"^cannot write to the run store .*: database or disk is full$"):
        store.start({**CONFIG, "params": {"blob": "x" * 100_000}})
    monkeypatch.undo()
    assert [r["id"] for r in store.list()] == [1]  # the failed write left nothing behind


def test_a_pinned_run_is_not_deleted_and_only_owned_checkpoints_are_served(tmp_path):
    from unlearn_core.store import RunStoreError, delete_run

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.start({"dataset": "digits", "model": "mlp", "forget": "class:3", "method": "ga", "params": {},
                          "seed": 0})
    path = store.checkpoint_path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    store.finish(run_id, {"unlearned": {}}, str(path))
    assert store.owned_checkpoint(store.get(run_id)) == path
    with store._write() as conn:  # a row that names another file is never served
        conn.execute("UPDATE runs SET checkpoint_path = ? WHERE id = ?", (str(tmp_path / "elsewhere.pt"), run_id))
    assert store.owned_checkpoint(store.get(run_id)) is None
    store.pin(run_id)
    with pytest.raises(RunStoreError, match="pinned"):
        delete_run(run_id, store)
    assert store.get(run_id)["id"] == run_id
    store.pin(run_id, False)
    delete_run(run_id, store)
    with pytest.raises(RunNotFoundError):
        store.get(run_id)
