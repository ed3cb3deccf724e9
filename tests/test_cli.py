"""The command line: help, listings, a complete JSON report, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_core.cli import main

REPO = Path(__file__).resolve().parents[1]
REPORT_MODEL_KEYS = {"FA", "RA", "TA", "TA_retain", "Acc_f", "Acc_r", "MIA_svc", "MIA_svc_detail", "MIA_entropy",
                     "per_class_test"}


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "unlearn", "methods", "datasets", "models"):
        assert command in out


def test_methods_lists_declared_parameters(capsys):
    assert main(["methods", "--json"]) == 0
    methods = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert {"retrain", "finetune"} <= set(methods)
    assert {p["name"] for p in methods["finetune"]["params"]} >= {"lr", "epochs", "batch_size"}


def test_evidence_help_lists_every_kind(capsys):
    from unlearn_core.evidence import ALL_KINDS

    for command in (["unlearn"], ["sweep"], ["bench"]):
        with pytest.raises(SystemExit):
            main(command + ["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(kind in text for kind in ALL_KINDS), command


def test_unlearn_evidence_cka_and_relearn_retain(tmp_path, capsys):
    """``--evidence cka,relearn_retain``: CKA per layer against both references on forget and retained samples,
    and the retain-only relearn test for the unlearned model and both references, in the report and the text."""
    out = tmp_path / "out.json"
    code = main(["unlearn", "--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--method", "ssd",
                 "--evidence", "cka,relearn_retain", "--evidence-param", "relearn_retain.steps=20",
                 "--json", str(out), "--no-progress", "--no-record"])
    assert code == 0
    evidence = json.loads(out.read_text())["evidence"]
    cka = evidence["cka"]
    assert cka["layers"] and set(cka["forget"]) == set(cka["retain"]) == {"original", "retrained"}
    assert all(len(cka[s][r]) == len(cka["layers"]) for s in ("forget", "retain") for r in ("original", "retrained"))
    assert all(0.0 <= v <= 1.0 + 1e-6 for s in ("forget", "retain") for r in ("original", "retrained")
               for v in cka[s][r] if v is not None)
    relearn = evidence["relearn_retain"]
    assert set(relearn) == {"original", "unlearned", "retrained"} and relearn["unlearned"]["steps"] == 20
    text = capsys.readouterr()
    assert "linear CKA per layer" in text.out + text.err and "relearn from retained data only" in text.out + text.err


def test_unlearn_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = main(["unlearn", "--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--method", "finetune",
                 "--param", "epochs=2", "--json", str(out), "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("method", "params", "dataset", "model", "forget", "seed", "seconds", "retrain_seconds", "rte",
                "avg_gap"):
        assert key in report, key
    for which in ("original", "unlearned", "retrained"):
        assert REPORT_MODEL_KEYS <= set(report[which]), which
        assert len(report[which]["per_class_test"]) == 10
    assert {"js_forget", "js_test"} <= set(report["unlearned"])
    assert report["params"]["epochs"] == 2 and report["forget"] == "class:3"
    assert report["retrained"]["Acc_f"] == 0.0 and report["original"]["Acc_f"] > 90
    out_text = capsys.readouterr().out
    assert "finetune on digits/mlp" in out_text
    # The recorded run's map panels are stored as the app's run job stores them (--maps pca,umap by default):
    # the Embeddings page finds all three panels of both maps without computing anything.
    assert "map stored (PCA, UMAP" in out_text
    _assert_run_maps_stored(int(out_text.split("recorded as run ")[1].split()[0]), ("pca", "umap"))


def _assert_run_maps_stored(run_id: int, reducers) -> None:
    import numpy as np

    from unlearn_core.embeddings import (EmbeddingCache, cached_panels, default_points, indices_digest,
                                         map_indices)
    from unlearn_core.pipeline import prepare
    from unlearn_core.store import RunStore

    run = RunStore().get(run_id)
    setup = prepare(run["dataset"], run["model"], run["forget"], run["seed"], "cpu")
    labels = setup.bundle.train_y.numpy()
    idx = map_indices(labels, setup.split.forget_idx, default_points(len(labels)))
    keys = {"before": setup.original.key, "after": f"run{run_id}", "retrained": setup.retrained.key}
    for reducer in reducers:
        panels = cached_panels(EmbeddingCache(), reducer, indices_digest(idx), np.isin(idx, setup.split.forget_idx),
                               keys)
        assert panels is not None, reducer
        assert all(panels[s]["coords"].shape == (len(idx), 2) for s in keys)


def test_unlearn_without_umap_installed_stores_the_pca_map_and_says_so(monkeypatch, capsys):
    """umap-learn comes with the [app] extra: a library-only install still records the run and stores PCA."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "umap" else real_find_spec(name, *args))
    code = main(["unlearn", "--dataset", "digits", "--model", "mlp", "--forget", "class:6", "--method", "finetune",
                 "--param", "epochs=1", "--no-progress"])
    out_text = capsys.readouterr().out
    assert code == 0 and "map stored (PCA," in out_text and "UMAP skipped: umap-learn is not installed" in out_text
    run_id = int(out_text.split("recorded as run ")[1].split()[0])
    _assert_run_maps_stored(run_id, ("pca",))


