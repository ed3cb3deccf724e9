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

Each measurement declares its parameters as :class:`~unlearn_core.methods.base.Param`
data (``PROBE_PARAMS``, ``RELEARN_PARAMS``, ``CURVE_PARAMS``,
``DISTINGUISHER_PARAMS``; ``request.py``). :func:`collect_evidence`
(``collect.py``) runs the requested ones for a finished run; the pipeline and
the CLI call it through ``evidence=``.
"""

from unlearn_core.evidence.collect import collect_evidence, curve_recorder, format_evidence
from unlearn_core.evidence.curves import CurveRecorder, format_curves
from unlearn_core.evidence.distinguisher import (distinguisher_from_models, forget_confidences,
                                                 logit_scaled_confidence, retrain_distinguisher_score)
from unlearn_core.evidence.forget_quality import (CompetitionScore, ForgetQuality, competition_score,
                                                  forget_quality_from_confidences)
from unlearn_core.evidence.probe import ProbeSplit, feature_probe, probe_accuracies, probe_split
from unlearn_core.evidence.relearn import RelearnSets, relearn_sets, relearn_time
from unlearn_core.evidence.request import (CURVE_PARAMS, DISTINGUISHER_PARAMS, KINDS, PARAMS, PROBE_PARAMS,
                                           RELEARN_PARAMS, EvidenceError, EvidenceRequest, describe_params,
                                           resolve_params)

__all__ = [
    "CURVE_PARAMS", "CompetitionScore", "DISTINGUISHER_PARAMS", "ForgetQuality", "competition_score",
    "forget_quality_from_confidences", "KINDS", "PARAMS", "PROBE_PARAMS", "RELEARN_PARAMS", "CurveRecorder",
    "EvidenceError", "EvidenceRequest", "ProbeSplit", "RelearnSets", "collect_evidence", "curve_recorder",
    "describe_params", "distinguisher_from_models", "feature_probe", "forget_confidences", "format_curves",
    "format_evidence", "logit_scaled_confidence", "probe_accuracies", "probe_split", "relearn_sets", "relearn_time",
    "resolve_params", "retrain_distinguisher_score",
]
