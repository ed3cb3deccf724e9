"""Sweeps: many runs (methods x parameter grids x forget sets x seeds) on Ray, or in this process.

A *cell* is (data set, model, forget set, method, parameter values); a sweep
runs each cell once per seed and, per forget set, a *reference ensemble* of
``retrains`` retrained models (method ``retrain``, one per seed). Every run is
an ordinary recorded run of the run store (the same report as ``unlearn``),
tagged with the sweep and linked to it under a *run key*: a hash of everything
that determines the run (data set, model, forget set, method, resolved
parameters, seed, training recipe, device kind, code version). Running a sweep
again skips every key it already holds, so a killed driver loses only the runs
that were in flight and a second identical sweep trains nothing.

Engines:

- ``ray`` (default): original and retrained models are Ray tasks, trained (or
  loaded from the node's checkpoint cache) once and handed to the runs through
  the object store, since cluster nodes share no disk. Each run is a task
  asking for one CPU (and ``gpus_per_run`` of a GPU) with torch on one thread.
  Ray retries a task whose worker died; the result reaches the driver once,
  and only the driver writes the run store, so no run is recorded twice.
  The session is :func:`unlearn_core.raycluster.connect`'s: ``address=None``
  starts a local instance sized to the machine, bound to 127.0.0.1, in a
  private folder, and stops all of it at the end; ``"HOST:PORT"`` (the head's
  GCS), ``"ray://HOST:PORT"`` or ``"auto"`` joins an existing cluster within
  30 s and ships this package to it. Each run records the node it ran on.
- ``inline``: the same functions, called one after another in this process
  (debugging, tests of the core). For the same seeds it gives the same numbers.

``ray`` is imported only when a ray sweep starts. Progress goes to a
:data:`~unlearn_core.progress.ProgressFn` as :class:`SweepEvent`; a
``threading.Event`` cancels. :func:`sweep_result` rebuilds a sweep's cells and
aggregates (mean, standard deviation and 95 % interval over seeds, the gap to
the reference ensemble's mean and whether the mean lies inside its spread)
from the store alone, so the app can browse any sweep.

The package: :mod:`~unlearn_core.sweeps.spec` (the request and the engine
configuration), :mod:`~unlearn_core.sweeps.plan` (cells, run keys, reference
seeds), :mod:`~unlearn_core.sweeps.work` (what runs inside a task),
:mod:`~unlearn_core.sweeps.engines` (inline, Ray),
:mod:`~unlearn_core.sweeps.driver` (:func:`run_sweep` and the driver object),
:mod:`~unlearn_core.sweeps.search` (Optuna through Ray Tune),
:mod:`~unlearn_core.sweeps.aggregate` (:func:`sweep_result`, :func:`summarize`)
and :mod:`~unlearn_core.sweeps.output` (markdown, CSV, JSON).
"""

from unlearn_core.sweeps.aggregate import (EVIDENCE_METRICS, REPORT_FLAGS, VERDICT_KEYS, cell_verdict_details,
                                           summarize, sweep_result)
from unlearn_core.sweeps.driver import SweepDriver, SweepEvent, run_sweep, start_engine
from unlearn_core.sweeps.engines import InlineEngine, RayEngine
from unlearn_core.sweeps.output import (TABLE_METRICS, csv_bytes, flat_rows, json_bytes, markdown_tables, new_tag,
                                        rows_csv_bytes)
from unlearn_core.sweeps.plan import KEY_VERSION, Cell, PlannedRun, cells, plan, reference_seeds, run_key, sweep_cost
from unlearn_core.sweeps.search import run_search, search_space, search_summary
from unlearn_core.sweeps.spec import (ENGINES, ENSEMBLE_DEFAULT_K, ENSEMBLE_K_CHOICES, OBJECTIVES, PROTOCOLS,
                                      SEARCHERS, EngineConfig, SweepError, SweepSpec, default_tag, ensemble_spec,
                                      evidence_dict, parse_grid, parse_methods, parse_seeds, validate)
from unlearn_core.sweeps.work import execute_run, train_model

__all__ = ["Cell", "ENGINES", "ENSEMBLE_DEFAULT_K", "ENSEMBLE_K_CHOICES", "ensemble_spec", "EVIDENCE_METRICS", "EngineConfig", "InlineEngine",
           "KEY_VERSION", "OBJECTIVES", "PlannedRun", "REPORT_FLAGS",
           "PROTOCOLS", "RayEngine", "SEARCHERS", "VERDICT_KEYS", "SweepDriver", "SweepError", "SweepEvent",
           "SweepSpec", "TABLE_METRICS", "cell_verdict_details", "cells", "sweep_cost", "csv_bytes", "default_tag",
           "evidence_dict", "execute_run",
           "flat_rows", "json_bytes", "markdown_tables", "new_tag", "parse_grid", "parse_methods", "parse_seeds",
           "plan", "reference_seeds", "run_key", "run_search", "run_sweep", "search_space",
           "search_summary", "start_engine", "summarize", "sweep_result", "train_model", "validate", "rows_csv_bytes"]
