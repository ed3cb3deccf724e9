"""Dashboard speed: first page interactive, the shared before/after map, and the eps slider.

Run: ``.venv/bin/python benchmarks/bench_app.py [--skip-browser]``. Uses
``UNLEARN_DATA_DIR`` if set, else ``.unlearn_data/bench`` in the repository.
Prints one JSON object; docs/APP.md quotes a run of it.

1. ``first_page``: from starting ``streamlit run app.py`` (the command
   ``make run`` runs) until headless Chromium shows the Setup page with its
   script finished, i.e. interactive. Needs /usr/bin/chromium.
2. ``embedding``: the aligned map of 2,000 "before" and 2,000 "after" points
   (mnist5k, small_cnn, UNSC on class 3), UMAP fitted on the stacked 4,000
   and the retrained model's 2,000 placed by nearest neighbours. Measured in a
   fresh process (cold: import, numba compile, fit), after the background
   warm-up the app starts, and on revisit (memory and disk cache).
3. ``eps_slider``: one move of the Null space page's eps slider, as the
   server's script rerun in AppTest (re-threshold, figures, serialisation).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("UNLEARN_DATA_DIR", str(REPO / ".unlearn_data" / "bench"))

POINTS = 2000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_first_page() -> dict:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    log = open(Path(os.environ["UNLEARN_DATA_DIR"]) / "bench_server.log", "w")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "unlearn_app.serve",
                                "--server.headless", "true", "--server.port", str(port),
                                "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"], cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        import urllib.request

        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        server_up = time.perf_counter() - started
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                 args=["--headless", "--no-sandbox", "--disable-gpu",
                                                       "--disable-background-networking"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}", wait_until="domcontentloaded")
            page.wait_for_selector("h1:has-text('Setup')", timeout=60_000)
            title_shown = time.perf_counter() - started
            page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
            page.get_by_text("Examples per class").wait_for(timeout=60_000)
            interactive = time.perf_counter() - started
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
    return {"server_health_s": round(server_up, 2), "setup_title_s": round(title_shown, 2),
            "setup_interactive_s": round(interactive, 2)}


def _features() -> dict:
    """Features of the original, a UNSC-unlearned and the retrained model on 2,000 training points."""
    import torch

    from unlearn_core.embeddings import features_of, sample_points
    from unlearn_core.pipeline import prepare, run_method

    setup = prepare("mnist5k", "small_cnn", "class:3", 0, "cpu")
    run = run_method(setup, "unsc", {})
    idx = sample_points(setup.bundle.train_y.numpy(), POINTS, seed=0, include=setup.split.forget_idx)
    images = setup.bundle.train_x[torch.as_tensor(idx)]
    return {"before": features_of(setup.original.model, images), "after": features_of(run.model, images),
            "retrained": features_of(setup.retrained.model, images)}


_CHILD = r"""
import json, sys, time
import numpy as np
started = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from unlearn_core.embeddings import EmbeddingCache, joint_embedding
from unlearn_core.umapfit import warm_umap
data = np.load(sys.argv[2])
features = {k: data[k] for k in ("before", "after", "retrained")}
out = {}
if sys.argv[3] == "warm":
    out["warm_up_s"] = warm_umap()
    started = time.perf_counter()
cache = EmbeddingCache(sys.argv[4])
coords = cache.get_or_compute("bench-" + sys.argv[3], lambda: joint_embedding(features, "umap", seed=0,
                                                                                fit_on=["before", "after"]))
out["first_map_s"] = time.perf_counter() - started
t = time.perf_counter(); cache.get("bench-" + sys.argv[3]); out["revisit_memory_s"] = time.perf_counter() - t
t = time.perf_counter(); EmbeddingCache(sys.argv[4]).get("bench-" + sys.argv[3])
out["revisit_disk_s"] = time.perf_counter() - t
t = time.perf_counter(); joint_embedding(features, "pca", fit_on=["before", "after"]); out["pca_s"] = time.perf_counter() - t
out["points"] = {k: int(len(v)) for k, v in coords.items()}
print(json.dumps(out))
"""


def bench_embedding(work: Path) -> dict:
    import numpy as np

    features = _features()
    np.savez(work / "features.npz", **features)
    results = {}
    for mode in ("cold", "warm"):
        cache_dir = work / f"cache-{mode}"
        for old in cache_dir.glob("*.npz") if cache_dir.exists() else []:
            old.unlink()
        started = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), str(work / "features.npz"), mode,
                                str(cache_dir)], capture_output=True, text=True, timeout=900)
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-2000:])
        row = json.loads(child.stdout.strip().splitlines()[-1])
        row["process_total_s"] = time.perf_counter() - started
        results[mode] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
    return results


def bench_eps_slider() -> dict:
    from streamlit.testing.v1 import AppTest

    os.environ["UNLEARN_DEFAULT_DATASET"] = "mnist5k"
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600).run()
    started = time.perf_counter()
    at.switch_page("app_pages/nullspace.py").run()
    first = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(at.exception)
    timings = []
    for eps in (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 0.9995, 0.99, 0.95):
        started = time.perf_counter()
        at.slider(key="w_eps").set_value(eps).run()
        timings.append(time.perf_counter() - started)
    ranks = {m.label: m.value for m in at.metric}
    return {"page_first_visit_s": round(first, 2), "slider_rerun_ms": [round(t * 1000) for t in timings],
            "slider_rerun_median_ms": round(sorted(timings)[len(timings) // 2] * 1000),
            "slider_rerun_max_ms": round(max(timings) * 1000), "ranks_at_eps_0.95": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-browser", action="store_true")
    args = parser.parse_args()
    work = Path(os.environ["UNLEARN_DATA_DIR"]) / "bench_app"
    work.mkdir(parents=True, exist_ok=True)
    out = {"machine": f"{os.cpu_count()}-core CPU, no GPU", "data_dir": os.environ["UNLEARN_DATA_DIR"]}
    try:
        os.environ["UNLEARN_APP_AUTO_UMAP"] = "0"
        from unlearn_core.pipeline import prepare

        started = time.perf_counter()
        prepare("mnist5k", "small_cnn", "class:3", 0, "cpu")  # trains once into the cache, so page loads are loads
        out["prepare_mnist5k_s"] = round(time.perf_counter() - started, 2)
        if not args.skip_browser and Path("/usr/bin/chromium").exists():
            out["first_page"] = bench_first_page()
        out["embedding"] = bench_embedding(work)
        out["eps_slider"] = bench_eps_slider()
    finally:
        out["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]  # the machine is shared: say how busy
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
