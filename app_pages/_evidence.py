"""The evidence a run recorded (``report["evidence"]``, docs/EVIDENCE.md), drawn under the run on Results."""

from __future__ import annotations

import streamlit as st


def _number(value, decimals: int = 1) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def show_evidence(evidence: dict, run: dict) -> None:
    from app_pages import _shared
    from unlearn_core.figures import cka_layers, probe_bars, relearn_curves, relearn_retain_curves, unlearning_curves

    method = run["method"]
    kinds = [k for k in ("probe", "relearn", "curves", "cka", "relearn_retain") if evidence.get(k)]
    st.markdown(f"**Evidence of forgetting** for run #{run['id']} ({', '.join(kinds) or 'none recorded'})")
    if evidence.get("probe"):
        st.plotly_chart(probe_bars(evidence["probe"], method), width="stretch", key="evidence_probe",
                        config=_shared.chart_config("probe", method, run["id"]))
        retrained = (evidence["probe"].get("retrained") or {}).get("probe_forget")
        original = (evidence["probe"].get("original") or {}).get("probe_forget")
        st.caption("A linear and a k-NN probe trained on each model's frozen features, read on the forget set. "
                   f"The retrained model never saw it: its {_number(retrained)} % is what generic features give. "
                   "An unlearned model near the original's "
                   f"{_number(original)} % and well above the retrained one's still carries the data in its "
                   "features; when the two references are close, the probe cannot tell (docs/EVIDENCE.md).")
    if evidence.get("relearn"):
        relearn = evidence["relearn"]
        cols = st.columns(3)
        for col, which in zip(cols, ("original", "unlearned", "retrained")):
            values = relearn.get(which) or {}
            steps = values.get("relearn_steps")
            text = "–" if steps is None else str(steps)
            if steps is None and values.get("relearn_capped"):
                text = f"> {values.get('max_steps')}"
            elif steps is None and values.get("diverged"):
                text = "diverged"
            col.metric(f"relearn steps: {which}", text,
                       help="Fine-tuning steps on a few forget samples until forget accuracy is half way back to "
                            "the original's. Fewer than the retrained model = the knowledge was only hidden.")
        if any((relearn.get(w) or {}).get("accuracy_by_step") for w in ("original", "unlearned", "retrained")):
            st.plotly_chart(relearn_curves(relearn, method), width="stretch", key="evidence_relearn",
                            config=_shared.chart_config("relearn", method, run["id"]))
    if evidence.get("curves"):
        curves = evidence["curves"]
        st.plotly_chart(unlearning_curves(curves, method), width="stretch", key="evidence_curves",
                        config=_shared.chart_config("unlearning-curve", method, run["id"]))
        st.caption(f"Evaluated on fixed subsets ({curves.get('n_forget_test') or curves.get('n_forget_train')} forget "
                   f"and {curves.get('n_retain_test')} retained test samples) after "
                   + ("each epoch" if not curves.get("every") else f"every {curves['every']} steps")
                   + "; step 0 is the original model. A falling Acc_r shows over-unlearning while it happens.")
    if evidence.get("cka"):
        cka = evidence["cka"]
        st.plotly_chart(cka_layers(cka, method), width="stretch", key="evidence_cka")
        st.caption(f"Linear CKA between the unlearned model's layer outputs and each reference's, on "
                   f"{cka.get('n_forget', '?')} forget and {cka.get('n_retain', '?')} retained training samples. "
                   "Solid near 1 on forget samples: that layer still computes what the original computed on the "
                   "forgotten data (hidden, not forgotten); a method that changed only the head keeps 1 in every "
                   "layer below it. Dotted near 1: the layer looks like the retrained model's.")
    if evidence.get("relearn_retain"):
        relearn = evidence["relearn_retain"]
        cols = st.columns(3)
        for col, which in zip(cols, ("original", "unlearned", "retrained")):
            values = relearn.get(which) or {}
            start, final = values.get("start_acc"), values.get("final_acc")
            delta = None if start is None or final is None else f"{final - start:+.1f} points"
            col.metric(f"forget acc. after retain-only fine-tuning: {which}",
                       "–" if final is None else f"{final:.1f} %" + ("  (diverged)" if values.get("diverged") else ""),
                       delta, delta_color="inverse",
                       help="Fine-tuning on retained samples alone, no forget sample (the 'dormant to deleted' "
                            "test, arXiv 2505.22310). Forget accuracy that comes back well above the retrained "
                            "model's was only suppressed.")
        if any((relearn.get(w) or {}).get("accuracy_by_step") for w in ("original", "unlearned", "retrained")):
            st.plotly_chart(relearn_retain_curves(relearn, method), width="stretch", key="evidence_relearn_retain")


def _verdict_details(store, tag: str, cell_id: str) -> dict | None:
    """The cell's per-sample verdicts, read once per session (None: the cell has none)."""
    from unlearn_core.errors import UnlearnError
    from unlearn_core.sweeps import cell_verdict_details

    memo = st.session_state.setdefault("_cell_verdicts", {})
    if memo.get((tag, cell_id)) is None:  # a None is read again: an ensemble may have finished since
        try:
            memo[(tag, cell_id)] = cell_verdict_details(store, tag, cell_id)
        except UnlearnError:
            memo[(tag, cell_id)] = None
    return memo[(tag, cell_id)]


