"""Logit-scaled confidences and the retrain-distinguisher score (this project's reading of the challenge's prose)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from unlearn_core.data import DatasetBundle
from unlearn_core.evidence._common import _take
from unlearn_core.evidence.request import EvidenceError, resolve_params
from unlearn_core.forget import ForgetSplit
from unlearn_core.training import predict_logits


def logit_scaled_confidence(logits, labels) -> np.ndarray:
    """``log(p_y / (1 - p_y))`` per row, with ``p_y`` the softmax probability of the true label.

    Computed as ``z_y - logsumexp_{j != y} z_j``, which is the same quantity
    without forming ``p_y`` (it saturates at 1 in float32 for confident
    models). This is the statistic Carlini et al.'s LiRA and the NeurIPS 2023
    unlearning challenge compare between models.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if z.ndim != 2 or z.shape[1] < 2 or len(z) != len(y):
        raise EvidenceError("logit-scaled confidence needs logits of shape (n, classes >= 2) and n labels")
    true = z[torch.arange(len(y)), y]
    others = z.clone()
    others[torch.arange(len(y)), y] = float("-inf")
    return (true - torch.logsumexp(others, dim=1)).numpy()


def forget_confidences(model: nn.Module, bundle: DatasetBundle, split: ForgetSplit, device=None) -> np.ndarray:
    """The logit-scaled confidence of ``model`` on every forget training sample (in ``split.forget_idx`` order).

    A sweep collects one such vector per unlearned and per retrained model and
    stacks them as columns for :func:`retrain_distinguisher_score`.
    """
    logits = predict_logits(model, _take(bundle.train_x, split.forget_idx), device)
    return logit_scaled_confidence(logits.numpy(), bundle.train_y.numpy()[split.forget_idx])


def _epsilons_one(u: np.ndarray, r: np.ndarray, delta: float) -> float:
    """The largest epsilon any threshold attack on one sample's confidences implies (see the score's docstring)."""
    u, r = np.sort(u), np.sort(r)
    thresholds = np.concatenate([np.unique(np.concatenate([u, r])), [np.inf]])
    below_u = np.searchsorted(u, thresholds, side="left") / len(u)   # share of unlearned models with s < t
    below_r = np.searchsorted(r, thresholds, side="left") / len(r)   # share of retrained models with s < t
    # Attack "unlearned iff s >= t" and its mirror "unlearned iff s < t"; positives are the unlearned models.
    fnr = np.concatenate([below_u, 1.0 - below_u])
    fpr = np.concatenate([1.0 - below_r, below_r])
    if np.any((fpr == 0) & (fnr == 0)):
        return math.inf  # some threshold separates the two families perfectly
    usable = (fpr > 0) & (fnr > 0)
    fpr, fnr = fpr[usable], fnr[usable]
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(1 - delta - fpr > 0, np.log(np.maximum(1 - delta - fpr, 1e-300)) - np.log(fnr), np.nan)
        second = np.where(1 - delta - fnr > 0, np.log(np.maximum(1 - delta - fnr, 1e-300)) - np.log(fpr), np.nan)
    both = np.concatenate([first, second])
    both = both[np.isfinite(both)]
    return float(max(0.0, both.max())) if both.size else 0.0