def test_unlearn_maps_none_stores_no_map(tmp_path, capsys):
    from unlearn_core.embeddings import EmbeddingCache

    before = set(EmbeddingCache().root.glob("*"))
    code = main(["unlearn", "--dataset", "digits", "--model", "mlp", "--forget", "class:4", "--method", "finetune",
                 "--param", "epochs=1", "--maps", "none", "--no-progress"])
    assert code == 0 and "map stored" not in capsys.readouterr().out
    assert set(EmbeddingCache().root.glob("*")) == before


@pytest.mark.parametrize("argv, message", [
    (["unlearn", "--dataset", "digits", "--forget", "class:42", "--method", "finetune"], "unknown class 42"),
    (["unlearn", "--dataset", "digits", "--forget", "random:1.5", "--method", "finetune"], "strictly between"),
    (["unlearn", "--dataset", "digits", "--forget", "class:3", "--method", "nope"], "unknown method 'nope'"),
    (["unlearn", "--dataset", "digits", "--forget", "class:3", "--method", "finetune", "--param", "lr=fast"],
     "must be a number"),
    (["unlearn", "--dataset", "digits", "--forget", "class:3", "--method", "finetune", "--param", "lr=5"],
     "must be in"),
    (["unlearn", "--dataset", "digits", "--forget", "class:3", "--method", "finetune", "--param", "size=5"],
     "has no parameter 'size'"),
    (["unlearn", "--dataset", "digits", "--forget", "class:3", "--method", "finetune", "--param", "lr"],
     "KEY=VALUE"),
    (["unlearn", "--dataset", "nope", "--forget", "class:3", "--method", "finetune"], "unknown data set"),
    (["unlearn", "--dataset", "digits", "--model", "nope", "--forget", "class:3", "--method", "finetune"],
     "unknown model"),
    (["unlearn", "--dataset", "digits", "--forget", "class:3", "--method", "finetune", "--device", "tpu"],
     "unknown device"),
    (["unlearn", "--method", "finetune"], "--forget"),
    (["unlearn", "--dataset", "digits", "--forget", "class:3", "--method", "finetune", "--maps", "pca,tsne"],
     "--maps: unknown reducer 'tsne'"),
    (["train", "--seed", "x"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_print_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_module_entry_point_runs_in_a_subprocess():
    result = subprocess.run([sys.executable, "-m", "unlearn_core", "unlearn", "--dataset", "digits", "--forget",
                             "class:99", "--method", "finetune"], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ), timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown class 99")


def test_unlearn_outside_a_methods_scope_says_so(tmp_path, capsys):
    """UNSC is a class-forgetting method: on random forgetting it still runs, but the report and stdout say so."""
    out = tmp_path / "out.json"
    code = main(["unlearn", "--dataset", "digits", "--model", "mlp", "--forget", "random:0.1", "--method", "unsc",
                 "--param", "epochs=1", "--json", str(out), "--no-progress", "--no-record"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "OUT OF SCOPE: UNSC (null space calibration) was designed for class forgetting, not random" in printed
    report = json.loads(out.read_text())
    assert report["in_scope"] is False and "class forgetting" in report["in_scope_reason"]
    main(["unlearn", "--dataset", "digits", "--model", "mlp", "--forget", "random:0.1", "--method", "natmu",
          "--param", "epochs=1", "--json", str(out), "--no-progress", "--no-record"])
    assert "OUT OF SCOPE" not in capsys.readouterr().out
    assert json.loads(out.read_text())["in_scope"] is True


# -- issue 11: output paths, the data directory, numbers, disk full, damaged stores --------------------------------

SESSION_DATA_DIR = Path(os.environ["UNLEARN_DATA_DIR"])  # conftest's, before a test points it elsewhere
DIGITS_FT = ["--dataset", "digits", "--model", "mlp", "--forget", "class:3", "--method", "finetune",
             "--param", "epochs=1", "--device", "cpu", "--no-progress"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    """A fresh data directory whose run store holds one finished run with a checkpoint."""
    from unlearn_core.store import RunStore

    folder = tmp_path / "data"
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(folder))
    store = RunStore(folder / "runs.sqlite")
    run_id = store.start({"dataset": "digits", "model": "mlp", "forget": "class:3", "method": "finetune",
                          "params": {}, "seed": 0})
    store.checkpoint_path(run_id).parent.mkdir(parents=True)
    store.checkpoint_path(run_id).write_bytes(b"weights")
    store.finish(run_id, {"seconds": 1.0, "unlearned": {"FA": 1.0}}, str(store.checkpoint_path(run_id)))
    (folder / "checkpoints").mkdir()
    return folder


@pytest.fixture()
def no_work(monkeypatch):
    """Every command's work fails loudly: a refused output path must stop a command before it."""
    import unlearn_core.bench as bench
    import unlearn_core.pipeline as pipeline
    import unlearn_core.training as training

    def work(*_args, **_kwargs):
        raise AssertionError("the work started before the output path was checked")

    for module, name in ((pipeline, "prepare"), (pipeline, "unlearn"), (training, "get_original"),
                         (bench, "run_bench"), (bench, "result_from_store")):
        monkeypatch.setattr(module, name, work)


BAD_OUTPUTS = {
    "a folder": (lambda d, t: str(t), "is a folder"),
    "under a file": (lambda d, t: str(t / "a-file" / "out.json"), "which is a file, not a folder"),
    "the run store": (lambda d, t: str(d / "runs.sqlite"), "it is the run store"),
    "the store's wal": (lambda d, t: str(d / "runs.sqlite-wal"), "its wal file"),
    "a run checkpoint": (lambda d, t: str(d / "runs" / "1.pt"), "checkpoint folder"),
    "the checkpoint cache": (lambda d, t: str(d / "checkpoints" / "x.json"), "checkpoints/ folder"),
    "another sqlite file": (lambda d, t: str(t / "other.sqlite3"), "is a SQLite database"),
    "an empty name": (lambda d, t: "", "output path is empty"),
    "a 300-byte name": (lambda d, t: str(t / ("n" * 300)), "longer than 255 bytes"),
    "a symlink to the store": (lambda d, t: str(t / "link.csv"), "it is the run store"),
    "a hard link to the store": (lambda d, t: str(t / "hard.csv"), "it is the run store"),
}
COMMANDS = {
    "train --json": ["train", "--dataset", "digits", "--json"],
    "unlearn --json": ["unlearn", *DIGITS_FT, "--json"],
    "bench --out": ["bench", "--dataset", "digits", "--methods", "finetune", "--out"],
    "bench --csv": ["bench", "--dataset", "digits", "--methods", "finetune", "--csv"],
    "bench --json (from tag)": ["bench", "--from-tag", "t", "--json"],
    "runs export --csv": ["runs", "export", "--csv"],
    "runs export --json": ["runs", "export", "--json"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("bad", BAD_OUTPUTS)
def test_bad_output_paths_are_refused_before_any_work(command, bad, data_dir, tmp_path, no_work, capsys):
    import sqlite3

    (tmp_path / "a-file").write_text("x")
    (tmp_path / "link.csv").symlink_to(data_dir / "runs.sqlite")
    os.link(data_dir / "runs.sqlite", tmp_path / "hard.csv")
    sqlite3.connect(tmp_path / "other.sqlite3").execute("CREATE TABLE t (x)").connection.close()
    store_before = (data_dir / "runs.sqlite").read_bytes()
    path, message = BAD_OUTPUTS[bad]
    assert main(COMMANDS[command] + [path(data_dir, tmp_path)]) == 2
    err = _one_error_line(capsys)
    assert message in err and COMMANDS[command][-1] in err
    assert (data_dir / "runs.sqlite").read_bytes() == store_before
    assert (data_dir / "runs" / "1.pt").read_bytes() == b"weights"


def test_runs_export_onto_the_store_leaves_every_run(data_dir, capsys):
    from unlearn_core.store import RunStore

    assert main(["runs", "export", "--csv", str(data_dir / "runs.sqlite")]) == 2
    assert "refusing to write" in _one_error_line(capsys)
    assert RunStore(data_dir / "runs.sqlite").get(1)["report"]["unlearned"]["FA"] == 1.0
    # The same output names twice are refused too (the second write would replace the first).
    assert main(["runs", "export", "--csv", str(data_dir.parent / "a"), "--json", str(data_dir.parent / "a")]) == 2
    assert "name the same file" in _one_error_line(capsys)


def test_runs_export_to_standard_output(data_dir, capfdbinary):
    """``--csv -`` is standard output: the rows go there, the status line to standard error, no file named '-'."""
    assert main(["runs", "export", "--csv", "-"]) == 0
    captured = capfdbinary.readouterr()
    assert captured.out.startswith(b"id,status,method") and b"runs written to -" in captured.err
    assert not (data_dir / "-").exists() and not os.path.exists("-")


@pytest.mark.parametrize("argv", [["runs", "list"], ["runs", "show", "1"], ["train", "--dataset", "digits"],
                                  ["unlearn", *DIGITS_FT]])
def test_a_data_dir_that_is_a_file_is_one_line(argv, tmp_path, monkeypatch, no_work, capsys):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path / "file"))
    assert main(argv) == 2
    assert "UNLEARN_DATA_DIR" in _one_error_line(capsys)


@pytest.mark.parametrize("argv, message", [
    (["runs", "list", "--limit", "99999999999999999999"], "out of range"),
    (["runs", "export", "--csv", "x.csv", "--limit", "99999999999999999999"], "out of range"),
    (["runs", "list", "--limit", "٣"], "invalid int value"),
    (["runs", "list", "--limit", "1_0"], "invalid int value"),
    (["runs", "show", "99999999999999999999"], "no run with id 99999999999999999999"),
    (["runs", "show", "٣"], "run id must be a whole number"),
    (["runs", "pin", "٣"], "run id must be a whole number"),
    (["runs", "pin", "7"], "no run with id 7"),
    (["train", "--seed", "٣"], "invalid int value"),
    (["train", "--seed", "99999999999999999999"], "out of range"),
    (["train", "--epochs", "٣"], "invalid int value"),
    (["unlearn", *DIGITS_FT[:4], "--forget", "class:٣", *DIGITS_FT[6:]], "unknown class '٣'"),
    (["unlearn", *DIGITS_FT[:4], "--forget", "indices:٣,4", *DIGITS_FT[6:]], "whole numbers only"),
    (["unlearn", *DIGITS_FT, "--param", "epochs=٣"], "ASCII digits"),
    (["bench", "--dataset", "digits", "--seeds", "0,٣"], "digits 0-9"),
])
def test_numbers_are_ascii_digits_within_range(argv, message, data_dir, capsys):
    assert main(argv) == 2
    assert message in _one_error_line(capsys)


def test_control_characters_in_an_indices_path_are_not_echoed(capsys):
    assert main(["unlearn", *DIGITS_FT[:4], "--forget", "indices:/nope/a\nb\x1b[2Jc", *DIGITS_FT[6:]]) == 2
    err = _one_error_line(capsys)
    assert "\x1b" not in err and "'/nope/a\\nb\\x1b[2Jc'" in err


def test_a_full_disk_is_one_line_and_the_report_stays_in_the_store(data_dir, monkeypatch, capsys, digits_class3):
    import errno

    from unlearn_core import checkpoints
    from unlearn_core.store import RunStore

    for name in ("original", "retrained"):  # the session's trained digits models, so nothing trains here
        trained = getattr(digits_class3, name)
        source = checkpoints.CheckpointCache(SESSION_DATA_DIR / "checkpoints").path_for(trained.key)
        (data_dir / "checkpoints" / source.name).write_bytes(source.read_bytes())

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoints, "atomic_write_bytes", full)
    assert main(["runs", "export", "--csv", str(data_dir.parent / "runs.csv")]) == 2
    assert _one_error_line(capsys) == (f"error: --csv: cannot write the output to "
                                       f"{str(data_dir.parent / 'runs.csv')!r}: no space left on device")

    assert main(["unlearn", *DIGITS_FT, "--json", str(data_dir.parent / "out.json")]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[0] == "warning: run 2: checkpoint not saved: no space left on device; the report is recorded"
    assert len(err) == 2 and "no space left on device" in err[1] and "runs show 2 --json" in err[1]
    assert "recorded as run 2" in captured.out
    run = RunStore(data_dir / "runs.sqlite").get(2)
    assert run["status"] == "done" and run["report"]["unlearned"]["FA"] is not None


def test_a_damaged_store_still_lists_exports_and_shows(tmp_path, capsys):
    from test_runstore import _damaged_store, _raw_update

    path = _damaged_store(tmp_path)
    _raw_update(path, "UPDATE runs SET report_json = 'not json' WHERE id = 40")
    store = ["--store", str(path)]
    assert main(["runs", "list", *store]) == 0
    captured = capsys.readouterr()
    assert "cannot be read and are skipped" in captured.err and "run 40: its report is not readable" in captured.err
    assert all(line.startswith("warning: ") for line in captured.err.strip().splitlines())
    assert " 60 done" in captured.out and "\n   31 " not in captured.out

    assert main(["runs", "export", *store, "--csv", str(tmp_path / "o.csv"), "--json", str(tmp_path / "o.json")]) == 0
    assert "skipped" in capsys.readouterr().err
    exported = json.loads((tmp_path / "o.json").read_text())
    assert 45 <= len(exported) < 60 and 31 not in {r["id"] for r in exported}

    assert main(["runs", "show", "40", *store]) == 0
    captured = capsys.readouterr()
    assert "run 40 [done]" in captured.out and captured.err.startswith("warning: run 40")
    assert main(["runs", "show", "31", *store]) == 2
    assert "run 31 cannot be read" in _one_error_line(capsys)


def test_runs_pin_keeps_a_checkpoint_through_the_quota(data_dir, monkeypatch, capsys):
    from unlearn_core.store import RunStore

    store = RunStore(data_dir / "runs.sqlite")
    second = store.start({"dataset": "digits", "params": {}})
    store.checkpoint_path(second).write_bytes(b"more weights")
    store.finish(second, {"seconds": 2.0}, str(store.checkpoint_path(second)))
    assert main(["runs", "pin", "1"]) == 0
    assert "run 1 pinned: its checkpoint is kept" in capsys.readouterr().out
    monkeypatch.setenv("UNLEARN_RUN_CHECKPOINT_QUOTA_MB", "0")
    with pytest.warns(UserWarning, match="pinned run checkpoints alone"):
        assert store.enforce_checkpoint_quota() == [second]
    assert main(["runs", "show", str(second)]) == 0
    assert "checkpoint pruned" in capsys.readouterr().out
    assert main(["runs", "unpin", "1"]) == 0
    assert store.enforce_checkpoint_quota() == [1]


def test_any_os_error_reaching_the_cli_is_one_line(monkeypatch, capsys):
    import errno

    import unlearn_core.cli.info as cli_info

    def broken(_args):
        raise OSError(errno.EIO, "Input/output error", "/mnt/gone/x")

    monkeypatch.setattr(cli_info, "cmd_datasets", broken)
    assert main(["datasets"]) == 2
    assert _one_error_line(capsys) == "error: input/output error ('/mnt/gone/x')"


@pytest.mark.parametrize("argv", [["unlearn", *DIGITS_FT], ["bench", "--dataset", "digits", "--methods", "finetune"]])
def test_a_bad_checkpoint_quota_stops_a_recording_command_before_its_work(argv, data_dir, monkeypatch, no_work,
                                                                           capsys):
    monkeypatch.setenv("UNLEARN_RUN_CHECKPOINT_QUOTA_MB", "lots")
    assert main(argv) == 2
    assert "UNLEARN_RUN_CHECKPOINT_QUOTA_MB must be a number of MiB" in _one_error_line(capsys)


def test_deterministic_flag_runs_in_deterministic_mode(data_dir, tmp_path, capsys):
    """``--deterministic``: the run's timing says so and uses one thread; the same command gives the same metrics."""
    import torch

    threads = torch.get_num_threads()
    reports = []
    for name in ("a.json", "b.json"):
        assert main(["unlearn", *DIGITS_FT, "--deterministic", "--no-progress", "--json", str(tmp_path / name)]) == 0
        reports.append(json.loads((tmp_path / name).read_text()))
    assert all(r["timing"]["deterministic"] is True and r["timing"]["threads"] == 1 for r in reports)
    assert reports[0]["unlearned"] == reports[1]["unlearned"]
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()  # restored
    assert main(["sweep", "--dataset", "digits", "--forget", "class:1", "--methods", "ga", "--deterministic"]) == 2
    assert "--engine inline" in capsys.readouterr().err
