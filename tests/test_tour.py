"""The Tour's core (unlearn_core.tour): its setting, one real tour on digits, the screens' rows and verdicts;
and the presentation-mode flag read from a URL."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_core.tour import (TOUR_METHODS, forgetting_rows, hidden_or_gone, latest_tour, relearn_rows, run_tour,
                               tour_forget, tour_map_key, tour_status)


def test_tour_forget_keeps_one_whole_class_else_class_3():
    assert tour_forget("class:7", 10) == "class:7"
    assert tour_forget("class:3,5", 10) == "class:3"
    assert tour_forget("random:0.1", 10) == "class:3"
    assert tour_forget("class:12", 10) == "class:3"
    assert tour_forget("not a spec", 10) == "class:3"
    assert tour_forget("random:0.1", 3) == "class:0"


def test_tour_status_reads_the_cache_without_training(digits_class3):
    ready = tour_status("digits", "mlp", 0, "class:3")
    assert ready.ready and ready.trainings == 0 and ready.missing() == ""
    fresh = tour_status("digits", "mlp", 987_654, "class:3")  # a seed nothing was trained for
    assert not fresh.ready and fresh.trainings == 2
    assert fresh.missing() == "the original model and the retrained reference for class:3"


def _row(model, steps, capped=False, forgot=True, max_steps=200):
    return {"model": model, "method": model, "steps": steps, "capped": capped, "diverged": False,
            "max_steps": max_steps, "start_acc": 0.0, "forgot": forgot}


def test_hidden_or_gone_compares_with_the_retrained_models_steps():
    rows = [_row("original", 0), _row("#1 a", 1), _row("#2 b", 6), _row("#3 c", 12), _row("#4 d", None, capped=True),
            _row("#5 e", 0, forgot=False), _row("retrained", 10)]
    assert hidden_or_gone(rows) == {"#1 a": "hidden", "#2 b": "partly", "#3 c": "gone", "#4 d": "gone",
                                    "#5 e": "not forgotten"}
    diverged = [_row("original", 0), _row("#1 a", None), _row("retrained", 10)]
    assert hidden_or_gone(diverged) == {"#1 a": "unknown"}


def test_latest_tour_is_the_newest_complete_tag():
    def run(run_id, method, tag, status="done"):
        return {"id": run_id, "method": method, "tag": tag, "status": status, "report": {"method": method}}

    runs = [run(1, "unsc", "tour-1"), run(2, "natmu", "tour-1"), run(3, "ga", "tour-1"),
            run(4, "unsc", "tour-2"), run(5, "natmu", "tour-2"), run(6, "ga", "tour-2", status="failed"),
            run(7, "unsc", None), run(8, "ga", "other")]
    assert [r["id"] for r in latest_tour(runs)] == [1, 2, 3]
    assert latest_tour(runs[3:]) is None


@pytest.fixture(scope="module")
def tour(digits_class3, tmp_path_factory):
    from unlearn_core.embeddings import EmbeddingCache
    from unlearn_core.store import RunStore

    root = tmp_path_factory.mktemp("tour")
    store, cache = RunStore(root / "runs.sqlite"), EmbeddingCache(root / "embeddings")
    stages = []
    result = run_tour(digits_class3, store, progress=lambda event: stages.append(event.stage), cache=cache)
    return result, store, cache, stages


def test_run_tour_records_every_method_with_relearn_evidence_and_stores_the_map(tour, digits_class3):
    result, store, cache, stages = tour
    assert list(result.run_ids) == list(TOUR_METHODS)
    runs = latest_tour(store.list())
    assert [r["id"] for r in runs] == [result.run_ids[m] for m in TOUR_METHODS]
    assert all(r["tag"] == result.tag and r["report"]["evidence"]["relearn"] for r in runs)
    assert "map" in stages and "method" in stages
    coords = cache.get(result.map_key)
    assert result.map_key == tour_map_key(result.tag, result.run_ids)
    n = len(coords["idx"])
    assert {"before", "retrained", *TOUR_METHODS} <= set(coords)
    assert all(coords[k].shape == (n, 2) and np.isfinite(coords[k]).all() for k in ("before", "retrained",
                                                                                   *TOUR_METHODS))
    # Every forget sample of the split is in the map (digits' class 3 has fewer than half the points).
    assert set(digits_class3.split.forget_idx.tolist()) <= set(coords["idx"].tolist())
    assert coords["forget"].sum() == len(digits_class3.split.forget_idx)


def test_tour_rows_match_the_stored_reports(tour):
    _, store, _, _ = tour
    runs = latest_tour(store.list())
    rows = forgetting_rows(runs)
    assert [r["model"] for r in rows] == ["original", *(f"#{r['id']} {r['method']}" for r in runs), "retrained"]
    unsc = runs[0]["report"]
    assert rows[1]["FA"] == pytest.approx(unsc["unlearned"]["FA"])
    assert rows[0]["FA"] == pytest.approx(unsc["original"]["FA"])
    assert rows[-1]["FA"] == pytest.approx(unsc["retrained"]["FA"])
    relearn = relearn_rows(runs)
    assert relearn[1]["steps"] == unsc["evidence"]["relearn"]["unlearned"]["relearn_steps"]
    assert relearn[-1]["steps"] == unsc["evidence"]["relearn"]["retrained"]["relearn_steps"]
    assert set(hidden_or_gone(relearn)) == {row["model"] for row in relearn[1:-1]}


def test_present_flag_from_a_url():
    from unlearn_app.urlstate import present_from_query

    assert present_from_query("1") == (True, None)
    assert present_from_query("0") == (False, None)
    assert present_from_query(None) == (False, None)
    on, warning = present_from_query("<script>")
    assert not on and "present" in warning and "<script>" not in warning


def test_tour_figures_draw_every_model():
    from unlearn_core.figures.tour import forget_retain_bars, relearn_steps_bars

    rows = [{"model": "original", "method": "original", "FA": 99.0, "RA": 99.5},
            {"model": "#1 unsc", "method": "unsc", "FA": 0.0, "RA": 98.0},
            {"model": "retrained", "method": "retrain", "FA": 0.0, "RA": float("nan")}]
    fig = forget_retain_bars(rows)
    assert [t.name for t in fig.data] == ["original", "#1 unsc", "retrained"]
    assert list(fig.data[2].text) == ["0.0", "–"] and len(fig.layout.shapes) == 1  # no RA line for a NaN
    bars = relearn_steps_bars([_row("original", 0), _row("#1 unsc", None, capped=True, max_steps=50),
                               _row("retrained", 7)], {"#1 unsc": "gone"})
    assert list(bars.data[0].x) == [0.0, 50.0, 7.0]
    assert list(bars.data[0].text) == ["0", "> 50  (gone)", "7"]
