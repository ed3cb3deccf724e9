"""The guided tour: the canonical comparison on a prepared setting, and what each of its four screens shows.

The comparison forgets one whole class of a data set with three methods at
their declared defaults, :data:`TOUR_METHODS` (UNSC, NatMU and gradient
ascent), each run recorded by :func:`unlearn_core.record.run_and_record`
with the relearn-time evidence (:func:`unlearn_core.evidence.relearn.relearn_time`)
and judged against the retrained reference of that forget set. The runs of
one tour share a run-store tag ``tour-<time>``, so the tour reopens after a
reload and Results lists the same runs. After the runs, the job computes
the tour's map (:func:`tour_map`), so the third screen is a lookup.

The four screens read only what the store and the map hold:

1. what was forgotten: forget and remaining accuracy per method beside the
   original and the retrained model (:func:`forgetting_rows`);
2. what else was lost: per-class test accuracy change against the original,
   judged by the over-unlearning rule of :mod:`unlearn_core.tables`;
3. where the samples went: one PCA map of the original's and every method's
   penultimate features (fitted together: the methods start from the
   original's weights and share its feature axes), with the retrained model's
   features aligned onto the original's by orthogonal Procrustes on the
   retained samples (:func:`unlearn_core.embeddings.joint_embedding`);
4. hidden or gone: relearn steps per model (:func:`relearn_rows`): a model
   that relearns the class in far fewer steps than the retrained model only
   hid it.

A setting is *prepared* (:func:`tour_status`) when the checkpoint cache holds
its original and the retrained reference of the tour's class
(``prepare`` / Setup's "Prepare a demo" caches every class's).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from unlearn_core.progress import ProgressEvent, ProgressFn

TOUR_METHODS = ("unsc", "natmu", "ga")
TOUR_EVIDENCE = "relearn"
TAG_PREFIX = "tour-"
MAP_POINTS = 1500
# The class a tour forgets when the current forget set is not one whole class (3 is the digit the docs use).
DEFAULT_CLASS = 3


def tour_forget(forget: str | None, num_classes: int) -> str:
    """The tour's forget set: ``forget`` when it is one whole class of the data set, else ``class:3`` (or
    ``class:0`` for a data set with fewer than four classes)."""
    from unlearn_core.errors import UnlearnError
    from unlearn_core.forget import ForgetSpec

    try:
        spec = ForgetSpec.parse(str(forget or ""))
    except UnlearnError:
        spec = None
    if spec is not None and spec.kind == "class" and len(spec.values) == 1:
        value = str(spec.values[0])
        if value.isascii() and value.isdigit() and int(value) < num_classes:
            return f"class:{int(value)}"
    return f"class:{DEFAULT_CLASS if num_classes > DEFAULT_CLASS else 0}"


@dataclass
class TourStatus:
    """Which models of the tour's setting the checkpoint cache holds (nothing is loaded or trained to tell)."""

    dataset: str
    model: str
    seed: int
    forget: str
    original: bool
    reference: bool

    @property
    def ready(self) -> bool:
        return self.original and self.reference

    @property
    def trainings(self) -> int:
        """Models a tour on this setting would train before its methods run."""
        return int(not self.original) + int(not self.reference)

    def missing(self) -> str:
        """``"the original model and the retrained reference for class:3"`` (what is not cached), or ``""``."""
        parts = (["the original model"] if not self.original else []) + (
            [f"the retrained reference for {self.forget}"] if not self.reference else [])
        return " and ".join(parts)


def tour_status(dataset: str, model: str | None, seed: int, forget: str) -> TourStatus:
    """The tour setting's cached models, by their cache keys (:func:`unlearn_core.training.is_cached`)."""
    from unlearn_core.data import default_model_for, load_dataset
    from unlearn_core.forget import ForgetSpec
    from unlearn_core.training import default_recipe, is_cached

    bundle = load_dataset(dataset)
    model = model or default_model_for(dataset)
    recipe = default_recipe(bundle.name)
    split = ForgetSpec.parse(forget).resolve(bundle, seed)
    return TourStatus(bundle.name, model, int(seed), forget, is_cached("original", bundle, model, seed, recipe),
                      is_cached("retrain", bundle, model, seed, recipe, split.key()))


@dataclass
class TourResult:
    """What a tour job leaves: its tag, the run id per method and the key of its map in the embedding cache."""

    tag: str
    run_ids: dict[str, int] = field(default_factory=dict)
    map_key: str = ""
    seconds: float = 0.0


