"""AppTest drives every dashboard page on digits + mlp: select, run, and check what the pages show."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from _apptest import ensure_original, run_until, texts  # tests/app

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
TIMEOUT = 180


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at








def queue_runs(at: AppTest, methods: list[str], overrides: dict | None = None) -> AppTest:
    at.switch_page("app_pages/unlearn.py").run()
    at.multiselect(key="w_methods").set_value(methods).run()
    for key, value in (overrides or {}).items():
        at.text_input(key=key).input(str(value))
    next(b for b in at.button if b.label.startswith("Run ")).click().run()
    assert not at.exception, at.exception
    return at


def finished_runs(tmp_path) -> list[dict]:
    from unlearn_core.store import RunStore

    return RunStore(tmp_path / "runs.sqlite").list()


def test_setup_trains_in_the_worker_and_reports_accuracy(app_env):
    (app_env / "checkpoints").unlink()  # an empty cache forces real training through the background worker
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert texts(at.title) == ["Setup"]
    assert any("No cached original model" in i for i in texts(at.info))
    at = ensure_original(at)
    accuracy = next(m for m in at.metric if m.label == "Test accuracy").value
    assert float(accuracy.rstrip(" %")) > 85.0
    parameters = next(m for m in at.metric if m.label == "Parameters").value
    assert int(parameters.replace(",", "")) == 64 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def test_setup_rejects_a_checkpoint_that_does_not_fit(app_env):
    from unlearn_core.data import load_dataset
    from unlearn_core.models import build_for_dataset

    at = ensure_original(start())
    wrong = build_for_dataset("small_cnn", load_dataset("digits"), seed=0)
    buffer = io.BytesIO()
    torch.save(wrong.state_dict(), buffer)
    at.file_uploader(key="w_upload").set_value(("wrong.pt", buffer.getvalue(), "application/octet-stream")).run()
    assert not at.exception
    assert any("does not fit the model" in e for e in texts(at.error))
    at.file_uploader(key="w_upload").set_value(("junk.pt", b"not a checkpoint at all", "application/octet-stream"))
    at.run()
    assert any("not a readable PyTorch checkpoint" in e for e in texts(at.error))

    right = build_for_dataset("mlp", load_dataset("digits"), seed=0)
    buffer = io.BytesIO()
    torch.save(right.state_dict(), buffer)
    at.file_uploader(key="w_upload").set_value(("right.pt", buffer.getvalue(), "application/octet-stream")).run()
    assert any("fits mlp" in s for s in texts(at.success))


def test_forget_page_validates_and_previews(app_env):
    at = ensure_original(start())
    at.switch_page("app_pages/forget.py").run()
    assert any("`class:3`" in s and "training samples to forget" in s for s in texts(at.success))

    at.multiselect(key="w_forget_classes").set_value([]).run()
    assert any("choose at least one class" in e for e in texts(at.error))
    at.multiselect(key="w_forget_classes").set_value([str(c) for c in range(10)]).run()
    assert any("leaves nothing to keep" in e for e in texts(at.error))
    assert at.session_state["forget"] == "class:3"  # a bad choice never replaces the last good one

    at.multiselect(key="w_forget_classes").set_value(["1", "7"]).run()
    assert at.session_state["forget"] == "class:1,7"
    at.radio(key="w_forget_mode").set_value("random").run()
    at.slider(key="w_forget_fraction").set_value(0.2).run()
    assert at.session_state["forget"] == "random:0.2"
    success = texts(at.success)[0]
    forgotten = int(success.split(":")[-1].split("training")[0].strip().split()[-1].replace(",", ""))
    assert 0.18 * 1437 < forgotten < 0.22 * 1437

    at.radio(key="w_forget_mode").set_value("indices").run()
    assert not at.error and any("Pick the samples to forget" in i for i in texts(at.info))  # guidance (issue 14)
    assert at.session_state["forget"] == "random:0.2"  # kept, and the page says so
    at.text_input(key="w_forget_typed").set_value("4, 8, 15").run()
    assert at.session_state["forget"] == "indices:4,8,15"
    assert len(at.get("plotly_chart")) >= 1  # the selectable map of the original's features


def test_runs_are_recorded_and_results_compare_them(app_env):
    at = ensure_original(start())
    at = queue_runs(at, ["finetune", "unsc"], {"p_finetune_epochs": 2})
    at = run_until(at, lambda a: sum("done in" in s for s in texts(a.success)) == 2)
    runs = finished_runs(app_env)
    assert sorted(r["method"] for r in runs) == ["finetune", "unsc"]
    assert all(r["status"] == "done" for r in runs)
    assert next(r for r in runs if r["method"] == "finetune")["params"]["epochs"] == 2

    at.switch_page("app_pages/results.py").run()
    assert not at.exception
    assert any("2 finished run(s)" in m for m in texts(at.markdown))
    table, gaps = at.dataframe[0].value, at.dataframe[1].value  # the metrics, and the gaps in their own tab
    assert list(table.index[:2]) == ["original", "retrain (reference)"]
    assert {"#1 finetune", "#2 unsc"} <= set(table.index) or {"#2 finetune", "#1 unsc"} <= set(table.index)
    unsc = [i for i in table.index if i.endswith("unsc")][0]
    # UNSC on a forgotten class: forget accuracy collapses and the gap to retrain's FA (0) stays small.
    assert float(table.loc[unsc, "FA"]) < 20 and float(gaps.loc[unsc, "|Δ FA|"]) < 20
    # heatmap, bars, two confusion differences and three entropy histograms
    assert len(at.get("plotly_chart")) == 7
    # the table (CSV), the run's checkpoint and the take-away report (HTML)
    assert [b.proto.label for b in at.get("download_button")][::2] == ["Download the table (CSV)",
                                                                        "Download report (HTML)"]

    # A fresh session (a browser reload or an app restart) finds the same runs in the store.
    st.cache_resource.clear()
    st.cache_data.clear()
    again = start("results")
    assert any("2 finished run(s)" in m for m in texts(again.markdown))


def test_a_running_job_can_be_cancelled(app_env):
    at = ensure_original(start())
    at = queue_runs(at, ["finetune"], {"p_finetune_epochs": 200})
    run_until(at, lambda a: any(b.label == "Cancel" for b in a.button), timeout=60)
    next(b for b in at.button if b.label == "Cancel").click().run()
    run_until(at, lambda a: any("cancelled" in w for w in texts(a.warning)), timeout=60)
    runs = finished_runs(app_env)
    assert [r["status"] for r in runs] == ["cancelled"]


def test_embeddings_nullspace_and_hybrid_pages(app_env):
    at = ensure_original(start())
    at.switch_page("app_pages/embeddings.py").run()
    assert any("No finished run" in i for i in texts(at.info))

    at = queue_runs(at, ["unsc"])
    at = run_until(at, lambda a: any("done in" in s for s in texts(a.success)))
    at.switch_page("app_pages/embeddings.py").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 3  # before | after | retrained in one shared map
    at.radio(key="w_embed_view").set_value("One panel (toggle)").run()
    assert len(at.get("plotly_chart")) == 1 and not at.exception

    at.switch_page("app_pages/nullspace.py").run()
    assert not at.exception

    def null_dims(app):
        assert all(not m.delta for m in app.metric)  # no arrow: nothing changed over time
        return {m.label: int(m.value.split()[0]) for m in app.metric}

    at.slider(key="w_eps").set_value(0.9).run()
    loose = null_dims(at)
    at.slider(key="w_eps").set_value(0.9995).run()
    tight = null_dims(at)
    assert loose.keys() == tight.keys() and len(loose) == 3  # the mlp's three Linear layers
    assert all(tight[k] <= loose[k] for k in loose) and any(tight[k] < loose[k] for k in loose)

    # UNSC beside its training-free rivals: ranks and overlaps per layer, redrawn by each method's threshold.
    def svd_removed(app):
        spec = next(json.loads(c.proto.spec) for c in app.get("plotly_chart")
                    if "SVD forgetting: removed" in c.proto.spec)
        bars = next(t for t in spec["data"] if t.get("name") == "SVD forgetting: removed")
        return [int(v) for v in bars["y"]]

    # the spectrum and the rivals' two charts (plotly); energy, ranks and removed share are the eps view's Vega-Lite
    assert len(at.get("plotly_chart")) == 3 and len(at.get("vega_lite_chart")) == 3 and not at.exception
    at.slider(key="w_rivals_tau").set_value(0.1).run()
    many = svd_removed(at)
    at.slider(key="w_rivals_tau").set_value(0.9).run()
    few = svd_removed(at)
    assert all(f <= m for f, m in zip(few, many)) and sum(few) < sum(many)

    at.switch_page("app_pages/hybrids.py").run()
    assert not at.exception
    at.slider(key="w_delta_preview").set_value(1.0).run()
    assert any("delta = +1.000" in m and "1.00, 1.00, 1.00, 1.00" in m for m in texts(at.markdown))
    at.slider(key="w_delta_preview").set_value(-0.2).run()
    assert not any("1.00, 1.00, 1.00, 1.00" in m for m in texts(at.markdown))


def test_an_unusable_image_folder_is_an_error_not_a_traceback(app_env, monkeypatch):
    from PIL import Image

    root = app_env / "images"
    (root / "only_class").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (10, 10), (i * 40, 0, 0)).save(root / "only_class" / f"{i}.png")
    (root / "only_class" / "notes.txt").write_text("not an image")
    (root / "junk" / "a").mkdir(parents=True)
    (root / "junk" / "a" / "x.png").write_bytes(b"not really a png")
    (root / "junk" / "b").mkdir()
    (root / "junk" / "b" / "y.jpg").write_bytes(b"\xff\xd8 broken")
    monkeypatch.setenv("UNLEARN_IMAGE_ROOT", str(root))
    at = start()
    at.selectbox(key="w_dataset").select("imagefolder (my images)").run()
    at.text_input(key="w_folder").set_value(".").run()  # the root itself: one class folder, one text file
    assert not at.exception
    assert any("need at least 2 class sub-folders" in e for e in texts(at.error))
    at.text_input(key="w_folder").set_value("junk").run()  # two classes, but nothing decodes
    assert any("0 class(es) with readable images" in e and "skipped 2" in e for e in texts(at.error))
    at.text_input(key="w_folder").set_value("../../etc").run()
    assert any("outside the allowed root" in e for e in texts(at.error))


FIRST_SETUP_RUN = """
import sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=120).run()
assert not at.exception, at.exception
print({m.label: m.value for m in at.metric})
print("torch" in sys.modules)
"""


def _first_setup_run(data_dir) -> tuple[dict, bool]:
    """Setup's first script run in a new process: the metrics it shows and whether it imported torch."""
    import ast
    import os
    import subprocess
    import sys

    env = {**os.environ, "UNLEARN_DATA_DIR": str(data_dir), "UNLEARN_DEFAULT_DATASET": "digits",
           "UNLEARN_APP_AUTO_UMAP": "0", "PYTHONPATH": str(REPO)}
    env.pop("UNLEARN_SHARED", None)
    done = subprocess.run([sys.executable, "-c", FIRST_SETUP_RUN, APP], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics, imported = done.stdout.strip().splitlines()[-2:]
    return ast.literal_eval(metrics), imported == "True"


def test_the_first_setup_page_shows_a_cached_original_without_importing_torch(tmp_path, monkeypatch):
    """The first page a server draws needs no torch (its import is most of a server's first second): Setup counts
    and shows the data set's arrays and reads the original's figures from its checkpoint's metadata. A checkpoint
    saved without those figures is loaded instead, and the page shows the same numbers."""
    from unlearn_app.display import model_size
    from unlearn_core.checkpoints import read_checkpoint, save_checkpoint
    from unlearn_core.data import load_dataset
    from unlearn_core.training import get_original

    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    trained = get_original(load_dataset("digits"), "mlp", 0, device="cpu")
    size = model_size(trained.model)
    expected = {"Training images": "1,438", "Test images": "359", "Classes": "10", "Image shape": "1×8×8",
                "Test accuracy": f"{trained.meta['test_accuracy']:.2f} %", "Parameters": f"{size['parameters']:,}",
                "Weights": f"{size['mib']:.2f} MiB", "Training time": f"{trained.train_seconds:.1f} s"}
    metrics, imported = _first_setup_run(tmp_path)
    assert metrics == expected and not imported
    # A checkpoint from before the metadata held the parameter count and the weights' size.
    path = next((tmp_path / "checkpoints").glob("*.pt"))
    older = {k: v for k, v in read_checkpoint(path)["meta"].items() if k not in ("parameters", "weight_bytes")}
    save_checkpoint(path, trained.model, older)
    metrics, imported = _first_setup_run(tmp_path)
    assert metrics == expected and imported


THEME_DEFERRED = """
import sys, time
from unlearn_app import serve, warmup
deferred = serve.import_streamlit()
print(deferred, "plotly.graph_objects" not in sys.modules, serve.THEME_IMPORT not in sys.modules)
import plotly.io as pio
import streamlit
from streamlit.testing.v1 import AppTest
from unlearn_core.data import load_dataset
from unlearn_core.training import get_original
get_original(load_dataset("digits"), "mlp", 0, device="cpu")
defaults = []
draw = streamlit.plotly_chart  # what the pages call: the theme must be the default by then
streamlit.plotly_chart = lambda *a, **k: (defaults.append(pio.templates.default), draw(*a, **k))[1]
warmup.SETTLE_SECONDS = float(sys.argv[2])  # when the warm-up thread starts after the first page
at = AppTest.from_file(sys.argv[1], default_timeout=120).run()
assert not at.exception, at.exception
print(defaults == [], pio.templates.default != "streamlit", warmup._theme_deferred)
if warmup.SETTLE_SECONDS < 5:  # the warm-up thread configures it after the first page
    deadline = time.time() + 120
    while warmup._theme_deferred and time.time() < deadline:
        time.sleep(0.05)
    print(pio.templates.default == "streamlit")
else:  # another page, before the warm-up thread: app.py configures it before the page runs
    at.switch_page("app_pages/forget.py").run()
    assert not at.exception, at.exception
    print(len(at.get("plotly_chart")) > 0 and set(defaults) == {"streamlit"} and not warmup._theme_deferred)
"""


@pytest.mark.parametrize("warm_up_after_s", [3.0, 60.0])
def test_the_launcher_leaves_streamlits_plotly_theme_until_a_page_draws_plotly(tmp_path, warm_up_after_s):
    """``unlearn_app.serve.import_streamlit`` imports Streamlit without its Plotly theme (plotly's figure classes and
    a template: 0.18 s before the server answers). Setup, the first page, draws no Plotly figure and leaves it
    unset. The warm-up thread configures it after the first page; a page that draws Plotly figures before that
    (Forget set) has it configured before it runs: Streamlit's template is the default of every figure, as
    without the launcher."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "UNLEARN_DATA_DIR": str(tmp_path), "UNLEARN_DEFAULT_DATASET": "digits",
           "UNLEARN_APP_AUTO_UMAP": "0", "PYTHONPATH": str(REPO)}
    env.pop("UNLEARN_SHARED", None)
    done = subprocess.run([sys.executable, "-c", THEME_DEFERRED, APP, str(warm_up_after_s)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-7:] == ["True"] * 7
