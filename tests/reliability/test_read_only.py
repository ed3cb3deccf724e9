"""Read-only places (issue 11): a read-only run store can still be listed; read-only output folders and data
directories are refused in one line before any work.

File permissions only bind a process without CAP_DAC_OVERRIDE. When the tests run as root (as in CI
containers), each command runs under ``setpriv`` with those capabilities dropped from its bounding set, so it
meets the permission bits as any user would.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearn_core.store import RunStore

REPO = Path(__file__).resolve().parents[2]
DIGITS_FT = ["--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--method", "finetune",
             "--param", "epochs=1", "--device", "cpu", "--no-progress"]


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "unlearn_core", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permission bits cannot be tested")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", *command]
    env = dict(os.environ, UNLEARN_DATA_DIR=str(data_dir))
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _read_only(*paths: Path) -> None:
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture()
def read_only_store(tmp_path):
    data_dir = tmp_path / "data"
    store = RunStore(data_dir / "runs.sqlite")
    run_id = store.start({"dataset": "digits", "model": "mlp", "forget": "class:3", "method": "finetune",
                          "params": {"epochs": 1}, "seed": 0})
    store.finish(run_id, {"seconds": 1.0, "unlearned": {"FA": 12.5, "per_class_test": [90.0] * 10}})
    _read_only(data_dir / "runs.sqlite", data_dir)
    yield data_dir
    data_dir.chmod(0o755)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_a_read_only_store_can_be_listed_shown_and_exported(read_only_store, tmp_path):
    listed = _cli(read_only_store, "runs", "list")
    assert listed.returncode == 0, listed.stderr
    assert "finetune" in listed.stdout and "12.50" in listed.stdout and not listed.stderr
    shown = _cli(read_only_store, "runs", "show", "1")
    assert shown.returncode == 0 and "run 1 [done] finetune" in shown.stdout, shown.stderr
    exported = _cli(read_only_store, "runs", "export", "--json", str(tmp_path / "out.json"))
    assert exported.returncode == 0 and (tmp_path / "out.json").is_file(), exported.stderr
    # Writing is refused in one line, and nothing is written (no -wal, no -shm beside it).
    assert "is read-only here" in _one_error_line(_cli(read_only_store, "runs", "pin", "1"))
    assert sorted(p.name for p in read_only_store.iterdir()) == ["runs.sqlite"]


def test_a_read_only_data_dir_stops_work_before_it_starts(read_only_store):
    for argv in (["unlearn", *DIGITS_FT], ["train", "--dataset", "digits"]):
        err = _one_error_line(_cli(read_only_store, *argv))
        assert "the data directory" in err and "is read-only" in err and "UNLEARN_DATA_DIR" in err


def test_an_output_in_a_read_only_folder_is_refused_before_the_run(tmp_path):
    data_dir, out_dir = tmp_path / "data", tmp_path / "out"
    data_dir.mkdir()
    out_dir.mkdir()
    (out_dir / "old.json").write_text("{}")
    _read_only(out_dir)
    try:
        started = time.monotonic()
        for target in (out_dir / "report.json", out_dir / "sub" / "report.json"):
            err = _one_error_line(_cli(data_dir, "unlearn", *DIGITS_FT, "--json", str(target)))
            assert err.startswith("error: --json: cannot write") and "is read-only" in err
        _read_only(out_dir / "old.json")
        out_dir.chmod(0o755)
        err = _one_error_line(_cli(data_dir, "unlearn", *DIGITS_FT, "--json", str(out_dir / "old.json")))
        assert "is read-only" in err
        assert time.monotonic() - started < 120  # refused at once: no training, no run
        assert not (data_dir / "runs.sqlite").exists() or RunStore(data_dir / "runs.sqlite").count() == 0
    finally:
        out_dir.chmod(0o755)
