"""The take-away report: real digits runs in a fresh store, the HTML parsed, opened offline, and its recipe re-run."""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METRICS = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy", "TA_retain")


class _Tags(HTMLParser):
    """Every start tag with its attributes, section ids, figure divs and the text of ``pre.command`` blocks."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.sections: list[str] = []
        self.commands: dict[int, str] = {}
        self._command: int | None = None
        self._text: list[str] = []
        self.metric_labels: list[str] = []
        self._in_metrics = False
        self._row_cells = 0
        self._first_cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "pre" and "command" in (attrs.get("class") or "").split():
            self._command, self._text = int(attrs["data-run-id"]), []
        if tag == "table" and attrs.get("class") == "metrics":
            self._in_metrics = True
        if self._in_metrics and tag == "tr":
            self._row_cells = 0
        if self._in_metrics and tag == "td":
            self._row_cells += 1
            if self._row_cells == 1:
                self._first_cell = []

    def handle_endtag(self, tag):
        if tag == "pre" and self._command is not None:
            self.commands[self._command] = "".join(self._text)
            self._command = None
        if tag == "td" and self._first_cell is not None:
            self.metric_labels.append("".join(self._first_cell).strip())
            self._first_cell = None
        if tag == "table":
            self._in_metrics = False

    def handle_data(self, data):
        if self._command is not None:
            self._text.append(data)
        if self._first_cell is not None:
            self._first_cell.append(data)


def _borrowing_cache(data_dir: Path) -> Path:
    """A fresh data directory (fresh run store) that borrows the tests' keyed checkpoint cache.

    Training digits' original and retrained models from scratch took 5 minutes at a load of 20 on two cores;
    the cache is keyed by everything that determines a model, so sharing it is sound.
    """
    shared = Path(os.environ["UNLEARN_DATA_DIR"]) / "checkpoints"
    shared.mkdir(parents=True, exist_ok=True)
    (data_dir / "checkpoints").symlink_to(shared, target_is_directory=True)
    return data_dir


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Two UNSC seeds, one NatMU run with evidence, one retrain run, in a fresh store and data directory."""
    from unlearn_core.handout import build_handout, select_runs
    from unlearn_core.pipeline import prepare
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore

    data_dir = _borrowing_cache(tmp_path_factory.mktemp("handout_data"))
    previous = os.environ.get("UNLEARN_DATA_DIR")
    os.environ["UNLEARN_DATA_DIR"] = str(data_dir)
    try:
        store = RunStore(data_dir / "runs.sqlite")
        for seed in (0, 1):
            setup = prepare("digits", "mlp", "class:3", seed, device="cpu")
            run_and_record(setup, "unsc", {"epochs": 2}, store=store, tag="lesson")
        setup = prepare("digits", "mlp", "class:3", 0, device="cpu")
        run_and_record(setup, "natmu", {"epochs": 1}, store=store, tag="lesson", evidence="probe")
        run_and_record(setup, "retrain", None, store=store, tag="lesson")
        selection = select_runs(store, tag="lesson")
        text = build_handout(store, selection, device="cpu", max_points=600)
    finally:
        if previous is None:
            os.environ.pop("UNLEARN_DATA_DIR", None)
        else:
            os.environ["UNLEARN_DATA_DIR"] = previous
    path = data_dir / "report.html"
    path.write_text(text, encoding="utf-8")
    parsed = _Tags()
    parsed.feed(text)
    return {"text": text, "path": path, "parsed": parsed, "store": store, "selection": selection,
            "data_dir": data_dir}


def test_every_section_and_figure_is_in_the_page(report):
    from unlearn_core.handout import SECTIONS

    parsed, text = report["parsed"], report["text"]
    assert parsed.sections == list(SECTIONS)
    figures = [attrs for tag, attrs in parsed.tags if tag == "div" and "plotly-graph-div" in (attrs.get("class") or "")]
    # class shift 1 + maps (before, unsc, natmu, retrained) 4 + spectrum and ranks 2 + probe 1
    assert len(figures) == 8
    # Plotly is inlined once, with the first figure; the others reuse it.
    assert text.count("window.PlotlyConfig") == 1
    hybrids = text[text.index('<section id="hybrids">'):text.index('<section id="evidence">')]
    assert hybrids.count('src="data:image/png;base64,') >= 10 and "No NatMU run" not in hybrids
    assert "No UNSC run" not in text and "asked for evidence" not in text
    for name in ("unsc_run1_digits_class-3_embedding", "unsc_run1_digits_class-3_spectrum",
                 "natmu_run3_digits_class-3_probe", "digits_class-3_class-shift"):
        assert f'data-figure="{name}"' in text