def _draw_verdicts(details: dict, run: dict, source: str) -> None:
    from unlearn_core.figures import klom_histogram, ulira_roc

    st.markdown(f"**Against the retrained ensemble** ({source}, protocol `{details['protocol']}`: "
                f"{details['k_unlearned']} runs of this cell, {details['k_retrained']} retrained models; the "
                f"attack and forget quality use {details['k_used']} of each)")
    st.plotly_chart(klom_histogram(details["klom"], run["method"], details["k_used"]), width="stretch",
                    key="evidence_klom")
    st.plotly_chart(ulira_roc(details["roc"], run["method"]), width="stretch", key="evidence_ulira")
    st.caption(f"Forget quality (the competition's released metric.py) {details['forget_quality']:.3f}. KLoM: per "
               "sample, the KL divergence between the margins of this cell's models and the retrained models' "
               "(EasyDUB; 0 = alike). ROC: a per-sample likelihood-ratio attack (U-LiRA) telling this cell's models "
               "from the retrained ones, each target held out of the fit; the diagonal is chance.")


def show_cell_verdicts(store, run: dict, uploaded: bool = False) -> None:
    """The run's cell against a retrained ensemble: KLoM per sample and the U-LiRA ROC.

    From the run's own sweep when it kept its runs' outputs (3+ seeds and 3+ retrained models); otherwise from
    an ensemble computed for this run's cell (:func:`unlearn_core.sweeps.ensemble_spec`, the competition's
    protocol), which one button queues as a job with progress when there is none yet.
    """
    config = run.get("config") or {}
    tag, cell_id = config.get("sweep"), config.get("sweep_cell")
    if tag and cell_id and config.get("sweep_role") == "run":
        details = _verdict_details(store, tag, cell_id)
        if details is not None:
            _draw_verdicts(details, run, f"sweep `{tag}`")
            return
        st.caption(f"Sweep `{tag}` has no ensemble verdicts for this cell: they need the runs' outputs of at least "
                   "3 seeds and 3 retrained models on one forget set (run the sweep with `--seeds 0,1,2 "
                   "--retrains 3` or more, or compute this run's ensemble below).")
    if run["method"] == "retrain" or config.get("sweep_role") == "reference":
        return
    _ensemble_panel(store, run, uploaded)


def _ensemble_panel(store, run: dict, uploaded: bool) -> None:
    from app_pages import _shared
    from unlearn_app.sweepjobs import submit_sweep
    from unlearn_core.errors import UnlearnError
    from unlearn_core.sweeps import ENSEMBLE_DEFAULT_K, ENSEMBLE_K_CHOICES, cells, ensemble_spec, sweep_cost

    owner = _shared.session_owner() if _shared.shared() else None
    try:
        specs = {k: ensemble_spec(run["dataset"], run["model"], run["forget"], run["method"], run.get("params"),
                                  int(run.get("seed") or 0), k, owner) for k in ENSEMBLE_K_CHOICES}
    except UnlearnError as error:
        st.caption(f"No ensemble verdicts for run #{run['id']}: {error}")
        return
    computed = [k for k in sorted(specs, reverse=True) if store.get_sweep(specs[k].tag) is not None
                and _verdict_details(store, specs[k].tag, cells(specs[k])[0].cell_id()) is not None]
    if computed:  # the largest ensemble already computed
        spec = specs[computed[0]]
        _draw_verdicts(_verdict_details(store, spec.tag, cells(spec)[0].cell_id()), run,
                       f"computed for this run's cell, seeds {spec.seeds[0]}-{spec.seeds[-1]}")
    running = [job for job in _shared.runner().active("ensemble", _shared.session_owner())
               if job.snapshot().meta.get("tag") in {s.tag for s in specs.values()}]
    if running:
        _shared.jobs_panel("ensemble", title="Ensemble being computed")
        return
    title = "a larger retrained ensemble" if computed else "the retrained ensemble"
    with st.expander(f"Compute {title} for this run's cell", icon=":material/groups:", expanded=False):
        st.caption("KLoM per sample and a per-sample membership attack (U-LiRA) compare K runs of this method "
                   "with these parameters against K retrained models (the competition's protocol: every run starts "
                   f"from the original model of seed {int(run.get('seed') or 0)}, the method's seed varies). "
                   "docs/EVIDENCE.md measures how stable the methods' rank is at K = 4, 8 and 16.")
        if uploaded:
            st.info("The ensemble trains its own retrained models: it runs on the trained original, not an "
                    "uploaded one. Switch to the trained original on **Setup** to compute it.")
            return
        k = st.selectbox("Models per family (K)", ENSEMBLE_K_CHOICES,
                         index=ENSEMBLE_K_CHOICES.index(ENSEMBLE_DEFAULT_K), key="w_ensemble_k")
        spec = specs[k]
        if k in computed:
            st.caption(f"The ensemble at K = {k} is computed" + (" and drawn above." if k == computed[0] else "."))
            return
        try:
            cost = sweep_cost(spec, store)
        except UnlearnError as error:
            _shared.show_error(error)
            return
        st.caption(f"{k} runs of {run['method']} (seeds {spec.seeds[0]}-{spec.seeds[-1]}) and {k} retrained "
                   f"models; not yet stored or cached: {cost.describe()}.")
        if st.button(f"Compute the ensemble (K = {k})", icon=":material/play_arrow:", key="w_ensemble_go"):
            try:
                submit_sweep(_shared.runner(), spec, store, _shared.session_owner(), cost.trainings,
                             kind="ensemble", label=f"ensemble K={k} for run #{run['id']} ({run['method']})")
            except UnlearnError as error:
                _shared.show_error(error)
                return
            st.toast(f"Queued the ensemble for run #{run['id']} ({cost.describe()}).")
            st.rerun()
