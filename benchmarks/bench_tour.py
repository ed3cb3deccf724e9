"""The Tour as a presenter waits for it, in headless Chromium: from the click on "Start the tour" to the last
of its four screens drawn.

Run: ``.venv/bin/python benchmarks/bench_tour.py [--dataset mnist5k] [--forget class:3] [--present]``.
The setting must be prepared (its original and the forget class's retrained reference in the checkpoint
cache: ``python -m unlearn_core prepare --dataset mnist5k``); the script refuses otherwise. Each run uses a
fresh data directory (an empty run store, so the page offers "Start the tour") that borrows the checkpoint
cache of ``UNLEARN_DATA_DIR`` (default ``.unlearn_data/bench``), and a fresh ``streamlit run``: what a
teacher gets who opens the app and starts the tour. Prints one JSON object:

- ``start_to_first_screen_s``: the click until screen 1's chart is drawn (the three runs with their relearn
  evidence, the map, the page's rerun);
- ``next_s``: each "Next" click until that screen's charts are drawn (screens 2, 3, 4);
- ``start_to_last_screen_s``: the click until screen 4 is drawn, each "Next" clicked as soon as its screen was;
- ``runs``: each method's own seconds as the run store recorded them;
- ``loadavg_before`` / ``loadavg_after``: ``/proc/loadavg``'s first three fields.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("UNLEARN_DATA_DIR", str(REPO / ".unlearn_data" / "bench"))

from benchmarks._browser import browser, charts_drawn, no_exception, server, settle  # noqa: E402

SCREENS = [("What was forgotten", 1), ("What else was lost", 1), ("Where the samples went", 3),
           ("Hidden or gone?", 1)]


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="")
    parser.add_argument("--forget", default="class:3")
    parser.add_argument("--present", action="store_true", help="in presentation mode (?present=1)")
    args = parser.parse_args()

    from unlearn_core.tour import TOUR_METHODS, tour_status

    status = tour_status(args.dataset, args.model or None, 0, args.forget)
    if not status.ready:
        raise SystemExit(f"not prepared: {status.missing()} is not cached under {os.environ['UNLEARN_DATA_DIR']}")
    cache = Path(os.environ["UNLEARN_DATA_DIR"]) / "checkpoints"
    fresh = Path(tempfile.mkdtemp(prefix="bench_tour_"))
    (fresh / "checkpoints").symlink_to(cache.resolve(), target_is_directory=True)
    os.environ["UNLEARN_DATA_DIR"] = str(fresh)
    out = {"dataset": status.dataset, "model": status.model, "forget": args.forget, "present": args.present,
           "loadavg_before": loadavg()}
    query = f"dataset={status.dataset}&model={status.model}&forget={args.forget}" + ("&present=1" if args.present
                                                                                      else "")
    env = {"UNLEARN_DEFAULT_DATASET": status.dataset, "UNLEARN_APP_AUTO_UMAP": "0"}
    with server(env) as (url, _, _log), browser(1280, 720) as page:
        page.goto(f"{url}/tour?{query}", wait_until="domcontentloaded")
        page.wait_for_selector("h1:has-text('Tour')", timeout=120_000)
        settle(page)
        start = page.get_by_role("button", name="Start the tour")
        start.wait_for(timeout=60_000)
        started = time.perf_counter()
        start.click()
        out["next_s"] = []
        for number, (heading, charts) in enumerate(SCREENS):
            clicked = time.perf_counter()
            if number:
                page.get_by_role("button", name="Next").click()
            page.get_by_role("heading", name=heading).wait_for(timeout=1_800_000)
            settle(page, 600_000)
            charts_drawn(page, charts, 600_000)
            now = time.perf_counter()
            no_exception(page, heading)
            if number == 0:
                out["start_to_first_screen_s"] = round(now - started, 2)
            else:
                out["next_s"].append(round(now - clicked, 2))
        out["start_to_last_screen_s"] = round(time.perf_counter() - started, 2)
    from unlearn_core.store import RunStore

    runs = RunStore(fresh / "runs.sqlite").list(status="done")
    out["runs"] = {r["method"]: round(float(r["report"]["seconds"]), 2) for r in runs if r["method"] in TOUR_METHODS}
    out["loadavg_after"] = loadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