def new_tag() -> str:
    """A tag no earlier tour has: ``tour-`` and the time in milliseconds."""
    return f"{TAG_PREFIX}{int(time.time() * 1000)}"


def run_tour(setup, store, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
             methods=TOUR_METHODS, params: dict | None = None, cache=None, tag: str | None = None) -> TourResult:
    """Run ``methods`` on a prepared setup (original and retrained reference loaded), record each, map them.

    Each method runs at its declared defaults (``params`` may give a method's overrides) through
    :func:`unlearn_core.record.run_and_record` with :data:`TOUR_EVIDENCE`, tagged ``tag``; then the map of
    :func:`tour_map` is put in ``cache`` (an :class:`~unlearn_core.embeddings.EmbeddingCache`). Progress
    comes as ``method`` events naming the step, then the runs' own events.
    """
    from unlearn_core.embeddings import EmbeddingCache
    from unlearn_core.record import run_and_record

    started = time.perf_counter()
    tag = tag or new_tag()
    result = TourResult(tag)
    models = {}
    steps = len(methods) + 1
    for step, method in enumerate(methods):
        if progress is not None:
            progress(ProgressEvent(stage="method", step=step, steps=steps,
                                   message=f"{method} ({step + 1} of {len(methods)})"))
        run_id, _, run = run_and_record(setup, method, (params or {}).get(method), progress=progress, cancel=cancel,
                                        store=store, tag=tag, evidence=TOUR_EVIDENCE)
        result.run_ids[method] = int(run_id)
        models[method] = run.model
    if cancel is not None and cancel.is_set():
        from unlearn_core.errors import Cancelled

        raise Cancelled("the tour was cancelled")
    if progress is not None:
        progress(ProgressEvent(stage="map", step=steps - 1, steps=steps, message="the map of the samples"))
    cache = cache if cache is not None else EmbeddingCache()
    result.map_key = tour_map_key(tag, result.run_ids)
    cache.put(result.map_key, tour_map(setup, models))
    result.seconds = time.perf_counter() - started
    return result


def tour_map_key(tag: str, run_ids: dict[str, int]) -> str:
    from unlearn_core.embeddings import embedding_key

    return embedding_key(tour=tag, runs=",".join(f"{m}:{i}" for m, i in sorted(run_ids.items())), reducer="pca")


def tour_map(setup, models: dict, points: int = MAP_POINTS) -> dict[str, np.ndarray]:
    """One PCA map of ``points`` training samples (every forget sample first, up to half) for the original
    (``before``), each method's model (by name) and the retrained model (``retrained``).

    The original's and the methods' features are fitted together; the retrained model's are aligned onto the
    original's by orthogonal Procrustes on the retained samples, then projected. Returns those coordinates
    plus ``idx`` (sample indices), ``labels`` and ``forget`` (a 0/1 mask).
    """
    import torch

    from unlearn_core.embeddings import features_of, joint_embedding, sample_points

    bundle = setup.bundle
    labels = bundle.train_y.numpy()
    idx = sample_points(labels, points, seed=0, include=setup.split.forget_idx)
    images = bundle.train_x[torch.as_tensor(idx, dtype=torch.long)]
    forget = np.isin(idx, setup.split.forget_idx)
    feats = {"before": features_of(setup.original.model, images, setup.device)}
    for name, model in models.items():
        feats[name] = features_of(model, images, setup.device)
    feats["retrained"] = features_of(setup.retrained.model, images, setup.device)
    coords = joint_embedding(feats, "pca", fit_on=[n for n in feats if n != "retrained"],
                             align={"retrained": ~forget})
    return {**coords, "idx": idx.astype(np.int64), "labels": labels[idx].astype(np.int64),
            "forget": forget.astype(np.int8)}


def latest_tour(runs: list[dict], methods=TOUR_METHODS) -> list[dict] | None:
    """The newest tour whose every method finished: its runs in ``methods`` order, or ``None``.

    ``runs`` are run-store rows (any order); a tour is the set of rows sharing a ``tour-`` tag.
    """
    groups: dict[str, dict[str, dict]] = {}
    for run in runs:
        tag = run.get("tag") or (run.get("config") or {}).get("tag") or ""
        if str(tag).startswith(TAG_PREFIX) and run.get("status") == "done" and run.get("report"):
            groups.setdefault(str(tag), {})[run["method"]] = run
    complete = [tag for tag, group in groups.items() if all(m in group for m in methods)]
    if not complete:
        return None
    newest = max(complete, key=lambda tag: max(groups[tag][m]["id"] for m in methods))
    return [groups[newest][m] for m in methods]


