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
    assert "finetune on digits/mlp" in capsys.readouterr().out


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
