"""Load test: N concurrent headless-Chromium sessions drive one `streamlit run app.py` through the default flow.

Each session opens the app with a forget set (``?dataset=digits&model=mlp&forget=class:<i>``,
:func:`forget_sets`), waits for the original model, opens Unlearn, runs the preselected method (UNSC), waits for its own run to finish
and opens Results, which must list exactly its own run. With ``--shared`` the server is a shared one
(``UNLEARN_SHARED=1``: a classroom; each browser context is a visitor that sees only its own runs) and the forget
sets cycle over ``--classes`` classes, so several visitors forget the same class and each must still see exactly
one run; without it each session has a forget set of its own (past the ten classes, pairs ``class:<i>,<j>``). Latencies of every step are measured per session; while a run waits, the job line's
queue position and promised wait are read (``wait_line``). The server is one process, as on the shared
machine, with ``--engine inline`` (its own worker thread) or ``--engine ray`` (a local Ray on loopback it
starts; its memory is counted with the server's, as the server's process tree). All sessions are contexts of
one Chromium.

    .venv/bin/python benchmarks/load_test.py --sessions 1 8 16 30 --engine inline ray --shared --warm --json out.json
    .venv/bin/python benchmarks/load_test.py --sessions 8 --dataset mnist5k --classes 2 --engine inline ray --shared

The models come from the shared checkpoint cache (``UNLEARN_DATA_DIR``); ``--warm`` first trains every forget
set's retrained reference into it (a teacher prepares the class's demo beforehand), so every level measures
the method runs and no level inherits references another one trained. The run store is a fresh one per level.
``tests/reliability/test_load.py`` runs :func:`run_level` with two sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
STEPS = ("first_page", "original_ready", "open_unlearn", "run_done", "open_results")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One Streamlit server on localhost with a fresh run store and the shared checkpoint cache."""

    def __init__(self, data_dir: Path, shared_checkpoints: Path, dataset: str = "digits", engine: str = "inline",
                 shared: bool = False):
        self.data_dir, self.dataset, self.engine, self.shared = data_dir, dataset, engine, shared
        shared_checkpoints.mkdir(parents=True, exist_ok=True)
        (data_dir / "checkpoints").symlink_to(shared_checkpoints, target_is_directory=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.process = None

    def __enter__(self) -> "Server":
        env = {**os.environ, "UNLEARN_DATA_DIR": str(self.data_dir), "UNLEARN_DEFAULT_DATASET": self.dataset,
               "UNLEARN_APP_AUTO_UMAP": "0", "UNLEARN_ENGINE": self.engine,
               "UNLEARN_SHARED": "1" if self.shared else "0"}
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "unlearn_app.serve", "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats",
             "false", "--server.fileWatcherType", "none"],  # as in production: edits must not rerun sessions
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"streamlit did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.3)

    def __exit__(self, *_exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()

    def rss_mb(self, tree: bool = False) -> float | None:
        """The server's resident memory (MiB); ``tree``: with every process below it (a local Ray's)."""
        from unlearn_core.raycluster import descendants

        pids = sorted(descendants([self.process.pid])) if tree else [self.process.pid]
        total, found = 0.0, False
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) / 1024
                            found = True
            except OSError:
                continue
        return total if found else None


def forget_sets(count: int, first: int = 3, classes: int | None = None) -> list[str]:
    """``count`` forget sets of 10-class data: with ``classes``, ``class:<first + i mod classes>`` (repeating);
    else distinct ones, the ten classes from ``first`` on, then pairs of classes."""
    if classes:
        return [f"class:{(first + i % classes) % 10}" for i in range(count)]
    singles = [f"class:{(first + i) % 10}" for i in range(10)]
    pairs = [f"class:{a},{b}" for a in range(10) for b in range(a + 1, 10)]
    return (singles + pairs)[:count]


async def _settle(page, timeout_ms: int) -> None:
    await page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)


async def _goto(page, title: str, timeout_ms: int) -> None:
    await page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
    await page.wait_for_selector(f"h1:has-text('{title}')", timeout=timeout_ms)
    await _settle(page, timeout_ms)


async def _exceptions(page) -> list[str]:
    boxes = page.locator("[data-testid=stException]")
    return [await boxes.nth(i).inner_text() for i in range(await boxes.count())]


