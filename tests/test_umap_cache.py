"""umap-learn's fit-time kernels go to numba's on-disk cache (unlearn_core.umapfit.import_umap), its exact
small-data path gets its distance matrix from BLAS, and the preloading launcher (unlearn_app.serve) imports what
the first page needs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FIT = """
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
from unlearn_core.embeddings import fit_before_map
x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
print(json.dumps(fit_before_map(x, "umap", seed=0)["coords"].round(5).tolist()))
"""


def _fit_in_a_new_process(cache: Path) -> list:
    done = subprocess.run([sys.executable, "-c", FIT], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NUMBA_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(600)
def test_umaps_fit_kernels_are_cached_on_disk_and_reused_with_the_same_map(tmp_path):
    first = _fit_in_a_new_process(tmp_path)
    # The kernels umap-learn declares without cache=True now have cache entries too: the layout epoch,
    # smooth_knn_dist and compute_membership_strengths (index files name the function).
    names = {p.name for p in tmp_path.rglob("*.nbi")}
    for kernel in ("layouts._optimize_layout_euclidean_single_epoch", "umap_.smooth_knn_dist",
                   "umap_.compute_membership_strengths"):
        assert any(kernel in name for name in names), sorted(names)[:20]
    second = _fit_in_a_new_process(tmp_path)  # loads the kernels from the cache
    assert second == first


def test_the_exact_path_with_a_precomputed_matrix_is_umaps_own_euclidean_fit():
    """Same fuzzy graph and same map as ``umap.UMAP(metric="euclidean")`` on integer-valued digits (where both
    distance computations round alike), without umap's one-Python-call-per-pair distance matrix."""
    import warnings

    import numpy as np
    from sklearn.datasets import load_digits

    from unlearn_core.umapfit import euclidean_distances
    from unlearn_core.umapfit import UMAP_EPOCHS, import_umap, umap_coords

    x = load_digits().data[:300].astype(np.float32)
    umap = import_umap()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=0, n_epochs=UMAP_EPOCHS)
        theirs_coords = theirs.fit_transform(x)
        ours = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=0, n_epochs=UMAP_EPOCHS,
                         metric="precomputed").fit(euclidean_distances(x))
        coords = umap_coords(x, seed=0)
    assert abs(theirs.graph_ - ours.graph_).max() == 0 and theirs.graph_.nnz == ours.graph_.nnz
    np.testing.assert_array_equal(coords, theirs_coords.astype(np.float32))
    distances = euclidean_distances(x[:50])
    np.testing.assert_allclose(distances, np.linalg.norm(x[:50, None] - x[None, :50], axis=-1), rtol=1e-6, atol=1e-4)
    assert np.all(np.diag(distances) == 0)


HELPER = """
import json, os, signal, sys
import numpy as np
from sklearn.datasets import load_digits
from unlearn_core import umapfit
x = load_digits().data[:300].astype(np.float32)
umapfit.start_helper()
umapfit.start_helper()  # once per process
pids = [umapfit._helper.process.pid]
there = umapfit.fit_coords(x, seed=0)
out = {"workers": len(pids), "umap_here": "umap" in sys.modules}
os.kill(pids[0], signal.SIGKILL)  # a helper that died: the fit runs here instead
again = umapfit.fit_coords(x, seed=0)
out.update(dropped=not umapfit.helper_running(), umap_here_after="umap" in sys.modules,
           same=bool(np.array_equal(there, again)), local_same=bool(np.array_equal(there, umapfit.umap_coords(x, 0))))
print(json.dumps(out))
"""


@pytest.mark.timeout(600)
def test_fits_run_in_the_helper_process_with_the_same_map_and_fall_back_here_when_it_dies():
    """``umapfit.start_helper`` starts one process that imports umap-learn; ``fit_coords`` then never imports it
    here and returns the map this process would fit; a killed helper is dropped and the fit runs here."""
    done = subprocess.run([sys.executable, "-c", HELPER], cwd=REPO, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"workers": 1, "umap_here": False, "dropped": True, "umap_here_after": True, "same": True,
                   "local_same": True}, (out, done.stderr[-2000:])


ORPHAN = """
import os, signal
from unlearn_core import umapfit
umapfit.start_helper()
print(umapfit._helper.process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no exit hook runs
"""