def test_the_page_loads_nothing_from_the_network(report):
    for tag, attrs in report["parsed"].tags:
        for key in ("src", "href", "data", "poster", "action"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), (tag, key, value[:80])
    assert not re.search(r"<script[^>]+src\s*=\s*[\"']?https?:", report["text"], re.I)
    assert not re.search(r"<link[^>]+href\s*=\s*[\"']?https?:", report["text"], re.I)
    assert not re.search(r"@import|url\(\s*[\"']?https?:", report["text"].split("</style>")[0], re.I)


def test_metric_table_has_intervals_and_no_reference_among_candidates(report):
    from unlearn_core.handout import content

    runs = report["selection"].done
    rows = content.metric_rows(runs)
    labels = [row["label"] for row in rows]
    assert labels == ["original", "retrained (reference)", "unsc", "natmu"]  # the retrain run is not a candidate
    unsc = rows[2]
    assert unsc["n"] == 2 and unsc["seeds"] == [0, 1]
    values = [r["report"]["unlearned"]["TA"] for r in runs if r["method"] == "unsc"]
    assert unsc["stats"]["TA"]["mean"] == pytest.approx(sum(values) / 2)
    assert unsc["stats"]["TA"]["ci_high"] is not None and unsc["stats"]["TA"]["ci_high"] >= unsc["stats"]["TA"]["mean"]
    assert rows[3]["stats"]["TA"]["ci_high"] is None  # one seed: no interval
    assert report["parsed"].metric_labels[:4] == labels
    reference_ids = rows[1]["run_ids"]
    assert reference_ids == [r["id"] for r in runs if r["method"] == "retrain"]


def test_recipe_commands_parse_with_the_cli(report):
    from unlearn_core.cli import build_parser
    from unlearn_core.handout import sweep_command

    parser = build_parser()
    runs = {r["id"]: r for r in report["selection"].done}
    assert set(report["parsed"].commands) == set(runs)
    for run_id, command in report["parsed"].commands.items():
        args = parser.parse_args(shlex.split(command)[3:])
        run = runs[run_id]
        assert (args.dataset, args.model, args.forget, args.method, args.seed) == \
            (run["dataset"], run["model"], run["forget"], run["method"], run["seed"])
        assert dict(p.split("=", 1) for p in args.param or []) == {k: str(v) for k, v in run["params"].items()}
    natmu = next(c for i, c in report["parsed"].commands.items() if runs[i]["method"] == "natmu")
    assert "--evidence probe" in natmu
    spec = {"dataset": "digits", "model": "mlp", "forgets": ["class:3", "random:0.1"], "methods": ["ga", "unsc"],
            "grid": {"ga": {"lr": [0.001, 0.01]}}, "seeds": [0, 1], "retrains": 2}
    args = parser.parse_args(shlex.split(sweep_command("t1", spec))[3:])
    assert (args.forget, args.methods, args.grid, args.seeds, args.retrains, args.engine, args.tag) == \
        (["class:3", "random:0.1"], "ga,unsc", ["ga.lr=0.001,0.01"], "0,1", "2", "inline", "t1")


def test_recipe_names_hashes_versions_and_commit(report):
    from unlearn_core.data import load_dataset
    from unlearn_core.handout.recipe import dataset_sha256, weights_sha256

    text = report["text"]
    recipe = text[text.index('<section id="recipe">'):]
    assert dataset_sha256(load_dataset("digits")) in recipe
    for run in report["selection"].done:
        assert weights_sha256(run["checkpoint_path"]) in recipe
        assert run["code_version"] in recipe
    for package in ("torch", "numpy", "plotly", "scikit-learn"):
        assert f"<td>{package}</td>" in recipe
    digests = re.findall(r"<code>([0-9a-f]{64})</code>", recipe)
    assert len(digests) >= 1 + 3 * len(report["selection"].done)


