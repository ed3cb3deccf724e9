"""Concurrency: two sessions unlearning at once, several processes writing the run store, two processes asking
for the same untrained model, and model construction from several threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from unlearn_core.checkpoints import read_checkpoint
from unlearn_core.errors import Cancelled
from unlearn_core.models import build_model
from unlearn_core.record import run_and_record
from unlearn_core.store import RunStore

REPO = Path(__file__).resolve().parents[2]

SESSION_A = ("finetune", {"epochs": 2, "lr": 0.01})
SESSION_B = ("ga", {"epochs": 2, "lr": 1e-3})


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_two_sessions_unlearning_at_once_do_not_mix_state(tmp_path, digits_class3):
    original_before = _state(digits_class3.original.model)
    alone = {}
    for name, params in (SESSION_A, SESSION_B):
        _, report, run = run_and_record(digits_class3, name, params, store=RunStore(tmp_path / "alone.sqlite"))
        alone[name] = (report, _state(run.model))

    store = RunStore(tmp_path / "together.sqlite")
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def session(name, params):
        try:
            barrier.wait()
            results[name] = run_and_record(digits_class3, name, params, store=store)
        except BaseException as error:  # surfaced below; a thread's exception is otherwise lost
            errors.append(error)

    threads = [threading.Thread(target=session, args=s) for s in (SESSION_A, SESSION_B)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors
    for name, _ in (SESSION_A, SESSION_B):
        run_id, report, run = results[name]
        assert _same_weights(_state(run.model), alone[name][1]), f"{name} changed when run beside another session"
        assert report["unlearned"] == alone[name][0]["unlearned"]
        stored = store.get(run_id)
        assert stored["method"] == name and stored["status"] == "done"
        assert stored["config"]["params"]["lr"] == dict((SESSION_A, SESSION_B))[name]["lr"]
        saved = read_checkpoint(stored["checkpoint_path"])["state_dict"]
        assert _same_weights(saved, alone[name][1])
    assert _same_weights(_state(digits_class3.original.model), original_before), "a method changed the original"


def test_cancelling_one_session_leaves_the_other_running(tmp_path, digits_class3):
    store = RunStore(tmp_path / "runs.sqlite")
    _, expected, _ = run_and_record(digits_class3, *SESSION_A, store=RunStore(tmp_path / "alone.sqlite"))
    cancel_b = threading.Event()
    outcome = {}

    def session_a():
        outcome["a"] = run_and_record(digits_class3, *SESSION_A, store=store, cancel=threading.Event())

    def session_b():
        def progress(event):
            if event.step == 3:
                cancel_b.set()  # the user of session B presses Cancel part-way
        try:
            run_and_record(digits_class3, "finetune", {"epochs": 50}, store=store, progress=progress,
                           cancel=cancel_b)
        except Cancelled:
            outcome["b"] = "cancelled"

    threads = [threading.Thread(target=session_a), threading.Thread(target=session_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert outcome.get("b") == "cancelled"
    run_id, report, _ = outcome["a"]
    assert report["unlearned"] == expected["unlearned"]
    statuses = {run["id"]: run["status"] for run in store.list()}
    assert statuses[run_id] == "done" and sorted(statuses.values()) == ["cancelled", "done"]


def write_runs(path: str, writer: str, count: int) -> None:
    """One writer's share: ``count`` runs, every fifth one failed on purpose."""
    store = RunStore(path)
    for i in range(count):
        run_id = store.start({"dataset": "digits", "model": "mlp", "forget": "class:3", "method": "finetune",
                              "params": {"writer": writer, "i": i}, "seed": 0, "device": "cpu"})
        if i % 5 == 4:
            store.fail(run_id, f"{writer}-{i} failed on purpose")
        else:
            store.finish(run_id, {"method": "finetune", "writer": writer, "i": i, "seconds": float(i),
                                  "unlearned": {"TA": float(i)}})


def test_run_store_takes_concurrent_writers_from_processes_and_threads(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    per_writer = 15
    here = str(Path(__file__).resolve().parent)
    script = (f"import sys; sys.path.insert(0, {here!r}); from test_concurrency import write_runs; "
              "write_runs(sys.argv[1], sys.argv[2], int(sys.argv[3]))")
    processes = [subprocess.Popen([sys.executable, "-c", script, path, f"proc{n}", str(per_writer)], cwd=REPO,
                                  stderr=subprocess.PIPE, text=True) for n in range(4)]
    errors = []

    def thread_writer(name):
        try:
            write_runs(path, name, per_writer)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=thread_writer, args=(f"thread{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stderr.read()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors

    runs = RunStore(path).list()
    writers = [f"proc{n}" for n in range(4)] + ["thread0", "thread1"]
    assert len(runs) == per_writer * len(writers)
    assert len({run["id"] for run in runs}) == len(runs)
    for run in runs:
        writer, i = run["config"]["params"]["writer"], run["config"]["params"]["i"]
        if i % 5 == 4:
            assert run["status"] == "failed" and run["error"] == f"{writer}-{i} failed on purpose"
        else:
            assert run["status"] == "done" and run["report"]["writer"] == writer and run["report"]["i"] == i
            assert run["TA"] == float(i)
    assert {run["config"]["params"]["writer"] for run in runs} == set(writers)


def test_two_processes_asking_for_the_same_model_train_it_once(tmp_path):
    env = dict(os.environ, UNLEARN_DATA_DIR=str(tmp_path / "data"))
    outputs = [tmp_path / f"train{n}.json" for n in range(2)]
    command = [sys.executable, "-m", "unlearn_core", "train", "--dataset", "digits", "--model", "mlp", "--seed", "11",
               "--epochs", "3", "--no-progress", "--json"]
    workers = [subprocess.Popen(command + [str(out)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for out in outputs]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()
    reports = [json.loads(out.read_text()) for out in outputs]
    assert sorted(r["from_cache"] for r in reports) == [False, True]  # the second waited on the lock, then loaded
    assert reports[0]["checkpoint"] == reports[1]["checkpoint"]
    assert reports[0]["test_accuracy"] == reports[1]["test_accuracy"]
    files = list((tmp_path / "data" / "checkpoints").glob("*.pt"))
    assert len(files) == 1 and read_checkpoint(files[0])["state_dict"]


def test_models_built_in_parallel_threads_get_their_own_seeded_weights():
    expected = {seed: build_model("small_cnn", 1, (28, 28), 10, seed=seed).head.weight.clone() for seed in range(6)}
    wrong = []

    def build(seed):
        for _ in range(10):
            if not torch.equal(build_model("small_cnn", 1, (28, 28), 10, seed=seed).head.weight, expected[seed]):
                wrong.append(seed)

    threads = [threading.Thread(target=build, args=(seed,)) for seed in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong, f"{len(wrong)} of 60 parallel builds got another seed's weights"
