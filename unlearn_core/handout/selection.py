"""Which runs a report covers: given run ids, every run with a tag, or the runs of a sweep."""

from __future__ import annotations

from dataclasses import dataclass, field

from unlearn_core.errors import UnlearnError


class HandoutError(UnlearnError):
    """The runs asked for cannot make a report (none given, none found, none finished)."""


@dataclass
class Selection:
    """The runs of a report. ``done`` have a report; ``unfinished`` failed, were cancelled or still run.

    ``source`` is ``("runs", "1,2")``, ``("tag", T)`` or ``("sweep", S)``; ``sweep`` holds the stored
    sweep (tag, kind, spec) for a sweep selection, else ``None``.
    """

    source: tuple[str, str]
    done: list[dict]
    unfinished: list[dict] = field(default_factory=list)
    sweep: dict | None = None

    @property
    def title(self) -> str:
        kind, value = self.source
        return {"runs": f"runs {value}", "tag": f"runs tagged {value}", "sweep": f"sweep {value}"}[kind]


def parse_run_ids(text) -> list[int]:
    """``"3,5, 7"`` (or a list) -> ``[3, 5, 7]``, each checked by the store's rule; duplicates kept once."""
    from unlearn_core.store import run_id_from_text

    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    ids = [run_id_from_text(str(item).strip()) for item in items if str(item).strip()]
    if not ids:
        raise HandoutError("give at least one run id, e.g. --runs 3,5")
    return list(dict.fromkeys(ids))


def select_runs(store, run_ids=None, tag: str | None = None, sweep: str | None = None) -> Selection:
    """The runs for a report: exactly one of ``run_ids`` (ids or ``"3,5"``), ``tag`` or ``sweep``.

    Runs come oldest first. A sweep's runs carry their ``role`` (``run`` or ``reference``). Raises
    :class:`HandoutError` (or the store's ``RunNotFoundError``) with one line when nothing can be reported.
    """
    given = [name for name, value in (("--runs", run_ids), ("--tag", tag), ("--sweep", sweep))
             if value not in (None, "", [])]
    if len(given) != 1:
        raise HandoutError("give exactly one of --runs ID,ID, --tag TAG or --sweep TAG"
                           + (f" (got {' and '.join(given)})" if given else ""))
    stored_sweep = None
    if run_ids not in (None, "", []):
        ids = parse_run_ids(run_ids)
        runs = [store.get(run_id) for run_id in ids]
        source = ("runs", ",".join(str(i) for i in ids))
    elif tag:
        runs = sorted(store.list(tag=str(tag)), key=lambda r: r["id"])
        if not runs:
            raise HandoutError(f"no run has the tag {str(tag)[:80]!r} (python -m unlearn_core runs list)")
        source = ("tag", str(tag))
    else:
        stored_sweep = store.get_sweep(str(sweep))
        if stored_sweep is None:
            raise HandoutError(f"no sweep is recorded with tag {str(sweep)[:80]!r}")
        runs = store.sweep_runs(str(sweep))
        if not runs:
            raise HandoutError(f"sweep {str(sweep)[:80]!r} has no recorded run yet")
        source = ("sweep", str(sweep))
    done = [r for r in runs if r.get("status") == "done" and r.get("report")]
    unfinished = [r for r in runs if not (r.get("status") == "done" and r.get("report"))]
    if not done:
        raise HandoutError(f"none of the {len(runs)} selected run(s) finished with a report")
    return Selection(source, done, unfinished, stored_sweep)