async def _wait_for_run(page, forget: str, timeout_s: float, result: dict) -> None:
    """Wait for this session's run to be done, noting the first queue line the page showed meanwhile."""
    import re

    from playwright.async_api import TimeoutError as PlaywrightTimeout

    done = page.get_by_text(f"/{forget}: done in", exact=False).first
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await done.wait_for(timeout=1000)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
        if "wait_line" not in result:
            with contextlib.suppress(Exception):
                found = re.search(r"waiting for the worker \(([^\n]*)\)", await page.inner_text("body"))
                if found:
                    result["wait_line"] = found.group(1)
                    result["wait_line_at"] = round(time.perf_counter() - result["_clicked"], 2)


async def _session(browser, url: str, index: int, forget: str, timeout_s: float,
                   shots: Path | None, dataset: str = "digits") -> dict:
    """One user's default flow; returns step latencies (seconds) and what the pages showed."""
    from urllib.parse import quote

    timeout_ms = int(timeout_s * 1000)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    result = {"session": index, "forget": forget, "ok": False, "error": "", "steps": {}, "exceptions": []}
    clock = time.perf_counter()

    def mark(step):
        nonlocal clock
        now = time.perf_counter()
        result["steps"][step] = round(now - clock, 3)
        clock = now

    try:
        model = "&model=mlp" if dataset == "digits" else ""
        await page.goto(f"{url}/?dataset={dataset}{model}&forget={quote(forget)}", wait_until="domcontentloaded",
                        timeout=timeout_ms)  # Playwright's own 30 s was less than 30 first pages take here
        await page.wait_for_selector("h1:has-text('Setup')", timeout=timeout_ms)
        await _settle(page, timeout_ms)
        mark("first_page")
        train = page.get_by_role("button", name="Train the original model")
        if await train.count():
            await train.click()
        await page.get_by_text("is ready (cached on disk)").wait_for(timeout=timeout_ms)
        mark("original_ready")
        await _goto(page, "Unlearn", timeout_ms)
        body = await page.inner_text("body")
        if f"forget {forget}" not in body:
            raise AssertionError(f"Unlearn page does not show this session's forget set {forget}")
        mark("open_unlearn")
        await page.get_by_role("button", name="Run 1 method(s)").click()
        result["_clicked"] = time.perf_counter()
        await _wait_for_run(page, forget, timeout_s, result)
        mark("run_done")
        result["click_to_result"] = round(time.perf_counter() - result.pop("_clicked"), 3)
        body = await page.inner_text("body")
        result["foreign_jobs_visible"] = sum(f"{dataset}/{other}: " in body for other in forget_sets(45)
                                             if other != forget)
        await _goto(page, "Results", timeout_ms)
        await page.get_by_text(f"forget {forget}: 1 finished run(s)", exact=False).wait_for(timeout=timeout_ms)
        mark("open_results")
        result["exceptions"] = await _exceptions(page)
        result["ok"] = not result["exceptions"]
    except Exception as error:  # a timed-out or broken session is a data point, not a crash of the benchmark
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        result["exceptions"] = await _exceptions(page)
        result["stuck_at"] = next((s for s in STEPS if s not in result["steps"]), "")
        with contextlib.suppress(Exception):
            result["page_text"] = (await page.inner_text("body"))[-1500:]
            if shots is not None:
                await page.screenshot(path=str(shots / f"session{index}-{result['stuck_at']}.png"), full_page=True)
    finally:
        result.pop("_clicked", None)
        await context.close()
    return result


async def _drive(url: str, sessions: int, timeout_s: float, shots: Path | None,
                 dataset: str = "digits", classes: int | None = None) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(*(_session(browser, url, i, forget, timeout_s, shots, dataset)
                                          for i, forget in enumerate(forget_sets(sessions, classes=classes))))
        finally:
            await browser.close()


