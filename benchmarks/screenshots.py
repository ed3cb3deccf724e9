"""Re-take the screenshot of every dashboard page into docs/screenshots (the README shows them).

Run: ``.venv/bin/python benchmarks/screenshots.py [--dataset mnist5k] [--out docs/screenshots]``. Uses
``UNLEARN_DATA_DIR`` if set, else ``.unlearn_data/bench`` (the same prepared data as
``bench_app_browser.py``: the original and retrained models, a UNSC run with its evidence, a NatMU run and a
100-cell digits sweep; all real runs, made once). Each page is shot at 1280 x 720 (a projector; ``--size``)
once its script has finished and its charts are drawn; Embeddings waits for the UMAP map. Then the same in
presentation mode (``?present=1``: ``present_*.png``), and the Tour's four screens (``tour_*.png``; the tour
is run once if the store holds none for the setting). Each PNG is reduced to a 256-colour palette (``--colours``),
which keeps a chart page near 100 KB.
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

# page title -> its url path, for the presentation-mode pass (a new session per page, opened by its link)
URL_PATHS = {"Setup": "", "Tour": "tour", "Forget set": "forget", "Unlearn": "unlearn", "Results": "results",
             "Embeddings": "embeddings", "Null space": "nullspace", "NatMU hybrids": "hybrids", "Sweeps": "sweeps"}
TOUR_SCREENS = [("tour_1_forgotten", "What was forgotten", 1), ("tour_2_lost", "What else was lost", 1),
                ("tour_3_map", "Where the samples went", 3), ("tour_4_relearn", "Hidden or gone?", 1)]

# file name -> (sidebar title, charts to wait for, text to wait for)
SHOTS = [("1_setup", "Setup", 0, "Examples per class"), ("0_tour", "Tour", 0, "Setting:"),
         ("2_forget", "Forget set", 1, None),
         ("3_unlearn", "Unlearn", 0, "Methods"), ("4_results", "Results", 9, "Evidence of forgetting"),
         ("5_embeddings", "Embeddings", 3, "UMAP map of"), ("6_nullspace", "Null space", 3, None),
         ("7_hybrids", "NatMU hybrids", 0, "Masks at delta"), ("8_sweeps", "Sweeps", 2, None)]


def shrink(path: Path, colours: int) -> None:
    """Reduce a PNG to a ``colours``-colour palette in place (charts and text keep their look; ~3x smaller)."""
    if colours <= 0:
        return
    from PIL import Image

    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)


def shoot(page, path: Path, colours: int) -> None:
    page.wait_for_timeout(800)  # plotly's transitions and image decoding end after the script does
    page.screenshot(path=str(path), full_page=True)
    shrink(path, colours)
    print(f"{path} ({path.stat().st_size // 1024} KB)")


def open_page(page, url: str, title: str, query: str, charts: int, text: str | None) -> None:
    page.goto(f"{url}/{URL_PATHS[title]}?{query}", wait_until="domcontentloaded")
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=600_000)
    settle(page, 600_000)
    if charts:
        charts_drawn(page, charts, 600_000)
    if text:
        page.get_by_text(text).first.wait_for(timeout=600_000)
    settle(page, 600_000)
    no_exception(page, title)


def tour_screens(page, out: Path, colours: int) -> None:
    """The Tour in presentation mode: started if the store has no tour for the setting, then its four screens."""
    if not page.locator(".st-key-keep_tour_nav").count():  # no finished tour for this setting yet
        page.get_by_role("button", name="Start the tour").click()
    for number, (name, heading, charts) in enumerate(TOUR_SCREENS):
        if number:
            page.get_by_role("button", name="Next").click()
        page.get_by_role("heading", name=heading).wait_for(timeout=900_000)
        settle(page, 600_000)
        charts_drawn(page, charts, 600_000)
        no_exception(page, f"Tour: {heading}")
        shoot(page, out / f"{name}.png", colours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--sweep-cells", type=int, default=100)
    parser.add_argument("--size", default="1280x720", help="window WIDTHxHEIGHT")
    parser.add_argument("--colours", type=int, default=256, help="palette size of the saved PNGs (0: keep RGB)")
    parser.add_argument("--only", default="", help="comma-separated passes: pages, present, tour (default: all)")
    parser.add_argument("--titles", default="", help="comma-separated page titles to shoot (default: every page)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    passes = set(args.only.split(",")) if args.only else {"pages", "present", "tour"}
    titles = set(args.titles.split(",")) if args.titles else {title for _, title, _, _ in SHOTS}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prepare_data(args.dataset, args.sweep_cells)
    query = f"dataset={args.dataset}&forget=class:3"
    env = {"UNLEARN_DEFAULT_DATASET": args.dataset, "UNLEARN_APP_AUTO_UMAP": "1"}
    with server(env) as (url, _, _log), browser(width, height) as page:
        page.goto(url, wait_until="domcontentloaded")
        page.wait_for_selector("h1:has-text('Setup')", timeout=120_000)
        settle(page)
        for name, title, charts, text in SHOTS if "pages" in passes else []:
            if title not in titles:
                continue
            if title == "Results":
                # The run in detail defaults to the newest run; the one with evidence is UNSC's.
                goto(page, title, charts=6, timeout_ms=600_000)
                box = page.locator("[data-testid=stSelectbox]", has_text="Run").first
                box.scroll_into_view_if_needed()
                box.click()
                page.keyboard.type("unsc · evidence")  # the list is virtual: type to filter, Enter picks
                page.keyboard.press("Enter")
                settle(page)
                page.get_by_text(text).first.wait_for(timeout=600_000)
                charts_drawn(page, charts)
            elif title != "Setup":
                goto(page, title, charts=charts, text=text, timeout_ms=600_000)
            else:
                page.get_by_text(text).first.wait_for(timeout=120_000)
            settle(page)
            no_exception(page, title)
            page.locator("h1").first.scroll_into_view_if_needed()  # Results scrolled to its run picker
            shoot(page, out / f"{name}.png", args.colours)
            if title == "Results":
                page.get_by_text("Evidence of forgetting").first.scroll_into_view_if_needed()
                shoot(page, out / "4b_evidence.png", args.colours)
        if "tour" in passes and "Tour" in titles:
            open_page(page, url, "Tour", query + "&present=1", 0, "Setting:")
            tour_screens(page, out, args.colours)
        for name, title, charts, text in SHOTS if "present" in passes else []:
            if title == "Tour" or title not in titles:
                continue  # its screens are the tour_*.png above
            # Only text that is not a control's label: presentation mode hides the controls.
            open_page(page, url, title, query + "&present=1", min(charts, 6),
                      text if title not in ("Results", "Unlearn") else None)
            shoot(page, out / f"present_{name}.png", args.colours)


if __name__ == "__main__":
    main()
