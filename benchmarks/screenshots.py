"""Re-take the screenshot of every dashboard page into docs/screenshots (the README's table shows them).

Run: ``.venv/bin/python benchmarks/screenshots.py [--dataset mnist5k] [--out docs/screenshots]``. Uses
``UNLEARN_DATA_DIR`` if set, else ``.unlearn_data/bench`` (the same prepared data as
``bench_app_browser.py``: the original and retrained models, a UNSC run with its evidence, a NatMU run and a
100-cell digits sweep; all real runs, made once). Each page is shot full-page at 1500 x 1100 once its script
has finished and its charts are drawn; Embeddings waits for the UMAP map.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("UNLEARN_DATA_DIR", str(REPO / ".unlearn_data" / "bench"))

from benchmarks._browser import browser, charts_drawn, goto, no_exception, prepare_data, server, settle  # noqa: E402

# file name -> (sidebar title, charts to wait for, text to wait for)
SHOTS = [("1_setup", "Setup", 0, "Examples per class"), ("2_forget", "Forget set", 1, None),
         ("3_unlearn", "Unlearn", 0, "Methods"), ("4_results", "Results", 9, "Evidence of forgetting"),
         ("5_embeddings", "Embeddings", 3, "UMAP map of"), ("6_nullspace", "Null space", 3, None),
         ("7_hybrids", "NatMU hybrids", 0, "Masks at delta"), ("8_sweeps", "Sweeps", 2, None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--sweep-cells", type=int, default=100)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prepare_data(args.dataset, args.sweep_cells)
    env = {"UNLEARN_DEFAULT_DATASET": args.dataset, "UNLEARN_APP_AUTO_UMAP": "1"}
    with server(env) as (url, _, _log), browser() as page:
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("h1:has-text('Setup')", timeout=120_000)
        settle(page)
        for name, title, charts, text in SHOTS:
            if title == "Results":
                # The run in detail defaults to the newest run; the one with evidence is UNSC's.
                goto(page, title, charts=6, timeout_ms=600_000)
                page.locator("[data-testid=stSelectbox]", has_text="Run").first.click()
                page.get_by_role("option", name="unsc · evidence").first.click()
                settle(page)
                page.get_by_text(text).first.wait_for(timeout=600_000)
                charts_drawn(page, charts)
            elif title != "Setup":
                goto(page, title, charts=charts, text=text, timeout_ms=600_000)
            else:
                page.get_by_text(text).first.wait_for(timeout=120_000)
            settle(page)
            page.wait_for_timeout(800)  # plotly's transitions and image decoding end after the script does
            no_exception(page, title)
            # Streamlit scrolls inside its main block, so a "full page" shot is the viewport: the Sweeps page
            # gets a taller one (phase map and Pareto scatter), Results a second shot at the run's evidence.
            if title == "Sweeps":
                page.set_viewport_size({"width": 1500, "height": 2300})
                page.wait_for_timeout(1500)
            page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            print(f"{out / name}.png")
            if title == "Results":
                page.get_by_text("Evidence of forgetting").first.scroll_into_view_if_needed()
                page.wait_for_timeout(800)
                page.screenshot(path=str(out / "4b_evidence.png"), full_page=True)
                print(f"{out / '4b_evidence'}.png")


if __name__ == "__main__":
    main()