def _metric(metrics, key: str) -> float:
    value = None if metrics is None else metrics.get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if math.isfinite(value) else float("nan")


def forgetting_rows(runs: list[dict]) -> list[dict]:
    """Screen 1: ``{"model", "method", "FA", "RA", "Acc_f", "Acc_r"}`` for the original, each run and the
    retrained reference, in that order (the references from the first run's report)."""
    from unlearn_core.tables import as_report

    reports = [(run, as_report(run["report"])) for run in runs]
    first = reports[0][1]
    keys = ("FA", "RA", "Acc_f", "Acc_r")
    rows = [{"model": "original", "method": "original", **{k: _metric(first.original, k) for k in keys}}]
    for run, report in reports:
        rows.append({"model": f"#{run['id']} {run['method']}", "method": run["method"],
                     **{k: _metric(report.unlearned, k) for k in keys}})
    rows.append({"model": "retrained", "method": "retrain", **{k: _metric(first.retrained, k) for k in keys}})
    return rows


def relearn_rows(runs: list[dict]) -> list[dict]:
    """Screen 4: relearn steps of the original, each run's unlearned model and the retrained model.

    Each row: ``model``, ``method``, ``steps`` (``None`` when not reached), ``capped`` (``max_steps`` passed),
    ``diverged``, ``max_steps``, ``start_acc`` and ``forgot`` (:func:`unlearn_core.tables.forgot`: the run's FA
    and Acc_f came near the retrained model's; ``True`` for the references). The references' rows come from the
    first run's evidence.
    """
    from unlearn_core.tables import as_report, forgot

    def row(model: str, method: str, values: dict | None, did_forget: bool = True) -> dict:
        values = values or {}
        return {"model": model, "method": method, "steps": values.get("relearn_steps"),
                "capped": bool(values.get("relearn_capped")), "diverged": bool(values.get("diverged")),
                "max_steps": values.get("max_steps"), "start_acc": values.get("start_acc"), "forgot": did_forget}

    reports = [(run, as_report(run["report"])) for run in runs]
    first = (reports[0][1].evidence or {}).get("relearn") or {}
    rows = [row("original", "original", first.get("original"))]
    for run, report in reports:
        relearn = (report.evidence or {}).get("relearn") or {}
        rows.append(row(f"#{run['id']} {run['method']}", run["method"], relearn.get("unlearned"),
                        forgot(report.unlearned, report.original, report.retrained)))
    rows.append(row("retrained", "retrain", first.get("retrained")))
    return rows


def hidden_or_gone(rows: list[dict], factor: float = 0.5) -> dict[str, str]:
    """Per run (``model`` label): ``"not forgotten"`` when the run did not forget (``row["forgot"]`` false:
    relearning has nothing to measure), ``"hidden"`` when it relearns in fewer than ``factor`` x the retrained
    model's steps, ``"gone"`` when it needs at least as many, else ``"partly"``; ``"unknown"`` when either
    count is missing (diverged). A capped count is read as ``max_steps``."""
    def steps(row: dict) -> float | None:
        if row["steps"] is not None:
            return float(row["steps"])
        return float(row["max_steps"]) if row["capped"] and row["max_steps"] else None

    reference = steps(rows[-1])
    verdicts = {}
    for row in rows[1:-1]:
        own = steps(row)
        if not row.get("forgot", True):
            verdicts[row["model"]] = "not forgotten"
        elif own is None or reference is None:
            verdicts[row["model"]] = "unknown"
        elif own >= reference:
            verdicts[row["model"]] = "gone"
        elif own < factor * reference:
            verdicts[row["model"]] = "hidden"
        else:
            verdicts[row["model"]] = "partly"
    return verdicts


def forgetting_sentence(rows: list[dict]) -> str:
    """One line per method for screen 1: its forget and remaining accuracy beside the two references'."""
    original, retrained = rows[0], rows[-1]
    parts = [f"{row['model']}: forget {row['FA']:.1f} %, remaining {row['RA']:.1f} %" for row in rows[1:-1]]
    return (f"The original knew {original['FA']:.1f} % of the forget set; the retrained model, which never saw "
            f"it, gets {retrained['FA']:.1f} % (remaining {retrained['RA']:.1f} %). " + "; ".join(parts) + ".")
