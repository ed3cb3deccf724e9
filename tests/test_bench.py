"""The comparison bench: one seed, two methods on digits, tables, files and run-store records."""

from __future__ import annotations

import csv
import json

import pytest

from unlearn_core.bench import bench_methods, markdown_table, result_from_store, run_bench
from unlearn_core.errors import ParameterError
from unlearn_core.store import RunStore
from unlearn_core.sweeps import parse_seeds


def test_bench_on_digits_records_runs_and_tabulates(tmp_path, digits_class3):
    store = RunStore(tmp_path / "runs.sqlite")
    logged = []
    result = run_bench("digits", ["class:3"], [0], ["rl", "ssd"], model="mlp", device="cpu", store=store,
                       params={"rl.epochs": "1"}, tag="t1", log=logged.append)
    (setting,) = result["settings"]
    assert [row["method"] for row in setting["rows"]] == ["retrain", "original", "rl", "ssd"]
    rows = {row["method"]: row for row in setting["rows"]}
    retrained = digits_class3.metrics("retrained")
    assert rows["retrain"]["summary"]["FA"]["mean"] == pytest.approx(retrained["FA"])
    assert rows["retrain"]["summary"]["avg_gap"]["mean"] == 0.0
    assert rows["original"]["summary"]["FA"]["mean"] == pytest.approx(digits_class3.metrics("original")["FA"])
    assert rows["rl"]["summary"]["FA"]["mean"] < 50.0  # RL unlearns class 3
    assert len(logged) == 3

    recorded = store.list(tag="t1")
    assert sorted(r["method"] for r in recorded) == ["retrain", "rl", "ssd"]
    assert all(r["status"] == "done" for r in recorded)
    assert next(r for r in recorded if r["method"] == "rl")["params"]["epochs"] == 1
    assert sorted(rows["rl"]["run_ids"] + rows["ssd"]["run_ids"] + rows["retrain"]["run_ids"]) == \
        sorted(r["id"] for r in recorded)

    rebuilt = result_from_store(store, "t1")["settings"][0]
    assert [row["method"] for row in rebuilt["rows"]] == ["retrain", "original", "rl", "ssd"]
    for row, again in zip(setting["rows"], rebuilt["rows"]):
        assert again["summary"]["TA"]["mean"] == pytest.approx(row["summary"]["TA"]["mean"])
        assert again["summary"]["avg_gap"]["mean"] == pytest.approx(row["summary"]["avg_gap"]["mean"])

    table = markdown_table(setting).splitlines()
    assert table[0].startswith("| Method | Acc_f | Acc_r | FA | RA | TA | TA_r | MIA-SVC | MIA-ent | Avg.Gap | Time (s) "
                               "| Speed-up (x) |")
    assert len(table) == 2 + 4 and table[2].startswith("| Retrain")
    rl_line = next(line for line in table if "(`rl`)" in line)
    assert f"{rows['rl']['summary']['TA']['mean']:.2f}" in rl_line


def test_bench_cli_writes_files_and_std_over_seeds(tmp_path, capsys):
    from unlearn_core.cli import main

    out, csv_path, json_path = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.json"
    argv = ["bench", "--dataset", "digits", "--model", "mlp", "--forget", "random:0.1", "--seeds", "0,1",
            "--methods", "ssd,bs", "--device", "cpu", "--store", str(tmp_path / "r.sqlite"), "--out", str(out),
            "--csv", str(csv_path), "--json", str(json_path), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "forget `random:0.1`" in printed and "(`bs`)" in printed and " ± " in printed
    # BS was designed for class forgetting: its row is marked, with the reason under the table, and never bolded.
    bs_line = next(line for line in printed.splitlines() if "(`bs`)" in line)
    assert "† out of scope" in bs_line and "**" not in bs_line
    assert "- † `bs`: BS (boundary shrink) was designed for class forgetting, not random" in printed
    assert out.read_text().strip() in printed
    assert "Command: `python -m unlearn_core bench --dataset digits --model mlp --forget random:0.1" in printed
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["method"] for r in rows] == ["retrain", "original", "ssd", "bs"]
    # Random forgetting has no forgotten classes, so Acc_f is empty.
    assert rows[0]["Acc_f_mean"] == "" and float(rows[0]["TA_std"]) >= 0.0
    data = json.loads(json_path.read_text())
    assert len(data["settings"][0]["rows"][2]["values"]["TA"]) == 2
    assert RunStore(tmp_path / "r.sqlite").count() == 2 * 3


def test_bench_rejects_bad_input(tmp_path, capsys):
    from unlearn_core.cli import main

    with pytest.raises(ParameterError):
        parse_seeds("0,x")
    with pytest.raises(ParameterError):
        parse_seeds("1,1")
    assert "retrain" not in bench_methods(None) and "ga" in bench_methods(None)
    for argv in (["bench", "--seeds", ""], ["bench", "--methods", "nope"], ["bench", "--preset", "nope"],
                 ["bench", "--methods", "ga", "--param", "rl.lr=0.1"], ["bench", "--param", "ga.lr=-1"],
                 ["bench", "--from-tag", "no-such-tag", "--store", str(tmp_path / "empty.sqlite")]):
        assert main(argv) == 2
        assert capsys.readouterr().err.startswith("error: ")
