"""A small load test: two headless-Chromium sessions use one Streamlit server at the same time.

Each session forgets a different digits class and must end with exactly its own finished run on its Results
page; the run store must hold both runs. The full sweep (1 to 8 sessions, with latencies) is
``benchmarks/load_test.py``; its results are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from load_test import CHROMIUM, STEPS, run_level  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_two_concurrent_browser_sessions_each_get_their_own_run(tmp_path, digits_class3):
    if not Path(CHROMIUM).exists():
        if os.environ.get("UNLEARN_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing and UNLEARN_REQUIRE_BROWSER is set (run `make browser`)")
        pytest.skip(f"{CHROMIUM} is not installed (run `make browser`)")
    level = run_level(2, timeout_s=400, work_dir=tmp_path)
    failures = [(d["forget"], d["error"], d["exceptions"][:1]) for d in level["sessions_detail"] if not d["ok"]]
    assert level["ok_sessions"] == 2, (failures, level["server_log_tail"])
    assert level["runs_done"] == 2 and not level["runs_not_done"]
    # Sessions 0 and 1 forget classes 3 and 4: each Results page showed exactly its own run.
    assert level["distinct_forget_sets_done"] == ["class:3", "class:4"]
    for detail in level["sessions_detail"]:
        assert set(detail["steps"]) == set(STEPS)
        assert all(seconds >= 0 for seconds in detail["steps"].values())