def retrain_distinguisher_score(unlearned_conf, retrained_conf, delta: float = 0.01, bin_width: float = 0.5) -> dict:
    """A forgetting-quality score written from the NeurIPS 2023 challenge's prose, from K unlearned and K retrained.

    This is not the competition's released metric: that is
    :func:`~unlearn_core.evidence.forget_quality_from_confidences`
    (``forget_quality``). This score differs from it in four ways: one family
    of attacks (one threshold, both directions, at every observed value)
    instead of the released grid of one- and two-threshold rules; no
    narrow-family rule (K identical unlearned models can score 1 here, 0
    there); ``delta`` 0.01 by default instead of 1e-5; and bins that keep
    halving (``2^-n`` for every n) instead of stopping at ``ceil(ln(K - 1))``.

    Inputs are ``(n_samples, K_u)`` and ``(n_samples, K_r)`` arrays: column
    ``j`` holds model ``j``'s logit-scaled confidence
    (:func:`logit_scaled_confidence`) on each forget sample. For each sample:

    1. Every threshold attack on that sample's 2K scalars is considered, in
       both directions ("unlearned iff s >= t" and "unlearned iff s < t", t
       over every observed value and +inf). The unlearned models are the
       positives: FNR is the share of unlearned models called retrained, FPR
       the share of retrained models called unlearned.
    2. Each (FPR, FNR) pair implies
       ``eps = max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR))``
       (a term whose numerator is not positive is left out). A pair with
       ``FPR = FNR = 0`` means the sample separates the two families perfectly:
       ``eps = inf``. A pair with exactly one zero rate is skipped: with K
       models a zero rate only says the true rate is below about 1/K.
    3. The sample's epsilon is the largest over its attacks, at least 0.

    The aggregate follows the challenge: each epsilon falls in a bin of width
    ``bin_width`` (``n = floor(eps / bin_width)``), the sample scores
    ``2^-n`` (0 for ``eps = inf``), and the forgetting quality ``score`` is the
    mean over samples, in [0, 1]: 1 when no attack tells the unlearned models
    from the retrained ones, 0 when every sample separates them. Source:
    Triantafillou et al., "Are we making progress in unlearning? Findings from
    the first NeurIPS unlearning competition" (2024) and the challenge's
    evaluation report; implemented from that description.

    With few models, chance alone makes some threshold look separating, so
    two identical distributions score well below 1 at small K
    (docs/EVIDENCE.md measures it); compare methods at equal K.
    """
    u = np.asarray(unlearned_conf, dtype=np.float64)
    r = np.asarray(retrained_conf, dtype=np.float64)
    if u.ndim == 1 and r.ndim == 1:  # one sample's K scalars
        u, r = u[None, :], r[None, :]
    if u.ndim != 2 or r.ndim != 2 or len(u) != len(r):
        raise EvidenceError(f"confidences must be (n_samples, K) arrays with the same n; got {u.shape} and {r.shape}")
    if len(u) == 0:
        raise EvidenceError("no forget samples to score")
    if u.shape[1] < 2 or r.shape[1] < 2:
        raise EvidenceError(f"the distinguisher needs at least 2 unlearned and 2 retrained models, got "
                            f"{u.shape[1]} and {r.shape[1]}")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise EvidenceError("confidences must be finite (a model's outputs were NaN or infinite)")
    if not 0 <= delta < 1 or not bin_width > 0:
        raise EvidenceError("delta must be in [0, 1) and bin_width positive")
    epsilons = np.array([_epsilons_one(u[i], r[i], delta) for i in range(len(u))])
    finite = np.isfinite(epsilons)
    bins = np.full(len(epsilons), -1, dtype=np.int64)
    bins[finite] = np.floor(epsilons[finite] / bin_width).astype(np.int64)
    sample_scores = np.where(finite, 2.0 ** -np.maximum(bins, 0).astype(np.float64), 0.0)
    counts = np.bincount(bins[finite], minlength=1).tolist() if finite.any() else [0]
    return {"score": float(sample_scores.mean()), "epsilons": epsilons, "sample_scores": sample_scores,
            "histogram": {"bin_width": bin_width, "counts": counts, "infinite": int((~finite).sum())},
            "k_unlearned": int(u.shape[1]), "k_retrained": int(r.shape[1]), "delta": delta,
            "n_samples": int(len(u))}


def distinguisher_from_models(unlearned: list, retrained: list, bundle: DatasetBundle, split: ForgetSplit,
                              device=None, params: dict | None = None) -> dict:
    """:func:`retrain_distinguisher_score` of lists of unlearned and retrained models of one forget set."""
    params = resolve_params("distinguisher", params)
    u = np.column_stack([forget_confidences(m, bundle, split, device) for m in unlearned])
    r = np.column_stack([forget_confidences(m, bundle, split, device) for m in retrained])
    return retrain_distinguisher_score(u, r, params["delta"], params["bin_width"])
