"""Load test: N concurrent headless-Chromium sessions drive one `streamlit run app.py` through the default flow.

Each session opens the app with its own forget set (``?dataset=digits&model=mlp&forget=class:<i>``), waits for
the original model, opens Unlearn, runs the preselected method, waits for its own run to finish and opens Results,
which must list exactly its own run. Latencies of every step are measured per session; the server is one process,
as on the shared machine.

    .venv/bin/python benchmarks/load_test.py --sessions 1 2 4 8 --json out.json

The models come from the shared checkpoint cache (``UNLEARN_DATA_DIR``), the run store is a fresh one per level.
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

    def __init__(self, data_dir: Path, shared_checkpoints: Path):
        self.data_dir = data_dir
        shared_checkpoints.mkdir(parents=True, exist_ok=True)
        (data_dir / "checkpoints").symlink_to(shared_checkpoints, target_is_directory=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        self.process = None

    def __enter__(self) -> "Server":
        env = {**os.environ, "UNLEARN_DATA_DIR": str(self.data_dir), "UNLEARN_DEFAULT_DATASET": "digits",
               "UNLEARN_APP_AUTO_UMAP": "0"}
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
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

    def rss_mb(self) -> float | None:
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None


async def _settle(page, timeout_ms: int) -> None:
    await page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout_ms)


async def _goto(page, title: str, timeout_ms: int) -> None:
    await page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
    await page.wait_for_selector(f"h1:has-text('{title}')", timeout=timeout_ms)
    await _settle(page, timeout_ms)


async def _exceptions(page) -> list[str]:
    boxes = page.locator("[data-testid=stException]")
    return [await boxes.nth(i).inner_text() for i in range(await boxes.count())]


async def _session(browser, url: str, index: int, forget_class: int, timeout_s: float,
                   shots: Path | None) -> dict:
    """One user's default flow; returns step latencies (seconds) and what the pages showed."""
    timeout_ms = int(timeout_s * 1000)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    forget = f"class:{forget_class}"
    result = {"session": index, "forget": forget, "ok": False, "error": "", "steps": {}, "exceptions": []}
    clock = time.perf_counter()

    def mark(step):
        nonlocal clock
        now = time.perf_counter()
        result["steps"][step] = round(now - clock, 3)
        clock = now

    try:
        await page.goto(f"{url}/?dataset=digits&model=mlp&forget={forget}", wait_until="domcontentloaded")
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
        await page.get_by_text(f"/{forget}: done in", exact=False).first.wait_for(timeout=timeout_ms)
        mark("run_done")
        body = await page.inner_text("body")
        result["foreign_jobs_visible"] = sum(f"digits/class:{c}:" in body for c in range(10) if c != forget_class)
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
        await context.close()
    return result


async def _drive(url: str, sessions: int, timeout_s: float, shots: Path | None) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(*(_session(browser, url, i, (3 + i) % 10, timeout_s, shots)
                                          for i in range(sessions)))
        finally:
            await browser.close()


def _summary(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"median": round(statistics.median(ordered), 3), "p95": round(p95, 3), "max": round(ordered[-1], 3)}


def run_level(sessions: int, shared_checkpoints: Path | None = None, timeout_s: float = 600.0,
              work_dir: Path | None = None, shots: Path | None = None) -> dict:
    """Start a server, drive ``sessions`` browsers at once, check the run store; return the measurements."""
    from unlearn_core import paths
    from unlearn_core.store import RunStore

    shared_checkpoints = shared_checkpoints or paths.checkpoints_dir()
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        data_dir = Path(tmp)
        with Server(data_dir, shared_checkpoints) as server:
            started = time.perf_counter()
            results = asyncio.run(_drive(server.url, sessions, timeout_s, shots))
            wall = time.perf_counter() - started
            rss = server.rss_mb()
            log_tail = server.log_path.read_text()[-1500:]
        runs = RunStore(data_dir / "runs.sqlite").list()
    done = [r for r in runs if r["status"] == "done"]
    return {
        "sessions": sessions,
        "ok_sessions": sum(r["ok"] for r in results),
        "wall_seconds": round(wall, 2),
        "runs_done": len(done),
        "runs_not_done": [(r["id"], r["status"], r["error"]) for r in runs if r["status"] != "done"],
        "distinct_forget_sets_done": sorted({r["forget"] for r in done}),
        "server_rss_mb": None if rss is None else round(rss, 1),
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
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing (run `make browser`)", file=sys.stderr)
        return 2
    levels = []
    for sessions in args.sessions:
        shots = Path(args.shots) if args.shots else None
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
        level = run_level(sessions, timeout_s=args.timeout, shots=shots)
        levels.append(level)
        steps = "  ".join(f"{k} {v.get('median', '-')}/{v.get('p95', '-')}s" for k, v in level["steps"].items())
        print(f"{sessions:2d} sessions: {level['ok_sessions']}/{sessions} ok, {level['runs_done']} runs done, "
              f"wall {level['wall_seconds']}s, server RSS {level['server_rss_mb']} MB, load "
              f"{level['load_average'][0]:.1f}; median/p95 {steps}", flush=True)
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
