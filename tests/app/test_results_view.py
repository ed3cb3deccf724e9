"""The Results page's rules on plain tables: honest "best" cells, who forgot, over-unlearning lines, deletion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from unlearn_core.tables import (DISPLAY, HELP, SPEED_COLUMN, best_cells, forgot, judged_table,
                                 over_unlearning_summary, per_class_shift)


def metrics(fa, ta=90.0, acc_f=None, per_class=(98.0, 98.0, 98.0, 98.0)):
    return {"FA": fa, "RA": 99.0, "TA": ta, "Acc_f": fa if acc_f is None else acc_f, "Acc_r": 98.0,
            "MIA_svc": 10.0, "MIA_entropy": 5.0, "per_class_test": list(per_class)}


def run(run_id, method, fa, seconds=1.0, ta=90.0, per_class=(98.0, 98.0, 98.0, 0.0), **extra):
    return {"id": run_id, "method": method, "status": "done", "report": {
        "original": metrics(99.0, 98.0), "retrained": metrics(0.0, 75.0, per_class=(98.0, 98.0, 98.0, 0.0)),
        "unlearned": metrics(fa, ta, per_class=per_class), "seconds": seconds, "rte": 10.0 / seconds,
        "avg_gap": abs(fa) / 4, "retrain_seconds": 10.0, "class_names": ["a", "b", "c", "d"],
        "forgotten_classes": [3], **extra}}


def test_one_run_is_never_best():
    assert best_cells(judged_table([run(1, "unsc", 50.0)])) == {}


def test_the_table_downloads_as_shown():
    from unlearn_core.tables import shown_csv

    table = judged_table([run(2, "ga", 40.0, in_scope=False), run(1, "unsc", 2.0)])
    lines = shown_csv(table, ["FA", "MIA_entropy", "rte"]).decode().splitlines()
    assert lines[0] == "run,FA,MIA-ent. → retrained,speed-up vs retrain (x)"
    assert lines[1].startswith("original,99.00,5.00,–")
    assert lines[3].startswith("⚠ #2 ga,40.00,") and lines[4].startswith("#1 unsc,2.00,")
    assert len(lines[0].split(",")) == 4  # not the store's raw columns


def test_a_retrain_run_is_the_reference_never_a_candidate():
    """A sweep's retrain run has the reference's numbers (Avg. Gap 0): it must not take every green mark."""
    table = judged_table([run(3, "retrain", 0.0, ta=75.0, avg_gap=0.0), run(2, "ga", 40.0), run(1, "unsc", 2.0)])
    assert "#3 retrain (reference)" in set(table["run"])
    assert table.loc[table["run"] == "#3 retrain (reference)", "scope"].item() == "reference"
    best = best_cells(table)
    assert all("#3 retrain (reference)" not in labels for labels in best.values())
    assert best["gap_FA"] == {"#1 unsc"} and best["avg_gap"] == {"#1 unsc"}
    assert best_cells(judged_table([run(2, "retrain", 0.0), run(1, "ga", 40.0)])) == {}  # one candidate left


def test_every_tied_run_is_best_and_a_full_tie_is_no_one():
    table = judged_table([run(3, "c", 5.0, ta=80.0), run(2, "b", 1.0, ta=80.0), run(1, "a", 1.0, ta=60.0)])
    best = best_cells(table)
    assert best["gap_FA"] == {"#2 b", "#1 a"} == best["FA"]  # tied: both, not the first row
    assert best["gap_TA"] == {"#3 c", "#2 b"}
    assert "gap_RA" not in best  # every run has RA 99: nothing stands out


def test_no_speed_award_to_a_run_that_did_not_forget():
    # The fastest run kept FA at 95 (the original's 99, the retrained model's 0): it forgot nothing.
    table = judged_table([run(2, "slow_good", 2.0, seconds=5.0), run(1, "fast_useless", 95.0, seconds=0.1)])
    assert list(table["forgot"]) == [False, True, True, False]  # original, reference, then the runs
    assert best_cells(table)["rte"] == {"#2 slow_good"}
    assert forgot(metrics(20.0), metrics(99.0), metrics(0.0))  # 80 % of the distance closed
    assert not forgot(metrics(30.0), metrics(99.0), metrics(0.0))
    assert not forgot(metrics(0.0, acc_f=60.0), metrics(99.0), metrics(0.0))  # Acc_f still far: not forgotten


def test_out_of_scope_runs_are_badged_never_best_and_speed_shown_only_when_comparable():
    runs = [run(3, "in_a", 1.0, seconds=2.0), run(2, "out", 0.0, seconds=0.1, in_scope=False,
                                                  in_scope_reason="built for class forgetting"),
            run(1, "in_b", 3.0, seconds=1.0, rte_comparable=False)]
    table = judged_table(runs).set_index("run")
    assert table.loc["#2 out", "scope"] == "⚠ out of scope" and table.loc["#3 in_a", "scope"] == "✓"
    assert np.isnan(table.loc["#1 in_b", "rte"])  # timed under other conditions: shown as "–"
    best = best_cells(table.reset_index())
    assert "#2 out" not in set().union(*best.values())
    assert best["gap_FA"] == {"#3 in_a"}
    assert "rte" not in best  # only one in-scope run has a comparable speed-up


def test_every_column_is_named_with_its_target_or_direction_and_explained():
    # Closeness to the retrained model is the rule: the header names that target, the tooltip the attack's sense.
    assert DISPLAY["MIA_svc"] == "MIA-SVC → retrained" and "NON-members" in HELP["MIA_svc"]
    assert DISPLAY["MIA_entropy"] == "MIA-ent. → retrained" and "MEMBERS" in HELP["MIA_entropy"]
    assert DISPLAY["avg_gap"] == "Avg. Gap ↓"  # lower is better there: a direction is right
    assert DISPLAY["rte"] == SPEED_COLUMN == "speed-up vs retrain (x)"
    table = judged_table([run(1, "a", 1.0)])
    for column in ("scope", "FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy", "avg_gap", "seconds",
                   "rte", "gap_FA", "gap_MIA_entropy"):
        assert column in table and HELP[column]


def test_over_unlearning_compares_with_retraining_and_lists_every_damaged_class():
    runs = [run(2, "ssd", 1.0, per_class=(4.0, 1.0, 27.0, 0.0)), run(1, "ok", 1.0, per_class=(97.0, 98.0, 96.5, 0.0))]
    shift, _, forgotten = per_class_shift(runs)
    lines, skipped = over_unlearning_summary(shift, forgotten, test_counts=[100, 100, 100, 100])
    assert len(lines) == 1 and lines[0].startswith("#2 ssd: 3 retained class(es)")
    assert all(f"{c} (−" in lines[0] for c in "abc")  # every damaged class, not only the worst
    # A drop of 2.5 points on 100 images (c of "ok") is above 2 points but only 2.5 images: not flagged.
    assert not any(line.startswith("#1 ok") for line in lines)
    # With a class of 10 test images, one image is 10 points: such classes are not judged, and say so.
    lines, skipped = over_unlearning_summary(shift, forgotten, test_counts=[10, 100, 100, 100])
    assert skipped == ["a"] and "a (−" not in lines[0]
    # The forgotten class d collapses in both models and is never "damage".
    assert all("d (−" not in line for line in lines)


def test_over_unlearning_ignores_drops_that_retraining_shows_too():
    retrained = (98.0, 70.0, 98.0, 0.0)  # retraining itself costs class b 28 points
    shift = pd.DataFrame([np.subtract(retrained, 98.0), np.subtract((98.0, 69.0, 98.0, 0.0), 98.0)],
                         index=["retrain (reference)", "#1 m"], columns=list("abcd"))
    assert over_unlearning_summary(shift, (3,), [100] * 4) == ([], [])


def test_delete_run_removes_the_row_and_its_checkpoint_but_not_a_running_run(tmp_path):
    from unlearn_core.store import RunNotFoundError, RunStore, RunStoreError, delete_run

    store = RunStore(tmp_path / "runs.sqlite")
    finished = store.start({"dataset": "digits", "method": "unsc"})
    checkpoint = store.checkpoint_path(finished)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"weights")
    outside = tmp_path / "keep.pt"
    outside.write_bytes(b"not the store's")
    store.finish(finished, {"unlearned": {}}, str(checkpoint))
    running = store.start({"dataset": "digits", "method": "natmu"})
    assert delete_run(finished, store)["id"] == finished
    assert not checkpoint.exists() and [r["id"] for r in store.list()] == [running]
    with pytest.raises(RunNotFoundError):
        delete_run(finished, store)
    with pytest.raises(RunStoreError, match="still running"):
        delete_run(running, store)
    store.fail(running, "boom")
    with store._write() as conn:  # a database that points elsewhere must not make us delete that file
        conn.execute("UPDATE runs SET checkpoint_path = ? WHERE id = ?", (str(outside), running))
    delete_run(running, store)
    assert outside.exists() and store.count() == 0


def test_an_out_of_scope_run_carries_the_badge_in_the_shown_table():
    from unlearn_core.tables import display_frame

    table = judged_table([run(2, "unsc", 1.0, in_scope=False), run(1, "natmu", 2.0)])
    frame = display_frame(table, ["scope", "FA", "rte"])
    assert list(frame.index) == ["original", "retrain (reference)", "⚠ #2 unsc", "#1 natmu"]
    assert frame.loc["⚠ #2 unsc", "scope"] == "⚠ out of scope"
    assert frame.loc["original", DISPLAY["rte"]] == "–" and frame.loc["#1 natmu", "FA"] == "2.00"
