"""What a report shows, computed from stored runs: grouped metrics, class shifts, maps, spectra, hybrids.

Runs are grouped by setting (data set, model, forget set) and, within one,
by method and resolved parameters; the runs of a group differ only by seed.
Means and 95 % intervals over seeds are :func:`unlearn_core.sweeps.summarize`
(two-sided Student-t interval of the mean). A ``retrain`` run is the
retrained reference itself (a sweep's reference ensemble): it is shown in
the reference row, never as a candidate.

The figures that need models rebuild them: the original and retrained models
from the keyed checkpoint cache (``pipeline.prepare``, training them if the
cache lacks them), a run's unlearned model from its stored checkpoint. UNSC's
retained space and NatMU's hybrids are recomputed with the run's own
parameters and seed through the methods' own code
(``UNSC._retained_space``; NatMU's partner choice and ``_gallery``), which
are deterministic, so they are the ones the run used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from unlearn_core.metrics import HEADLINE_METRICS

#: The report's metric columns: the headline metrics, then the run's gap, time and speed-up.
COLUMNS = (*HEADLINE_METRICS, "avg_gap", "seconds", "rte")
REFERENCE_METHOD = "retrain"


@dataclass
class Group:
    """Runs of one method with the same parameters in one setting (one per seed)."""

    method: str
    params: dict
    runs: list[dict] = field(default_factory=list)
    label: str = ""

    @property
    def seeds(self) -> list[int]:
        return sorted({int(r.get("seed") or 0) for r in self.runs})

    @property
    def first(self) -> dict:
        """The run of the lowest seed (the one drawn in figures that show one run per group)."""
        return min(self.runs, key=lambda r: (int(r.get("seed") or 0), r["id"]))


def settings_of(runs: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Runs by ``(dataset, model, forget)``, settings in the order of their first run id."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for run in sorted(runs, key=lambda r: r["id"]):
        out.setdefault((run["dataset"], run["model"], run["forget"]), []).append(run)
    return out


def _param_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_runs(runs: list[dict]) -> list[Group]:
    """The candidate groups of one setting (``retrain`` runs left out), labelled ``method`` or ``method k=v``.

    A label names only the parameters that differ between groups of the same method.
    """
    groups: dict[tuple[str, str], Group] = {}
    for run in sorted(runs, key=lambda r: r["id"]):
        if run["method"] == REFERENCE_METHOD:
            continue
        key = (run["method"], json.dumps(run.get("params") or {}, sort_keys=True))
        groups.setdefault(key, Group(run["method"], dict(run.get("params") or {}))).runs.append(run)
    out = list(groups.values())
    for group in out:
        siblings = [g for g in out if g.method == group.method]
        varied = sorted({k for g in siblings for k in set(g.params) | set(group.params)
                         if g.params.get(k) != group.params.get(k)})
        group.label = " ".join([group.method, *(f"{k}={_param_text(group.params.get(k))}" for k in varied)])
    return out


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if np.isfinite(value) else None


def _per_seed_reference(runs: list[dict], which: str) -> dict[int, dict]:
    """One ``original`` or ``retrained`` metrics dict per seed (every run of a seed shares the same models)."""
    out: dict[int, dict] = {}
    for run in sorted(runs, key=lambda r: r["id"]):
        report = run["report"]
        metrics = report.get(which)
        if not metrics or int(run.get("seed") or 0) in out:
            continue
        entry = dict(metrics)
        if which == "retrained":
            entry["seconds"] = report.get("retrain_seconds")
            entry["avg_gap"] = 0.0
        out[int(run.get("seed") or 0)] = entry
    return out


def metric_rows(runs: list[dict]) -> list[dict]:
    """The setting's table: the original, the retrained reference, then each group, with stats per column.

    Each row holds ``label``, ``kind`` (``original``, ``reference`` or ``run``), ``n``, ``seeds``,
    ``run_ids``, ``in_scope`` and ``stats`` (per column of :data:`COLUMNS`, the :func:`summarize` dict).
    """
    from unlearn_core.sweeps import summarize

    rows = []
    for which, label, kind in (("original", "original", "original"),
                               ("retrained", "retrained (reference)", "reference")):
        per_seed = _per_seed_reference(runs, which)
        if not per_seed:
            continue
        stats = {c: summarize([_number(m.get(c)) for m in per_seed.values()]) for c in COLUMNS
                 if not (which == "original" and c in ("seconds", "rte"))}
        reference_ids = [r["id"] for r in runs if r["method"] == REFERENCE_METHOD] if kind == "reference" else []
        rows.append({"label": label, "kind": kind, "n": len(per_seed), "seeds": sorted(per_seed),
                     "run_ids": reference_ids, "in_scope": True, "stats": stats})
    for group in group_runs(runs):
        stats = {}
        for column in COLUMNS:
            values = [(r["report"] if column in ("avg_gap", "seconds", "rte") else
                       r["report"].get("unlearned") or {}).get(column) for r in group.runs]
            if column == "rte":
                values = [v if r["report"].get("rte_comparable") is not False else None
                          for v, r in zip(values, group.runs)]
            stats[column] = summarize([_number(v) for v in values])
        rows.append({"label": group.label, "kind": "run", "n": len(group.runs), "seeds": group.seeds,
                     "run_ids": [r["id"] for r in group.runs],
                     "in_scope": all(r["report"].get("in_scope") is not False for r in group.runs),
                     "scope_reason": next((r["report"].get("in_scope_reason") for r in group.runs
                                           if r["report"].get("in_scope") is False), None),
                     "stats": stats})
    return rows


def class_shift(runs: list[dict]) -> tuple[pd.DataFrame, tuple[int, ...]]:
    """Per-class test accuracy change vs the original (points): the reference row, then one row per group.

    Each run is compared with its own seed's original; a group's row is the mean over its seeds.
    """
    first = runs[0]["report"]
    names = [str(n) for n in first.get("class_names") or range(len(first["original"]["per_class_test"]))]

    def change(run, which):
        values = (run["report"].get(which) or {}).get("per_class_test")
        original = run["report"]["original"].get("per_class_test")
        if values is None or original is None or len(values) != len(names) or len(original) != len(names):
            return None
        return np.asarray(values, dtype=float) - np.asarray(original, dtype=float)

    rows, labels = [], []
    seen: dict[int, np.ndarray] = {}
    for run in runs:
        seed = int(run.get("seed") or 0)
        if seed not in seen and (delta := change(run, "retrained")) is not None:
            seen[seed] = delta
    if seen:
        rows.append(np.mean(list(seen.values()), axis=0))
        labels.append("retrained (reference)")
    for group in group_runs(runs):
        deltas = [d for r in group.runs if (d := change(r, "unlearned")) is not None]
        if deltas:
            rows.append(np.mean(deltas, axis=0))
            labels.append(group.label)
    frame = pd.DataFrame(np.vstack(rows) if rows else np.zeros((0, len(names))), index=labels, columns=names)
    return frame, tuple(int(c) for c in first.get("forgotten_classes") or ())


# -- models -----------------------------------------------------------------------------------------------------
def prepare_for(run: dict, device=None, progress=None):
    """The run's setting prepared (data, split, original and retrained models) with the run's training recipe."""
    from unlearn_core.pipeline import prepare
    from unlearn_core.training import TrainRecipe, default_recipe

    recipe_dict = (run.get("config") or {}).get("recipe")
    recipe = TrainRecipe(**recipe_dict) if recipe_dict else default_recipe(run["dataset"])
    return prepare(run["dataset"], run["model"], run["forget"], int(run.get("seed") or 0), device, recipe=recipe,
                   progress=progress)


def run_model(run: dict, bundle, device):
    """A stored run's unlearned model, rebuilt from its checkpoint; ``None`` when it has none (pruned, missing)."""
    from unlearn_core.checkpoints import load_state_strict, read_checkpoint
    from unlearn_core.errors import UnlearnError
    from unlearn_core.models import build_for_dataset

    path = run.get("checkpoint_path")
    if not path:
        return None
    try:
        network = build_for_dataset(run["model"], bundle, seed=int(run.get("seed") or 0))
        load_state_strict(network, read_checkpoint(path)["state_dict"])
    except (OSError, UnlearnError):
        return None
    return network.to(device).eval()


