"""The run store: every unlearning run and sweep recorded in one SQLite database, with its checkpoint files.

- :mod:`~unlearn_core.store.schema`: the tables, migrations by column name, opening (read-only when it must be).
- :mod:`~unlearn_core.store.runs`: :class:`RunStore` (start / finish / fail / get / list) and :func:`delete_run`.
- :mod:`~unlearn_core.store.sweeps`: the ``sweeps`` and ``sweep_runs`` tables.
- :mod:`~unlearn_core.store.files`: run checkpoint files, their quota, pinning, reaping, stale temporary files.
- :mod:`~unlearn_core.store.export`: runs as flat CSV rows or JSON.

The store imports only the bottom layer (errors, parsing, paths, outputs, the JSON helpers): it records runs,
it never runs one (that is :mod:`unlearn_core.record`).
"""

from unlearn_core.store.common import (MAX_ROW_ID, METRIC_KEYS, STATUSES, SUMMARY_KEYS, RunNotFoundError,
                                       RunStoreError, RunStoreWarning, code_version, run_id_from_text)
from unlearn_core.store.files import QUOTA_ENV, run_checkpoint_path, run_checkpoint_quota_bytes
from unlearn_core.store.runs import RunStore, default_store_path, delete_run
from unlearn_core.store.schema import SCHEMA, SCHEMA_VERSION

__all__ = ["MAX_ROW_ID", "METRIC_KEYS", "QUOTA_ENV", "SCHEMA", "SCHEMA_VERSION", "STATUSES", "SUMMARY_KEYS",
           "RunNotFoundError", "RunStore", "RunStoreError", "RunStoreWarning", "code_version", "default_store_path",
           "delete_run", "run_checkpoint_path", "run_checkpoint_quota_bytes", "run_id_from_text"]
