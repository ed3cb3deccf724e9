"""UMAP fits of feature rows: umap-learn's import with its numba kernels cached on disk, the exact fit, and a
helper process that imports umap-learn and runs the fits for a long-lived process such as the dashboard.

umap-learn compiles several numba kernels at its first fit in every process without caching them;
:func:`import_umap` switches numba's on-disk cache on for them, so only the first process after an install
compiles (:func:`warm_umap`, run by ``make run``/``make test``).

Importing umap-learn (numba, llvmlite, pynndescent, scikit-learn, scipy.stats) takes about 2 s of Python work on
this project's 2-core machine, and numba's initialisation holds the interpreter for long stretches: in the
dashboard's process it stalled every page script that ran meanwhile (a first Embeddings visit right after the
first page took 5.5-7 s, against 3 s once the import was over). :func:`start_helper` moves umap-learn into a separate process (one, started by ``spawn``) that
imports and warms it at once; from then on :func:`fit_coords` sends the rows there and gets the coordinates
back, and this process never imports umap-learn. Without a helper, or if it died, :func:`fit_coords` fits
in-process. Both run :func:`umap_coords`: the same code, seed and kernels give the same map
(tests/test_umap_cache.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings

import numpy as np

log = logging.getLogger(__name__)
# Serialises every UMAP fit in this process: numba's threading layer is not safe for concurrent fits.
FIT_LOCK = threading.Lock()


UMAP_EPOCHS = 200  # umap's default is 500 below 10k points; 200 draws the same clusters in well under half the time


# umap-learn's modules whose numba kernels a fit compiles; some are declared without ``cache=True``.
UMAP_KERNEL_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.sparse",
                       "umap.spectral")
_umap_lock = threading.Lock()
_umap_cached_kernels: int | None = None


def import_umap():
    """umap-learn, with numba's on-disk cache switched on for every kernel of :data:`UMAP_KERNEL_MODULES`.

    umap-learn declares its fit-time kernels (``smooth_knn_dist``, ``compute_membership_strengths``,
    ``fast_knn_indices``, the layout epoch ...) without ``cache=True``, so every process compiled them again at
    its first fit: about 9 s on this project's 2-core machine, on top of a 2 s import. Numba's
    ``Dispatcher.enable_caching()`` stores each compiled kernel in numba's cache (``NUMBA_CACHE_DIR``, else the
    ``__pycache__`` beside umap's sources) keyed by the kernel's source file and signature, as ``cache=True``
    would; numba checks the file's timestamp, so an upgraded umap compiles again. A kernel whose cache cannot
    be set up (no writable cache folder) compiles per process as before. The same machine code runs either way.
    """
    global _umap_cached_kernels
    import importlib

    import umap  # slow import (numba); only when asked for

    # The maps are seeded on purpose (a setting's before map is the same in every process); umap warns on each fit
    # that a seed means one thread.
    warnings.filterwarnings("ignore", message=r"n_jobs value .* overridden to 1 by setting random_state",
                            category=UserWarning)
    # The exact path passes a distance matrix (:func:`umap_coords`); no map here is ever inverted.
    warnings.filterwarnings("ignore", message=r"using precomputed metric; inverse_transform will be unavailable",
                            category=UserWarning)

    with _umap_lock:
        if _umap_cached_kernels is None:
            from numba.core.dispatcher import Dispatcher

            count = 0
            for name in UMAP_KERNEL_MODULES:
                try:
                    module = importlib.import_module(name)
                except ImportError:
                    continue
                for value in vars(module).values():
                    if isinstance(value, Dispatcher) and value.__module__ == name:
                        try:
                            value.enable_caching()
                            count += 1
                        except Exception:  # noqa: BLE001 - no usable cache folder: it compiles per process
                            pass
            _umap_cached_kernels = count
    return umap


def euclidean_distances(points: np.ndarray) -> np.ndarray:
    """The exact euclidean distance matrix ``D[i, j] = ||x_i - x_j||`` of the rows of ``points`` (float64, zero
    diagonal), from one matrix product: ``||x_i||² + ||x_j||² - 2 x_i·x_j``, clipped at 0 against rounding. NumPy
    with one BLAS thread (threads spinning on a busy machine cost far more than they save at this size), so the
    helper process needs no torch."""
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency, so umap-learn's too

    x = np.ascontiguousarray(points, dtype=np.float64)
    squared = np.einsum("ij,ij->i", x, x)
    with threadpool_limits(limits=1, user_api="blas"):
        product = x @ x.T
    distances = squared[:, None] + squared[None, :] - 2.0 * product
    np.sqrt(np.maximum(distances, 0.0, out=distances), out=distances)
    np.fill_diagonal(distances, 0.0)
    return distances


def umap_installed() -> bool:
    """Whether umap-learn can be imported (it comes with the ``[app]`` extra), without importing it."""
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def default_reducers() -> tuple[str, ...]:
    """The maps computed ahead of a view by default: PCA, and UMAP unless ``UNLEARN_APP_AUTO_UMAP=0`` or
    umap-learn is not installed."""
    from unlearn_core.settings import settings

    return ("pca", "umap") if settings().app_auto_umap and umap_installed() else ("pca",)


UMAP_EXACT_BELOW = 4096  # umap-learn's own threshold: below it, it finds every point's neighbours exactly


def umap_coords(fit: np.ndarray, seed: int, n_neighbors: int = 15) -> np.ndarray:
    """The 2-D UMAP map (euclidean metric) of the rows of ``fit``: ``(len(fit), 2)`` float32.

    ``UMAP(n_components=2, n_neighbors, min_dist=0.1, random_state=seed, n_epochs=UMAP_EPOCHS)``, with
    ``n_neighbors`` clipped to ``[2, len(fit) - 1]``. Below :data:`UMAP_EXACT_BELOW` points umap-learn takes every
    point's nearest neighbours from the full distance matrix. Given ``metric="euclidean"`` it fills that matrix
    through sklearn with its numba distance as a Python callable, one call per pair (2.4 s of a 3.4 s fit of
    2,000 points on this project's machine); here the same matrix comes from
    :func:`euclidean_distances` and is passed as ``metric="precomputed"``, the same exact
    path (a 1.0 s fit). Where both computations round every distance alike (integer-valued pixels) the graph and
    the map are identical; on float features a distance can differ in its last bits, which may swap two
    near-tied neighbours and so gives an equally valid layout, not the same coordinates. From that size on
    umap's approximate neighbour search runs in numba as before. Runs in this process; :func:`fit_coords` runs it
    in the helper process when there is one.
    """
    umap = import_umap()

    n_neighbors = max(2, min(n_neighbors, len(fit) - 1))
    exact = len(fit) < UMAP_EXACT_BELOW
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=0.1, random_state=seed,
                        n_epochs=UMAP_EPOCHS, metric="precomputed" if exact else "euclidean")
    with FIT_LOCK:
        data = euclidean_distances(fit) if exact else fit
        return reducer.fit_transform(data).astype(np.float32)


def warm_umap(seed: int = 0) -> float:
    """Fit a tiny UMAP once in this process so numba compiles its kernels (or loads them from its on-disk cache,
    see :func:`import_umap`); returns the seconds it took."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    umap_coords(rng.normal(size=(300, 8)).astype(np.float32), seed)
    return time.perf_counter() - started


@contextlib.contextmanager
def _no_main_module():
    """Hide this process's ``__main__`` while a helper is spawned: ``spawn`` runs the parent's main module again in
    the child, and in a Streamlit server that module is the page script being run (``app.py`` under
    ``streamlit run``), which would draw the app in the helper. The helper needs only this module."""
    import sys
    import types

    main = sys.modules.get("__main__")
    placeholder = types.ModuleType("__main__")
    sys.modules["__main__"] = placeholder
    try:
        yield
    finally:
        if sys.modules.get("__main__") is placeholder:  # a script run that replaced it meanwhile keeps its own
            sys.modules["__main__"] = main


class _Helper:
    """One ``spawn``-started, daemonic process (:func:`_serve`) and the pipe to it; one request at a time."""

    def __init__(self):
        import multiprocessing
        import os

        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        # Daemonic: a parent that exits normally terminates it at once, even in the middle of its warm-up.
        self.process = context.Process(target=_serve, args=(theirs, os.getpid()), name="umap-helper", daemon=True)
        with _no_main_module():
            self.process.start()
        theirs.close()
        self.lock = threading.Lock()

    def fit(self, fit: np.ndarray, seed: int, n_neighbors: int) -> np.ndarray:
        """Raises ``OSError``/``EOFError`` if the process is gone, ``RuntimeError`` if the fit failed there."""
        with self.lock:
            self.conn.send((np.ascontiguousarray(fit), int(seed), int(n_neighbors)))
            ok, value = self.conn.recv()
        if not ok:
            raise RuntimeError(f"UMAP failed in the helper process: {value}")
        return value


def _serve(conn, parent: int) -> None:
    """The helper process: watch the process that started it, import umap-learn and warm its kernels, then answer
    ``(rows, seed, n_neighbors)`` requests with ``(True, coords)`` or ``(False, message)`` until the pipe closes."""
    import signal

    # Terminated (the parent's exit stops its daemonic children so), it exits through Python, whose exit hooks
    # release what the imports hold (a semaphore: killed outright, the parent warned of it as leaked at its exit).
    signal.signal(signal.SIGTERM, _exit_quietly)
    threading.Thread(target=_exit_with, args=(parent,), name="umap-helper-watch", daemon=True).start()
    try:
        warm_umap()
    except Exception:  # noqa: BLE001 - no umap-learn, say: each request below reports it
        pass
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = (True, umap_coords(*request))
        except Exception as error:  # noqa: BLE001 - reported to the caller, which raises it
            answer = (False, f"{type(error).__name__}: {error}")
        conn.send(answer)


def _exit_quietly(signum, frame) -> None:
    raise SystemExit(0)


def _exit_with(parent: int, every: float = 1.0) -> None:
    """End this helper once ``parent`` is gone: a parent that exits normally terminates it, one that is killed
    cannot, and the helper would otherwise wait for requests forever. It terminates itself (see :func:`_serve`),
    and leaves at once if that has not ended it within 10 s."""
    import os
    import signal

    while os.getppid() == parent:
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(0)


_helper: _Helper | None = None
_helper_lock = threading.Lock()


def start_helper() -> None:
    """Start this process's UMAP helper process, once: a ``spawn``-started daemonic process that imports
    umap-learn and warms it (:func:`warm_umap`) right away, in parallel with this process. Later
    :func:`fit_coords` calls run there. The helper ends with this process (terminated at its normal exit; within
    a second if this process is killed)."""
    global _helper
    with _helper_lock:
        if _helper is None:
            _helper = _Helper()


def helper_running() -> bool:
    """Whether :func:`fit_coords` sends its fits to a helper process."""
    return _helper is not None


def fit_coords(fit: np.ndarray, seed: int, n_neighbors: int = 15) -> np.ndarray:
    """:func:`umap_coords` of ``fit``, in the helper process when :func:`start_helper` started one (the rows go
    there and the ``(N, 2)`` coordinates come back), else in this process. A helper that died is dropped with a
    log line and the fit runs here; a fit that failed there (no umap-learn, say) runs here too, so its error is
    raised as this process raises it."""
    global _helper
    helper = _helper
    if helper is not None:
        try:
            return helper.fit(fit, seed, n_neighbors)
        except (EOFError, OSError) as error:
            log.warning("the UMAP helper process is gone (%s); fitting in this process", error)
            with _helper_lock:
                if _helper is helper:
                    _helper = None
        except RuntimeError as error:
            log.warning("%s; fitting in this process", error)
    return umap_coords(fit, seed, n_neighbors)
