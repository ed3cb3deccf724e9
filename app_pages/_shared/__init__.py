"""Streamlit glue shared by the pages, one module per job; the pages call it as ``_shared.<name>``.

- :mod:`~app_pages._shared.text`: markdown that user or URL text cannot break out of, error boxes, explainers;
- :mod:`~app_pages._shared.session`: the shared choice and its address bar, the session token, presentation
  mode, the sidebar at the end of a run, the page registry, remembered widgets;
- :mod:`~app_pages._shared.resources`: what the server process holds per data directory (job runner, setup
  cache, run store, map cache) and the session's views of it;
- :mod:`~app_pages._shared.charts`: chart file names and formats, Vega-Lite charts, the report button;
- :mod:`~app_pages._shared.runs`: a stored run's model, outputs and map features, a run job's map work, the
  background warm-up;
- :mod:`~app_pages._shared.jobs`: the jobs panel and queueing runs.

Each imports only those above it. Only drawing and Streamlit state live here; the logic is in ``unlearn_app``
and ``unlearn_core``. Heavy modules (torch, umap) are imported inside functions, so a page's title and
explainer appear before they load. The modules call each other through the module (``session.stop()``), so a
test patches a function once, in the module that defines it.
"""

from app_pages._shared import charts, jobs, resources, runs, session, text
from app_pages._shared.charts import chart_config, report_button, vega_chart
from app_pages._shared.jobs import POLL_SECONDS, jobs_panel, queue_runs
from app_pages._shared.resources import (_data_dir, _runner, choice, current_setup, embedding_cache, original_ready,
                                         run_artifacts, runner, setups, store)
from app_pages._shared.runs import features_and_probs, run_maps_hook, run_model, run_outputs, warm_in_background
from app_pages._shared.session import (CHART_FORMATS, SHARED_KEYS, VIEWED_RUN, apply_url_choice, browser_token,
                                       drop_url_value, finish_run, init_state, keep_widgets, note_viewed_run, page,
                                       presentation, restore_widgets, session_owner, set_view, shared, stop,
                                       sync_url, upload_owner, url_view, viewed_run)
from app_pages._shared.text import code, explainer, forget_md, md, show_error, timed, wait_note

__all__ = ["charts", "jobs", "resources", "runs", "session", "text", "chart_config", "report_button", "vega_chart",
           "POLL_SECONDS", "jobs_panel", "queue_runs", "_data_dir", "_runner", "choice", "current_setup",
           "embedding_cache", "original_ready", "run_artifacts", "runner", "setups", "store", "features_and_probs",
           "run_maps_hook", "run_model", "run_outputs", "warm_in_background", "CHART_FORMATS", "SHARED_KEYS",
           "VIEWED_RUN", "apply_url_choice", "browser_token", "drop_url_value", "finish_run", "init_state",
           "keep_widgets", "note_viewed_run", "page", "presentation", "restore_widgets", "session_owner", "set_view",
           "shared", "stop", "sync_url", "upload_owner", "url_view", "viewed_run", "code", "explainer", "forget_md",
           "md", "show_error", "timed", "wait_note"]