def aligned_embeddings(setup, models: dict[str, object], max_points: int, reducer: str = "pca") -> dict:
    """One shared 2-D map of the original and every given unlearned model, with the retrained model aligned.

    As on the Embeddings page: the "before" (original) and the unlearned models' penultimate features on the
    same training samples are fitted together (:func:`unlearn_core.embeddings.joint_embedding`); the
    retrained model's features are first Procrustes-aligned on the remaining samples, then placed in that
    map. Returns ``{"idx", "labels", "forget_mask", "coords": {name: (N, 2)}}``.
    """
    import torch

    from unlearn_core.embeddings import features_of, joint_embedding, sample_points

    bundle, split = setup.bundle, setup.split
    labels_all = bundle.train_y.numpy()
    idx = sample_points(labels_all, max_points, seed=0, include=split.forget_idx)
    images = bundle.train_x[torch.as_tensor(idx, dtype=torch.long)]
    forget_mask = np.isin(idx, split.forget_idx)
    features = {"before": features_of(setup.original.model, images, setup.device)}
    for name, model in models.items():
        features[name] = features_of(model, images, setup.device)
    fit_on = list(features)
    if setup.retrained is not None:
        features["retrained"] = features_of(setup.retrained.model, images, setup.device)
    coords = joint_embedding(features, reducer, seed=0, fit_on=fit_on,
                             align={"retrained": ~forget_mask} if "retrained" in features else None)
    return {"idx": idx, "labels": labels_all[idx], "forget_mask": forget_mask, "coords": coords}