def test_recipe_command_reproduces_the_metrics(report, tmp_path):
    """Run the printed command in a fresh data directory and run store: the same metrics.

    The original and retrained models come from the keyed checkpoint cache (their weights' SHA-256 is in the
    recipe); the method runs again from the command line alone.
    """
    from unlearn_core.store import RunStore

    runs = {r["id"]: r for r in report["selection"].done}
    run_id = next(i for i, r in runs.items() if r["method"] == "unsc" and r["seed"] == 0)
    command = shlex.split(report["parsed"].commands[run_id])
    assert command[:3] == ["python", "-m", "unlearn_core"]
    env = {**os.environ, "UNLEARN_DATA_DIR": str(_borrowing_cache(tmp_path)), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, *command[1:], "--no-progress"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    again = RunStore(tmp_path / "runs.sqlite").list()[0]["report"]
    before = runs[run_id]["report"]
    for which in ("original", "unlearned", "retrained"):
        for key in METRICS:
            assert again[which][key] == pytest.approx(before[which][key], abs=1e-9), (which, key)
    assert again["avg_gap"] == pytest.approx(before["avg_gap"], abs=1e-9)
    assert again["unlearned"]["per_class_test"] == pytest.approx(before["unlearned"]["per_class_test"], abs=1e-9)


def test_selection_errors_are_one_line(report):
    from unlearn_core.errors import UnlearnError
    from unlearn_core.handout import HandoutError, select_runs

    store = report["store"]
    for kwargs, text in (({}, "exactly one"), ({"tag": "lesson", "sweep": "x"}, "--tag and --sweep"),
                         ({"tag": "nope"}, "no run has the tag"), ({"sweep": "nope"}, "no sweep"),
                         ({"run_ids": " , "}, "at least one run id")):
        with pytest.raises(HandoutError, match=text):
            select_runs(store, **kwargs)
    with pytest.raises(UnlearnError, match="whole number"):
        select_runs(store, run_ids="1,x")
    with pytest.raises(UnlearnError, match="no run with id 999"):
        select_runs(store, run_ids="999")
    chosen = select_runs(store, run_ids="2, 1,2")
    assert [r["id"] for r in chosen.done] == [2, 1] and chosen.title == "runs 2,1"


@pytest.mark.browser
def test_report_opens_offline_in_chromium(report):
    """Chromium with every request but the file itself aborted: nothing is aborted and every figure draws."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from _streamlit import CHROMIUM, CHROMIUM_ARGS, require_browser

    require_browser()
    from playwright.sync_api import sync_playwright

    url = report["path"].resolve().as_uri()
    aborted, errors = [], []
    expected = len([1 for tag, attrs in report["parsed"].tags
                    if tag == "div" and "plotly-graph-div" in (attrs.get("class") or "")])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})

            def route(request_route):
                if request_route.request.url == url:
                    request_route.continue_()
                else:
                    aborted.append(request_route.request.url)
                    request_route.abort()

            page.route("**/*", route)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {expected}",
                                   timeout=60_000)
            drawn = page.evaluate("[...document.querySelectorAll('.plotly-graph-div')]"
                                  ".filter(d => d.querySelector('.main-svg') && d._fullLayout).length")
            images = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
            total_images = page.evaluate("document.images.length")
        finally:
            browser.close()
    assert aborted == []
    assert errors == []
    assert drawn == expected == 8
    assert images == total_images > 0


def test_a_sweep_selection_carries_its_references_and_its_sweep_command(report, monkeypatch):
    """The runs linked to a sweep (a reference among them) make a report whose recipe starts with the sweep."""
    from unlearn_core.cli import build_parser
    from unlearn_core.handout import build_handout, select_runs

    store = report["store"]
    runs = report["selection"].done
    unsc = next(r for r in runs if r["method"] == "unsc" and r["seed"] == 0)
    retrain = next(r for r in runs if r["method"] == "retrain")
    spec = {"dataset": "digits", "model": "mlp", "forgets": ["class:3"], "methods": ["unsc"],
            "grid": {"unsc": {"epochs": [2]}}, "seeds": [0], "retrains": 1}
    store.save_sweep("lesson-sweep", "grid", spec)
    store.link_sweep_run("lesson-sweep", "key-unsc", unsc["id"], "run")
    store.link_sweep_run("lesson-sweep", "key-ref", retrain["id"], "reference")
    selection = select_runs(store, sweep="lesson-sweep")
    assert [r["id"] for r in selection.done] == sorted([unsc["id"], retrain["id"]])
    assert selection.sweep["spec"]["methods"] == ["unsc"] and selection.title == "sweep lesson-sweep"
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(report["data_dir"]))
    text = build_handout(store, selection, device="cpu", max_points=300)
    parsed = _Tags()
    parsed.feed(text)
    assert parsed.metric_labels == ["original", "retrained (reference)", "unsc"]
    command = re.search(r'<pre class="sweep-command">(.*?)</pre>', text).group(1)
    args = build_parser().parse_args(shlex.split(html.unescape(command))[3:])
    assert (args.methods, args.grid, args.seeds, args.retrains, args.tag) == \
        ("unsc", ["unsc.epochs=2"], "0", "1", "lesson-sweep")
