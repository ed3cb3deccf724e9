"""A run's evidence section: :func:`collect_evidence` takes the measurements, :func:`format_evidence` prints them."""

from __future__ import annotations

import time

import numpy as np

from unlearn_core.evidence._common import _accuracy, _subsample, _take
from unlearn_core.evidence.cka import cka_by_layer, layer_grams
from unlearn_core.evidence.curves import CurveRecorder, format_curves
from unlearn_core.evidence.probe import feature_probe, probe_split
from unlearn_core.evidence.relearn import relearn_from_retain, relearn_sets, relearn_time, retain_relearn_sets
from unlearn_core.evidence.request import EvidenceError, EvidenceRequest


def curve_recorder(setup, request: EvidenceRequest | None) -> CurveRecorder | None:
    """A recorder for a prepared setup when ``request`` asks for curves, else None."""
    if request is None or "curves" not in request.kinds:
        return None
    return CurveRecorder(setup.bundle, setup.split, setup.device, request.params["curves"], setup.seed)


def _models(setup, run) -> dict:
    models = {"original": setup.original.model, "unlearned": run.model}
    if setup.retrained is not None:
        models["retrained"] = setup.retrained.model
    return models


def _cached(setup, key: tuple, compute):
    """Reference models' evidence is the same for every method of a setup: computed once per setup."""
    store = setup._outputs
    full = ("evidence",) + key
    if full not in store:
        store[full] = compute()
    return store[full]


def collect_evidence(setup, run, kinds, params: dict | None = None) -> dict:
    """The evidence section of a run's report: per-model probe and relearn results and the run's curves.

    ``setup`` is a :class:`unlearn_core.pipeline.Setup`, ``run`` a
    :class:`unlearn_core.pipeline.MethodRun`; ``kinds`` and ``params`` are
    what :meth:`EvidenceRequest.parse` takes (or a request). Curves are read
    from ``run.evidence`` (recorded while the method ran; ask ``run_method``
    for them). The original's and the retrained model's results are cached on
    the setup, so a bench over many methods pays for them once.
    """
    request = EvidenceRequest.parse(kinds, params)
    if request is None:
        return {}
    out: dict = {"kinds": list(request.kinds), "params": request.params, "seconds": {}}
    models = _models(setup, run)
    if "probe" in request.kinds:
        started = time.perf_counter()
        p = request.params["probe"]
        key = tuple(sorted(p.items()))
        split_ = _cached(setup, ("probe-split", key), lambda: probe_split(setup.bundle, setup.split, p, setup.seed))
        out["probe"] = {}
        for which, model in models.items():
            compute = lambda model=model: feature_probe(model, setup.bundle, setup.split, setup.device, p,  # noqa
                                                        setup.seed, split_)
            out["probe"][which] = compute() if which == "unlearned" else _cached(setup, ("probe", which, key),
                                                                                  compute)
        out["seconds"]["probe"] = time.perf_counter() - started
    if "relearn" in request.kinds:
        started = time.perf_counter()
        p = request.params["relearn"]
        key = tuple(sorted(p.items()))
        sets = _cached(setup, ("relearn-sets", key), lambda: relearn_sets(setup.bundle, setup.split, p, setup.seed))
        original_acc = _cached(setup, ("relearn-original-acc", key), lambda: _accuracy(
            setup.original.model, sets.eval_images, sets.eval_labels, setup.device))
        out["relearn"] = {}
        for which, model in models.items():
            compute = lambda model=model: relearn_time(model, original_acc, setup.bundle, setup.split,  # noqa
                                                       setup.device, p, setup.seed, sets)
            out["relearn"][which] = compute() if which == "unlearned" else _cached(setup, ("relearn", which, key),
                                                                                    compute)
        out["seconds"]["relearn"] = time.perf_counter() - started
    if "curves" in request.kinds:
        curves = (getattr(run, "evidence", None) or {}).get("curves")
        if curves is None:
            raise EvidenceError("curves are recorded while the method runs: pass evidence to run_method as well")
        out["curves"] = curves
        out["seconds"]["curves"] = curves["seconds"]
    if "cka" in request.kinds:
        started = time.perf_counter()
        out["cka"] = _cka_section(setup, models, request.params["cka"])
        out["seconds"]["cka"] = time.perf_counter() - started
    if "relearn_retain" in request.kinds:
        started = time.perf_counter()
        p = request.params["relearn_retain"]
        key = tuple(sorted(p.items()))
        sets = _cached(setup, ("relearn-retain-sets", key),
                       lambda: retain_relearn_sets(setup.bundle, setup.split, p, setup.seed))
        original_acc = _cached(setup, ("relearn-retain-original-acc", key), lambda: _accuracy(
            setup.original.model, sets.eval_images, sets.eval_labels, setup.device))
        out["relearn_retain"] = {}
        for which, model in models.items():
            compute = lambda model=model: relearn_from_retain(model, original_acc, setup.bundle,  # noqa: E731
                                                              setup.split, setup.device, p, setup.seed, sets)
            out["relearn_retain"][which] = compute() if which == "unlearned" else _cached(
                setup, ("relearn-retain", which, key), compute)
        out["seconds"]["relearn_retain"] = time.perf_counter() - started
    return out


