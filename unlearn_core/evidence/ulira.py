"""A per-example likelihood-ratio attack that tells unlearned from retrained models (U-LiRA, ensemble form).

In the spirit of Hayes et al., "Inexact unlearning needs more careful
evaluations to avoid a false sense of privacy" (SaTML 2025), whose U-LiRA
fits, per example, one Gaussian to the logit-scaled confidence of shadow
models that trained on the example and then unlearned it and one to shadow
models retrained without it, and asks of a target model which Gaussian its
confidence is likelier under (the LiRA test of Carlini et al., 2022, with
"unlearned" in place of "member"). Here the shadow models are the ensemble a
sweep already has: N unlearned runs and N retrained models of one forget
set. The paper varies the forget set across shadow models; here it is fixed,
so the attack asks "was this model unlearned or retrained?" example by
example, on models held out from the fit.

For ``phi = log(p_y / (1 - p_y))`` (``(N, n)`` arrays ``U`` and ``R``) and
each round ``k = 0 .. N-1`` (leave one model out on each side):

1. per example ``j``, ``mu_u, sigma_u`` are the mean and standard deviation
   (``ddof=0``, as LiRA's ``np.std``) of ``U[i, j]`` over ``i != k``, and
   ``mu_r, sigma_r`` likewise over ``R``; each sigma is at least
   ``min_std`` (1e-6: identical models then give a finite, huge ratio
   instead of a division by zero);
2. the held-out targets ``U[k]`` (label 1, unlearned) and ``R[k]`` (label 0)
   score ``s = log N(phi; mu_u, sigma_u) - log N(phi; mu_r, sigma_r)`` on
   every example.

All ``N * n`` scores of each label are pooled into one ROC: ``auc`` (ties
count one half), and ``tpr_at_1fpr`` / ``tpr_at_5fpr``, the largest TPR at
FPR <= 1 % / 5 % over the ROC's thresholds. AUC 0.5 and TPR at the FPR say
the attack cannot tell the families apart; AUC 1 that every example gives the
unlearned models away. The same attack on retained samples (both families
trained on them) says whether unlearning exposed retained data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unlearn_core.evidence.request import EvidenceError

MIN_STD = 1e-6
FPRS = (0.01, 0.05)


def _gaussian_logpdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)


def ulira_scores(unlearned, retrained, min_std: float = MIN_STD) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out likelihood ratios: ``(N, n)`` scores of the held-out unlearned and retrained targets."""
    u = np.asarray(unlearned, dtype=np.float64)
    r = np.asarray(retrained, dtype=np.float64)
    if u.ndim != 2 or u.shape != r.shape:
        raise EvidenceError(f"U-LiRA needs two (models, samples) arrays of one shape; got {u.shape} and {r.shape}")
    n_models = u.shape[0]
    if n_models < 3 or u.shape[1] == 0:
        raise EvidenceError(f"U-LiRA needs at least 3 models per family (2 to fit after leaving one out) and one "
                            f"sample; got {n_models} models and {u.shape[1]} samples")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise EvidenceError("confidences must be finite (a model's outputs were NaN or infinite)")
    positives = np.empty_like(u)
    negatives = np.empty_like(r)
    keep = np.ones(n_models, dtype=bool)
    for k in range(n_models):
        keep[:] = True
        keep[k] = False
        mu_u, sd_u = u[keep].mean(0), np.maximum(u[keep].std(0), min_std)
        mu_r, sd_r = r[keep].mean(0), np.maximum(r[keep].std(0), min_std)
        for target, out in ((u[k], positives), (r[k], negatives)):
            out[k] = _gaussian_logpdf(target, mu_u, sd_u) - _gaussian_logpdf(target, mu_r, sd_r)
    return positives, negatives


def roc_summary(positive_scores, negative_scores, fprs=FPRS) -> dict:
    """AUC (Mann-Whitney, ties one half) and the largest TPR at FPR <= each of ``fprs``; higher score = positive."""
    pos = np.sort(np.asarray(positive_scores, dtype=np.float64).ravel())
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64).ravel())
    if pos.size == 0 or neg.size == 0:
        raise EvidenceError("a ROC needs positive and negative scores")
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    auc = float((below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size))
    # thresholds at every distinct score: predict positive iff score >= t
    thresholds = np.unique(np.concatenate([pos, neg, [np.inf]]))
    tpr = (pos.size - np.searchsorted(pos, thresholds, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="left")) / neg.size
    out = {"auc": auc}
    for level in fprs:
        ok = fpr <= level + 1e-12
        out[f"tpr_at_{round(level * 100):d}fpr"] = float(tpr[ok].max())
    return out


def roc_curve(positive_scores, negative_scores) -> dict:
    """The ROC as ``{"fpr": [...], "tpr": [...]}`` over every distinct score (predict positive iff score >= t),
    from (0, 0) to (1, 1): the curve whose area and points :func:`roc_summary` reports."""
    pos = np.sort(np.asarray(positive_scores, dtype=np.float64).ravel())
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64).ravel())
    if pos.size == 0 or neg.size == 0:
        raise EvidenceError("a ROC needs positive and negative scores")
    thresholds = np.unique(np.concatenate([pos, neg, [np.inf]]))[::-1]
    tpr = (pos.size - np.searchsorted(pos, thresholds, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="left")) / neg.size
    return {"fpr": [0.0, *fpr.tolist(), 1.0], "tpr": [0.0, *tpr.tolist(), 1.0]}


@dataclass(frozen=True)
class ULiRA:
    """The attack's ROC summary per split (``forget``, ``retain``, ...), from N unlearned and N retrained models."""

    per_split: dict              # split -> {"auc", "tpr_at_1fpr", "tpr_at_5fpr", "n_samples"}
    n_models: int

    def __getitem__(self, split: str) -> dict:
        return self.per_split[split]

    def to_dict(self) -> dict:
        return {**{s: dict(v) for s, v in self.per_split.items()}, "n_models": self.n_models,
                "definition": "leave-one-out Gaussian likelihood ratio of logit-scaled confidence, unlearned vs "
                              "retrained (U-LiRA, ensemble form)"}


def ulira_by_split(unlearned: dict, retrained: dict, min_std: float = MIN_STD) -> ULiRA:
    """The attack on every split both dicts hold; each maps a split to a ``(N, n)`` confidence array."""
    splits = [s for s in unlearned if s in retrained]
    if not splits:
        raise EvidenceError("U-LiRA needs at least one split present for both the unlearned and the retrained models")
    out, n_models = {}, 0
    for split in splits:
        positives, negatives = ulira_scores(unlearned[split], retrained[split], min_std)
        n_models = positives.shape[0]
        out[split] = {**roc_summary(positives, negatives), "n_samples": int(positives.shape[1])}
    return ULiRA(out, n_models)
