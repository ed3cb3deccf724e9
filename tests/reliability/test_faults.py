"""Faults: a worker killed mid-run, a cancelled run, a diverging loss and an out-of-memory device.

The kill tests run real subprocesses (``python -m unlearn_core ...`` and a
checkpoint writer) and SIGKILL them part-way; afterwards the run store must
open, earlier runs must be intact, every checkpoint on disk must load whole,
and a re-run must succeed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from unlearn_core.checkpoints import CheckpointCache, read_checkpoint
from unlearn_core.errors import Cancelled, DivergenceError
from unlearn_core.pipeline import run_method
from unlearn_core.progress import OutOfMemory
from unlearn_core.record import run_and_record
from unlearn_core.store import RunStore
from unlearn_core.training import default_recipe, get_original, predict_logits

REPO = Path(__file__).resolve().parents[2]
DIGITS_CLI = ["--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--no-progress"]


def _cli(data_dir: Path, *args: str, wait: bool = True):
    env = dict(os.environ, UNLEARN_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "unlearn_core", *args]
    if wait:
        return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _seeded_data_dir(tmp_path: Path, setup) -> Path:
    """A fresh data dir holding the session's cached digits checkpoints, so workers start at once."""
    data_dir = tmp_path / "data"
    (data_dir / "checkpoints").mkdir(parents=True)
    for trained in (setup.original, setup.retrained):
        source = CheckpointCache().path_for(trained.key)
        shutil.copy(source, data_dir / "checkpoints" / source.name)
    return data_dir


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _assert_every_checkpoint_loads(data_dir: Path) -> int:
    files = sorted(data_dir.rglob("*.pt"))
    for path in files:
        checkpoint = read_checkpoint(path)  # raises CheckpointError on a torn or partial file
        assert checkpoint["state_dict"], path
    return len(files)


def test_killing_unlearn_and_train_workers_leaves_store_and_cache_consistent(tmp_path, digits_class3):
    data_dir = _seeded_data_dir(tmp_path, digits_class3)

    first = _cli(data_dir, "unlearn", *DIGITS_CLI, "--method", "finetune", "--param", "epochs=1")
    assert first.returncode == 0, first.stderr
    store = RunStore(data_dir / "runs.sqlite")
    before = store.get(1)
    assert before["status"] == "done" and before["checkpoint_path"]

    # 1. SIGKILL an unlearning run part-way through its fine-tuning.
    victim = _cli(data_dir, "unlearn", *DIGITS_CLI, "--method", "finetune", "--param", "epochs=200", wait=False)
    _wait_for(lambda: store.count() >= 2, 300, "the second run to start")
    time.sleep(0.5)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    killed = store.get(2)
    assert killed["status"] != "done" and killed["report"] is None and killed["checkpoint_path"] is None

    # 2. SIGKILL a training job (a new seed, so it trains instead of loading) before it writes its checkpoint.
    trainer = _cli(data_dir, "train", "--dataset", "digits", "--model", "mlp", "--seed", "7", "--epochs", "400",
                   "--no-progress", wait=False)
    locks = data_dir / "checkpoints"
    _wait_for(lambda: len(list(locks.glob(".*.lock"))) >= 3, 300, "the trainer to take its cache lock")
    time.sleep(1.0)
    os.kill(trainer.pid, signal.SIGKILL)
    assert trainer.wait(timeout=60) == -signal.SIGKILL

    # The store opens and earlier runs are exactly as they were; every checkpoint file loads whole.
    reopened = RunStore(data_dir / "runs.sqlite")
    assert reopened.get(1) == before
    assert {run["id"] for run in reopened.list(status="done")} == {1}
    assert _assert_every_checkpoint_loads(data_dir) == 3  # original, retrained, run 1

    # A re-run after the crashes succeeds and is recorded next to the old ones.
    again = _cli(data_dir, "unlearn", *DIGITS_CLI, "--method", "finetune", "--param", "epochs=1")
    assert again.returncode == 0, again.stderr
    done = reopened.list(status="done")
    assert [run["id"] for run in done] == [3, 1]
    assert done[0]["report"]["unlearned"]["RA"] == pytest.approx(before["report"]["unlearned"]["RA"])
    assert _assert_every_checkpoint_loads(data_dir) == 4


_WRITER = textwrap.dedent("""
    import sys, torch
    from unlearn_core.checkpoints import save_checkpoint
    from unlearn_core.models import build_model
    target = sys.argv[1]
    model = build_model("resnet18", 3, (32, 32), 10, seed=0)
    round_ = 0
    while True:
        round_ += 1
        with torch.no_grad():
            model.head.bias.fill_(round_)
        save_checkpoint(target, model, {"round": round_})
        print(round_, flush=True)
""")


def test_sigkill_during_checkpoint_writes_never_leaves_a_partial_file(tmp_path):
    # A ~45 MB checkpoint takes a while to write; killing the writer at random moments lands inside writes.
    target = tmp_path / "ckpt" / "model.pt"
    rng = random.Random(0)
    rounds_seen = 0
    for _attempt in range(3):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=REPO, stdout=subprocess.PIPE,
                                  text=True)
        assert writer.stdout.readline().strip(), "writer produced no checkpoint"
        time.sleep(rng.uniform(0.05, 1.0))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=60)
        checkpoint = read_checkpoint(target)
        round_ = checkpoint["meta"]["round"]
        rounds_seen = max(rounds_seen, round_)
        # Weights and metadata come from the same completed write.
        assert torch.all(checkpoint["state_dict"]["head.bias"] == round_)
    leftovers = [p for p in target.parent.iterdir() if p != target]
    # Killed writes leave only hidden temporary files, which no loader ever opens.
    assert all(p.name.startswith(".model.pt.") and p.suffix == ".tmp" for p in leftovers), leftovers
    assert rounds_seen >= 1


