"""A run's evidence section: :func:`collect_evidence` runs the requested measurements, :func:`format_evidence` prints them."""

from __future__ import annotations

import time

from unlearn_core.evidence._common import _accuracy
from unlearn_core.evidence.curves import CurveRecorder, format_curves
from unlearn_core.evidence.probe import feature_probe, probe_split
from unlearn_core.evidence.relearn import relearn_sets, relearn_time
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
    if evidence.get("curves"):
        lines.append("unlearning curve (fixed evaluation subsets; step 0 = original):")
        lines += ["  " + line for line in format_curves(evidence["curves"])]
    return lines