def _summary(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median": round(statistics.median(ordered), 3), "p95": round(p95, 3), "max": round(ordered[-1], 3)}


def warm(dataset: str, sessions: int, classes: int | None = None) -> None:
    """Train (or find cached) the original and every forget set's retrained reference the level will use."""
    from unlearn_core.pipeline import prepare

    for forget in sorted(set(forget_sets(sessions, classes=classes))):
        prepare(dataset, "mlp" if dataset == "digits" else None, forget, 0)


def run_level(sessions: int, shared_checkpoints: Path | None = None, timeout_s: float = 600.0,
              work_dir: Path | None = None, shots: Path | None = None, dataset: str = "digits",
              engine: str = "inline", shared: bool = False, classes: int | None = None) -> dict:
    """Start a server, drive ``sessions`` browsers at once, check the run store; return the measurements."""
    from unlearn_core import paths
    from unlearn_core.store import RunStore

    shared_checkpoints = shared_checkpoints or paths.checkpoints_dir()
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        data_dir = Path(tmp)
        with Server(data_dir, shared_checkpoints, dataset, engine, shared) as server:
            load_before = os.getloadavg()
            started = time.perf_counter()
            results = asyncio.run(_drive(server.url, sessions, timeout_s, shots, dataset, classes))
            wall = time.perf_counter() - started
            rss, rss_tree = server.rss_mb(), server.rss_mb(tree=True)
            log_tail = server.log_path.read_text()[-1500:]
        runs = RunStore(data_dir / "runs.sqlite").list()
    done = [r for r in runs if r["status"] == "done"]
    clicks = [r["click_to_result"] for r in results if "click_to_result" in r]
    return {
        "sessions": sessions,
        "dataset": dataset,
        "engine": engine,
        "shared": shared,
        "click_to_result": _summary(clicks),
        "within_60s": sum(seconds <= 60 for seconds in clicks),
        "saw_wait_line": sum("wait_line" in r for r in results),
        "own_runs_only": all(r["ok"] and r.get("foreign_jobs_visible") == 0 for r in results)
        and sorted(r["forget"] for r in done) == sorted(forget_sets(sessions, classes=classes)),
        "ok_sessions": sum(r["ok"] for r in results),
        "wall_seconds": round(wall, 2),
        "runs_done": len(done),
        "runs_not_done": [(r["id"], r["status"], r["error"]) for r in runs if r["status"] != "done"],
        "distinct_forget_sets_done": sorted({r["forget"] for r in done}),
        "server_rss_mb": None if rss is None else round(rss, 1),
        "server_tree_rss_mb": None if rss_tree is None else round(rss_tree, 1),
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "steps": {step: _summary([r["steps"][step] for r in results if step in r["steps"]]) for step in STEPS},
        "sessions_detail": results,
        "server_log_tail": log_tail if any(not r["ok"] for r in results) else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each step may take")
    parser.add_argument("--json", default=None, help="write all measurements here")
    parser.add_argument("--shots", default=None, help="save a screenshot of every session that fails here")
    parser.add_argument("--dataset", default="digits", help="digits (mlp) or mnist5k (its default model)")
    parser.add_argument("--engine", nargs="+", default=["inline"], choices=["inline", "ray"])
    parser.add_argument("--warm", action="store_true", help="train every level's references before measuring")
    parser.add_argument("--shared", action="store_true", help="a shared server (UNLEARN_SHARED=1), as a classroom")
    parser.add_argument("--classes", type=int, default=None,
                        help="with --shared: forget sets cycle over this many classes (default: distinct sets)")
    args = parser.parse_args()
    if args.classes and not args.shared:
        parser.error("--classes repeats forget sets: only a --shared server keeps each visitor's runs apart")
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing (run `make browser`)", file=sys.stderr)
        return 2
    levels = []
    if args.warm:
        warm(args.dataset, max(args.sessions), args.classes)
    for sessions, engine in [(n, e) for n in args.sessions for e in args.engine]:
        shots = Path(args.shots) if args.shots else None
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
        level = run_level(sessions, timeout_s=args.timeout, shots=shots, dataset=args.dataset, engine=engine,
                          shared=args.shared, classes=args.classes)
        levels.append(level)
        if args.json:  # after every level: a long benchmark killed late keeps what it measured
            Path(args.json).write_text(json.dumps({"machine": f"{os.cpu_count()}-core CPU, no GPU",
                                                   "levels": levels}, indent=2))
        steps = "  ".join(f"{k} {v.get('median', '-')}/{v.get('p95', '-')}s" for k, v in level["steps"].items())
        click = level["click_to_result"]
        print(f"{sessions:2d} sessions {args.dataset} {engine}: {level['ok_sessions']}/{sessions} ok, "
              f"{level['runs_done']} runs done, own runs only {level['own_runs_only']}, click->result "
              f"p50 {click.get('median')} p95 {click.get('p95')} s ({level['within_60s']} within 60 s, "
              f"{level['saw_wait_line']} saw a wait line), wall {level['wall_seconds']}s, server RSS "
              f"{level['server_rss_mb']} MB (tree {level['server_tree_rss_mb']} MB), load "
              f"{level['load_average_before'][0]:.1f} -> {level['load_average'][0]:.1f}; median/p95 {steps}",
              flush=True)
        for detail in level["sessions_detail"]:
            if not detail["ok"]:
                print(f"    session {detail['session']} ({detail['forget']}) stuck at {detail.get('stuck_at')}: "
                      f"{detail['error']} {detail['exceptions'][:1]}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": f"{os.cpu_count()}-core CPU, no GPU", "levels": levels},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