def test_cancelled_run_is_recorded_and_leaves_earlier_runs_intact(tmp_path, digits_class3):
    store = RunStore(tmp_path / "runs.sqlite")
    first_id, first_report, _ = run_and_record(digits_class3, "finetune", {"epochs": 1}, store=store)
    cancel = threading.Event()
    events = []

    def progress(event):
        events.append(event)
        if len(events) == 5:
            cancel.set()

    with pytest.raises(Cancelled):
        run_and_record(digits_class3, "finetune", {"epochs": 50}, progress=progress, cancel=cancel, store=store)
    runs = store.list()
    assert [(r["id"], r["status"]) for r in runs] == [(2, "cancelled"), (1, "done")]
    assert runs[0]["checkpoint_path"] is None and runs[0]["report"] is None
    assert 5 <= len(events) < 50
    assert store.get(first_id)["report"] == first_report
    assert not (tmp_path / "runs" / "2.pt").exists()


def test_diverging_gradient_ascent_is_recorded_as_failed_not_stored(tmp_path, digits_class3):
    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.raises(DivergenceError, match=r"loss became (nan|inf) \(diverged\); lower the learning rate"):
        run_and_record(digits_class3, "ga", {"lr": 0.1, "epochs": 100}, store=store)
    (run,) = store.list()
    assert run["status"] == "failed" and "diverged" in run["error"]
    assert run["report"] is None and run["checkpoint_path"] is None and run["TA"] is None


def test_diverging_run_through_the_cli_exits_2_with_one_line(tmp_path, digits_class3):
    data_dir = _seeded_data_dir(tmp_path, digits_class3)
    result = _cli(data_dir, "unlearn", *DIGITS_CLI, "--method", "ga", "--param", "lr=0.1", "--param", "epochs=100")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "diverged" in lines[0], result.stderr
    (run,) = RunStore(data_dir / "runs.sqlite").list()
    assert run["status"] == "failed" and run["report"] is None


def _raise_oom(*_args, **_kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_in_unlearning_fails_with_batch_size_advice(tmp_path, digits_class3, monkeypatch):
    from unlearn_core.models import UnlearnModel

    store = RunStore(tmp_path / "runs.sqlite")
    monkeypatch.setattr(UnlearnModel, "forward", _raise_oom)
    with pytest.raises(OutOfMemory, match=r"fine-tune: the cpu ran out of memory at batch size 64; choose a "
                                          r"smaller batch size \(e\.g\. 32\)"):
        run_and_record(digits_class3, "finetune", {"epochs": 1}, store=store)
    (run,) = store.list()
    assert run["status"] == "failed" and "smaller batch size" in run["error"]


def test_out_of_memory_in_training_fails_with_batch_size_advice(tmp_path, monkeypatch):
    from unlearn_core.data import load_dataset
    from unlearn_core.models import UnlearnModel

    monkeypatch.setattr(UnlearnModel, "forward", _raise_oom)
    recipe = default_recipe("digits", epochs=1, batch_size=128)
    cache = CheckpointCache(tmp_path)
    with pytest.raises(OutOfMemory, match="training: .* at batch size 128; choose a smaller batch size"):
        get_original(load_dataset("digits"), "mlp", 0, recipe, "cpu", cache=cache)
    assert not list(tmp_path.glob("*.pt"))


def test_inference_halves_its_batch_on_out_of_memory(digits_class3, monkeypatch):
    model = digits_class3.original.model
    images = digits_class3.bundle.test_x
    expected = predict_logits(model, images, batch_size=1024)
    real_forward = type(model).forward
    sizes = []

    def forward_with_small_memory(self, x):
        sizes.append(len(x))
        if len(x) > 100:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_forward(self, x)

    monkeypatch.setattr(type(model), "forward", forward_with_small_memory)
    got = predict_logits(model, images, batch_size=1024)
    assert torch.allclose(got, expected, atol=1e-5)
    assert max(s for s in sizes if s <= 100) == 64 and len(images) > 100

    def always_out_of_memory(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(type(model), "forward", always_out_of_memory)
    with pytest.raises(OutOfMemory, match="even one sample does not fit"):
        predict_logits(model, images[:10])


def test_unrelated_runtime_errors_are_not_mistaken_for_out_of_memory(digits_class3, monkeypatch):
    from unlearn_core.models import UnlearnModel

    def broken(*_args, **_kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(UnlearnModel, "forward", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_method(digits_class3, "finetune", {"epochs": 1})


def test_cache_sweeps_temp_files_that_killed_writers_left_behind(tmp_path):
    stale = tmp_path / ".abc.pt.k1l2e3d.tmp"
    fresh = tmp_path / ".def.pt.w4r5i6t.tmp"
    finished = tmp_path / "abc.pt"
    for path in (stale, fresh, finished):
        path.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(finished, (two_hours_ago, two_hours_ago))
    CheckpointCache(tmp_path)
    # The stale temporary file goes; one that may still be being written stays; real checkpoints are untouched.
    assert not stale.exists() and fresh.exists() and finished.exists()
    assert CheckpointCache(tmp_path).remove_stale_temp_files(older_than=0) == 1 and not fresh.exists()
