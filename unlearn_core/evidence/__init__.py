"""Deeper evidence of forgetting: feature probes, relearn time, unlearning curves, a retrain distinguisher.

Accuracy on the forget set says what the head answers, not what the model
still knows. These measurements look further (docs/EVIDENCE.md):

- :func:`feature_probe` (``probe.py``): a linear (logistic regression) and a
  k-NN probe on the frozen penultimate features, as in "Are we truly
  forgetting?" (UUEF): if a probe still finds the forgotten class in the
  features, the method only changed the head.
- :func:`relearn_time` (``relearn.py``): how many fine-tuning steps on a few
  forget samples bring the forget accuracy half way back to the original's
  ("relearn time", as used by e.g. Golatkar et al. and in Lynch et al.'s
  robustness checks).
- :class:`CurveRecorder` (``curves.py``): Acc_f, Acc_r, FA and the method's
  loss at every epoch (or every k steps) on fixed small subsets, fed by the
  training loops through :meth:`unlearn_core.progress.Reporter.observe`.
- :func:`retrain_distinguisher_score` (``distinguisher.py``): a
  forgetting-quality score written from the NeurIPS 2023 challenge's prose,
  from K unlearned and K retrained models' logit-scaled confidences.
- :func:`linear_cka` and :func:`layer_grams` (``cka.py``): linear CKA per
  layer against the original and the retrained model (evidence ``cka``).
- :func:`relearn_from_retain` (``relearn.py``): how much forget accuracy
  fine-tuning on retained samples alone brings back (``relearn_retain``).

Ensemble verdicts, from K unlearned and K retrained models of one forget set
(``verdicts.py``: :func:`run_outputs` per run, :func:`ensemble_verdicts` per
cell):

- :func:`forget_quality_from_confidences` (``forget_quality.py``): the
  NeurIPS 2023 competition's forget score as its released ``metric.py``
  computes it, and :func:`competition_score` (times the RA and TA ratios);
- :func:`klom_by_split` (``klom.py``): KL divergence of margins per sample (EasyDUB);
- :func:`ulira_by_split` (``ulira.py``): a leave-one-out per-example likelihood-ratio
  attack, unlearned vs retrained (U-LiRA in ensemble form).

Each measurement declares its parameters as :class:`~unlearn_core.methods.base.Param`
data (``PROBE_PARAMS``, ``RELEARN_PARAMS``, ``CURVE_PARAMS``,
``CKA_PARAMS``, ``RELEARN_RETAIN_PARAMS``, ``DISTINGUISHER_PARAMS``;
``request.py``). :func:`collect_evidence`
(``collect.py``) runs the requested ones for a finished run; the pipeline and
the CLI call it through ``evidence=``.
"""

from unlearn_core.evidence.cka import cka_by_layer, cka_from_grams, layer_grams, linear_cka
from unlearn_core.evidence.collect import cka_samples, collect_evidence, curve_recorder, format_evidence
from unlearn_core.evidence.curves import CurveRecorder, format_curves
from unlearn_core.evidence.distinguisher import (distinguisher_from_models, forget_confidences,
                                                 logit_scaled_confidence, retrain_distinguisher_score)
from unlearn_core.evidence.forget_quality import (CompetitionScore, ForgetQuality, competition_score,
                                                  forget_quality_from_confidences)
from unlearn_core.evidence.klom import KLoM, binned_kl, klom_by_split, klom_per_sample
from unlearn_core.evidence.probe import ProbeSplit, feature_probe, probe_accuracies, probe_split
from unlearn_core.evidence.relearn import (RelearnSets, relearn_from_retain, relearn_sets, relearn_time,
                                           retain_relearn_sets)
from unlearn_core.evidence.request import (ALL_KINDS, CKA_PARAMS, CURVE_PARAMS, DISTINGUISHER_PARAMS, KINDS, PARAMS,
                                           PROBE_PARAMS, RELEARN_PARAMS, RELEARN_RETAIN_PARAMS, EvidenceError,
                                           EvidenceRequest, describe_params, resolve_params)
from unlearn_core.evidence.ulira import ULiRA, roc_curve, roc_summary, ulira_by_split, ulira_scores
from unlearn_core.evidence.verdicts import (EnsembleVerdicts, RunOutputs, ensemble_verdicts, run_outputs,
                                            verdict_samples)

__all__ = [
    "ALL_KINDS", "CKA_PARAMS", "CURVE_PARAMS", "CompetitionScore", "CurveRecorder", "DISTINGUISHER_PARAMS",
    "EnsembleVerdicts", "EvidenceError", "EvidenceRequest", "ForgetQuality", "KINDS", "KLoM", "PARAMS",
    "PROBE_PARAMS", "ProbeSplit", "RELEARN_PARAMS", "RELEARN_RETAIN_PARAMS", "RelearnSets", "RunOutputs", "ULiRA",
    "binned_kl", "cka_by_layer", "cka_from_grams", "cka_samples", "collect_evidence", "competition_score",
    "curve_recorder", "describe_params", "distinguisher_from_models", "ensemble_verdicts", "feature_probe",
    "forget_confidences", "forget_quality_from_confidences", "format_curves", "format_evidence", "klom_by_split",
    "klom_per_sample", "layer_grams", "linear_cka", "logit_scaled_confidence", "probe_accuracies", "probe_split",
    "relearn_from_retain", "relearn_sets", "relearn_time", "resolve_params", "retain_relearn_sets",
    "retrain_distinguisher_score", "roc_curve", "roc_summary", "run_outputs", "ulira_by_split", "ulira_scores",
    "verdict_samples",
]