def cka_samples(setup, params: dict) -> dict[str, np.ndarray]:
    """Seeded forget and retained training indices (``samples`` each) the CKA section compares layers on."""
    rng = np.random.default_rng(setup.seed * 1000 + 61)
    return {"forget": _subsample(setup.split.forget_idx, params["samples"], rng),
            "retain": _subsample(setup.split.retain_idx, params["samples"], rng)}


def _cka_section(setup, models: dict, params: dict) -> dict:
    """Linear CKA per layer of the unlearned model against the original (and the retrained) model.

    ``{"layers": [...], "forget": {"original": [...], "retrained": [...]},
    "retain": {...}, "n_forget", "n_retain"}``: one value per tracked layer
    (``Conv2d``/``Linear`` outputs) on forget and on retained training
    samples (:mod:`unlearn_core.evidence.cka`).
    """
    key = tuple(sorted(params.items()))
    samples = _cached(setup, ("cka-samples", key), lambda: cka_samples(setup, params))
    out: dict = {"layers": None}
    for name, idx in samples.items():
        if len(idx) < 2:
            raise EvidenceError(f"CKA needs at least 2 {name} samples")
        images = _take(setup.bundle.train_x, idx)
        references = {which: _cached(setup, ("cka-grams", which, name, key),
                                     lambda model=model: layer_grams(model, images, setup.device))
                      for which, model in models.items() if which != "unlearned"}
        compared = cka_by_layer(layer_grams(models["unlearned"], images, setup.device), references)
        out["layers"] = compared.pop("layers")
        out[name] = compared
        out[f"n_{name}"] = int(len(idx))
    return out


def format_evidence(evidence: dict) -> list[str]:
    """The evidence section as text lines (probe and relearn per model, then the curve table)."""
    lines: list[str] = []

    def fmt(value):
        return "     -" if value is None else f"{value:6.2f}"

    probe, relearn = evidence.get("probe"), evidence.get("relearn")
    if probe or relearn:
        header = f"{'evidence':10s}"
        if probe:
            header += f" {'probe_f':>7s} {'probe_r':>7s} {'knn_f':>7s}"
        if relearn:
            header += f" {'relearn steps (to target %)':>28s}"
        lines.append(header)
        for which in ("original", "unlearned", "retrained"):
            row = f"{which:10s}"
            if probe and which in probe:
                row += f" {fmt(probe[which]['probe_forget']):>7s} {fmt(probe[which]['probe_retain']):>7s} " \
                       f"{fmt(probe[which]['knn_forget']):>7s}"
            if relearn and which in relearn:
                r = relearn[which]
                steps = (f"not within {r['max_steps']}" if r["relearn_capped"]
                         else "diverged" if r.get("diverged") else str(r["relearn_steps"]))
                row += f" {steps + ' (' + format(r['target_acc'], '.1f') + ')':>28s}"
            lines.append(row)
    if evidence.get("cka"):
        cka = evidence["cka"]
        lines.append("linear CKA per layer of the unlearned model (forget / retain samples):")
        refs = [r for r in ("original", "retrained") if r in cka.get("forget", {})]
        lines.append(f"  {'layer':24s} " + " ".join(f"{r[:4] + '_' + s[0]:>8s}" for s in ("forget", "retain")
                                                         for r in refs))
        for i, layer in enumerate(cka["layers"]):
            values = [cka[s][r][i] for s in ("forget", "retain") for r in refs]
            lines.append(f"  {layer[:24]:24s} " + " ".join("       -" if v is None else f"{v:8.3f}" for v in values))
    if evidence.get("relearn_retain"):
        lines.append("relearn from retained data only (forget accuracy %, start -> end, share of the gap back):")
        for which in ("original", "unlearned", "retrained"):
            r = evidence["relearn_retain"].get(which)
            if r:
                share = "-" if r["recovered_fraction"] is None else f"{r['recovered_fraction']:.2f}"
                lines.append(f"  {which:10s} {r['start_acc']:6.2f} -> {r['final_acc']:6.2f} after {r['steps']} steps"
                             f"  ({share}){'  diverged' if r['diverged'] else ''}")
    if evidence.get("curves"):
        lines.append("unlearning curve (fixed evaluation subsets; step 0 = original):")
        lines += ["  " + line for line in format_curves(evidence["curves"])]
    return lines