def _alive(pid: int) -> bool:
    try:  # a zombie has ended; whether anyone reaps it is not the helper's business
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_the_helper_process_ends_when_the_process_that_started_it_is_killed():
    import time

    done = subprocess.run([sys.executable, "-c", ORPHAN], cwd=REPO, capture_output=True, text=True, timeout=120)
    helper = int(done.stdout.split()[0])
    deadline = time.monotonic() + 60
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(helper), "the UMAP helper outlived its killed parent"


CLEAN_EXIT = """
if __name__ == "__main__":
    import numpy as np
    from unlearn_core import umapfit
    umapfit.start_helper()
    umapfit.fit_coords(np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32), 0)
    print(umapfit._helper.process.pid)
"""


PAGE_SCRIPT = """
import os, sys
with open(sys.argv[1], "a") as marks:  # top level, no main guard: what a Streamlit page script is
    marks.write(f"{os.getpid()}\\n")
import numpy as np
from unlearn_core import umapfit
umapfit.start_helper()
umapfit.fit_coords(np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32), 0)
print(umapfit._helper.process.pid)
"""


def test_the_helper_never_runs_the_script_that_started_it(tmp_path):
    """``spawn`` runs the parent's main module again in the child; in a Streamlit server that is the page script,
    which then drew the app inside the helper. The helper is started with the main module hidden."""
    script, marks = tmp_path / "page.py", tmp_path / "marks.txt"
    script.write_text(PAGE_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(marks)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    helper = int(done.stdout.split()[-1])
    assert marks.read_text().split() != [] and str(helper) not in marks.read_text().split()
    assert len(marks.read_text().split()) == 1


def test_a_process_that_exits_ends_its_helper_cleanly(tmp_path):
    """A normal exit terminates the helper, which exits through Python: nothing it held is reported leaked."""
    script = tmp_path / "clean_exit.py"  # spawn re-imports the main module: a file, with its main guard
    script.write_text(CLEAN_EXIT)
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "leaked" not in done.stderr, done.stderr[-2000:]
    assert not _alive(int(done.stdout.split()[-1]))


def test_the_launcher_preloads_the_first_pages_modules_and_the_rest_waits_for_the_page():
    """``unlearn_app.serve``'s thread waits until the server listens, then imports the Setup page's modules, which
    do not import torch, and loads the default data set; torch and the other pages' modules load in a thread that
    starts only once the script run that asked for it has ended (``unlearn_app.warmup``). After each step what is
    loaded is frozen: a full collection then walks only what was made since."""
    code = """
import gc, sys, threading, time
from unlearn_app import warmup
assert "torch" in warmup.LATER_MODULES and not set(warmup.FIRST_PAGE_MODULES) & set(warmup.LATER_MODULES)
listening = threading.Event()
done = {}
first = threading.Thread(target=lambda: done.update(warmup.warm_first_page(listening.is_set)))
first.start()
time.sleep(0.3)
waited = not done and not any(m in sys.modules for m in warmup.FIRST_PAGE_MODULES if m.startswith("unlearn_"))
listening.set(); first.join(timeout=120)
from unlearn_core.data import sources
print(waited, all(m in sys.modules for m in warmup.FIRST_PAGE_MODULES),
      set(warmup.FIRST_PAGE_MODULES) < set(done), sources._cached_arrays.cache_info().currsize == 1,
      "torch" not in sys.modules)
frozen_first = gc.get_freeze_count()
print(frozen_first > 50_000, len(gc.get_objects()) < frozen_first // 10)
later_before = [m for m in warmup.LATER_MODULES if m in sys.modules]
page_done = threading.Event()
seen = {}
def script_run():
    thread = warmup.after_page(umap=False)
    time.sleep(0.5)  # the rest of the page: nothing may be imported meanwhile
    seen["during"] = [m for m in warmup.LATER_MODULES if m in sys.modules]
    seen["thread"] = thread
runner = threading.Thread(target=script_run)
runner.start(); runner.join()
again = warmup.after_page(umap=False)
deadline = time.time() + 120
while gc.get_freeze_count() < frozen_first + 50_000 and time.time() < deadline:  # loaded, then frozen
    time.sleep(0.05)
print(later_before == seen["during"], all(m in sys.modules for m in warmup.LATER_MODULES), again is seen["thread"],
      gc.get_freeze_count() > frozen_first + 50_000)
"""
    env = {**os.environ, "UNLEARN_DEFAULT_DATASET": "digits"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True"] * 11


def test_freezing_what_is_loaded_collects_first_only_when_asked():
    """``warmup.freeze_loaded(collect=True)`` (after torch, off every page's path) frees the garbage already there
    before freezing; without ``collect`` (before the first page, where the collection would cost what freezing
    saves) garbage present at that moment is kept for good, which is why that freeze comes right after imports."""
    code = """
import gc, weakref
from unlearn_app.warmup import freeze_loaded
class Node:
    pass
def garbage_cycle():
    a, b = Node(), Node()
    a.b, b.a = b, a
    return weakref.ref(a)
gc.disable()  # no automatic collection between the steps
freed = garbage_cycle()
frozen = freeze_loaded(collect=True)
print(freed() is None, frozen == gc.get_freeze_count() > 0)
gc.unfreeze()
kept = garbage_cycle()
freeze_loaded()
gc.collect()
print(kept() is not None)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True"] * 3


def test_the_launcher_skips_streamlits_component_scan_which_the_dashboard_does_not_need():
    """``unlearn_app.serve.skip_component_scan`` replaces Streamlit's start-up scan of every installed package for
    custom ("v2") components: the real scan finds none here, no app module names such a component, and after the
    skip Streamlit's component registry starts without reading any package's metadata."""
    code = """
import importlib.metadata
from streamlit.components.v2 import manifest_scanner
found = manifest_scanner.scan_component_manifests()
from unlearn_app import serve
skipped = serve.skip_component_scan()
reads = []
importlib.metadata.distributions = lambda: reads.append(1) or []
from streamlit.components.v2.component_manager import BidiComponentManager
BidiComponentManager().discover_and_register_components(start_file_watching=False)
print(found, skipped, len(reads))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "True", "0"]
    sources = [REPO / "app.py", *(REPO / "app_pages").rglob("*.py"), *(REPO / "unlearn_app").rglob("*.py")]
    users = [p.name for p in sources if "components.v2" in p.read_text() and p.name != "serve.py"]
    assert users == []


def test_the_first_pages_warm_up_gives_up_quietly_when_it_cannot_tell_the_server_listens(caplog):
    """A signal that raises (a Streamlit without that runtime state) or never comes costs nothing but the head
    start: no exception leaves the thread, and nothing is imported."""
    from unlearn_app import warmup

    def broken():
        raise AttributeError("no RuntimeState")

    assert warmup.warm_first_page(broken) == {}
    assert "could not tell whether the server listens" in caplog.text
    started = time.monotonic()
    assert warmup.warm_first_page(lambda: False, poll_s=0.01, timeout_s=0.1) == {}
    assert time.monotonic() - started < 2


def test_the_launchers_signal_is_streamlits_runtime_having_started():
    """``unlearn_app.serve.listening`` is false before Streamlit is imported (it imports nothing itself) and while
    no runtime exists, so the first page's warm-up never competes with the server's own start."""
    code = """
import sys
from unlearn_app.serve import listening
before = listening(), "streamlit" in sys.modules
import streamlit.runtime
print(before, listening())
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["(False,", "False)", "False"]


@pytest.mark.parametrize("umap", [True, False])
def test_after_the_first_page_the_umap_helper_starts_before_torch_is_imported(umap):
    """The warm-up thread starts the helper first, so it warms on the other core while this process imports torch
    and the later pages' modules; with UMAP switched off no helper starts, and neither process's start imports
    umap-learn here."""
    code = f"""
import sys, threading, time
from unlearn_app import warmup
from unlearn_core import umapfit
seen = []
load = warmup.preload
warmup.preload = lambda modules: (seen.append((umapfit.helper_running(), "torch" in sys.modules)), load(modules))[1]
run = threading.Thread(target=lambda: warmup.after_page(umap={umap}))
run.start(); run.join()
deadline = time.time() + 240
while not (seen and all(m in sys.modules for m in warmup.LATER_MODULES)) and time.time() < deadline:
    time.sleep(0.05)
print(seen, umapfit.helper_running(), "umap" in sys.modules, "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == f"[({umap}, False)] {umap} False True"