def unsc_space(setup, params: dict):
    """UNSC's retained space for ``params`` on this setup (``UNSC._retained_space``: the run's own space)."""
    from unlearn_core.methods import get_method

    unsc = get_method("unsc")
    return unsc()._retained_space(setup.task(), unsc.resolve_params(params))


def natmu_gallery(setup, params: dict) -> dict:
    """The hybrids gallery of a NatMU run with ``params`` on this setup, as ``NatMU.unlearn`` builds it.

    The same steps and seeds as the method: the frozen original's softmax on the forget set, partners from
    :func:`unlearn_core.hybrids.select_partners` with ``default_rng(seed * 1000 + 17)``, the hybrids of
    :func:`unlearn_core.hybrids.build_hybrids`, then the method's own gallery choice.
    """
    from unlearn_core.hybrids import build_hybrids, select_partners
    from unlearn_core.methods import get_method
    from unlearn_core.methods.natmu import _gallery
    from unlearn_core.metrics import softmax
    from unlearn_core.training import predict_logits

    resolved = get_method("natmu").resolve_params(params)
    task = setup.task()
    forget_x, forget_y = task.forget_data()
    retain_x, retain_y = task.retain_data()
    probs = softmax(predict_logits(task.frozen_original(), forget_x, task.device))
    rng = np.random.default_rng(task.seed * 1000 + 17)
    plan = select_partners(probs, forget_y.numpy(), retain_y.numpy(), resolved["num_hybrids"],
                           forgotten_classes=setup.split.forgotten_classes, balance=not setup.split.is_classwise,
                           rng=rng)
    forget_np, retain_np = forget_x.numpy(), retain_x.numpy()
    hybrids = build_hybrids(forget_np, retain_np, plan, resolved["delta"])
    return _gallery(task, plan, probs, forget_np, retain_np, hybrids, resolved["delta"])


def png_data_uri(image: np.ndarray, scale: int = 1) -> str:
    """A ``uint8`` image (``(C, H, W)``, ``(H, W, C)`` or ``(H, W)``) as an inline ``data:image/png`` URI."""
    import base64
    import io

    from PIL import Image

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.transpose(array, (1, 2, 0))
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if scale > 1:
        array = np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.astype(np.uint8))).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
