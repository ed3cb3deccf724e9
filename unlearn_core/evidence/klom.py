"""KLoM: per-sample KL divergence between the margins of unlearned and of retrained models.

Source: Georgiev et al., "Attribute-to-Delete: Machine Unlearning via
Datamodel Matching" (arXiv 2410.23232, appendix E.1), as released in EasyDUB
(``easydub/EasyDUB-code``, ``easydub/eval.py``: ``binned_kl_divergence`` and
``klom_from_margins``; the same estimator as ``compute_binned_KL_div`` in
``RoyRin/data-unlearning-bench``). The 95th percentile per split is how
EasyDUB reports it (``reproduce.py``: ``np.percentile(klom, 95)`` on retain,
forget and validation samples).

The margin of a model on a sample ``(x, y)`` is
``z_y - logsumexp_{j != y} z_j`` (the logit-scaled confidence
``log(p_y / (1 - p_y))``; :func:`~unlearn_core.evidence.logit_scaled_confidence`).
For one sample, with ``u`` the N unlearned models' margins and ``r`` the N
retrained models':

1. both are clipped to ``[-100, 100]``;
2. 20 equal-width bins span ``[min(u, r), max(u, r)]`` (when every value is
   the same, ``[v, v + 1]``); a value falls in bin ``i`` when
   ``edge_i <= value < edge_{i+1}`` (``np.digitize``), so values equal to
   the top edge (the largest margin of the two families) fall in no bin and
   are left out of both histograms, as in the release;
3. ``p`` and ``q`` are the bin frequencies of ``u`` and ``r`` (each divided
   by its own count of binned values);
4. ``q`` is raised to ``1e-5`` where ``p > 0`` (no renormalisation), and
   ``KLoM = sum_{p > 0} p * log(p / q)`` (natural log): KL(unlearned || retrained).

0 means the unlearned models' margins on that sample are distributed like the
retrained ones' (at this resolution); large values mean the sample still
tells them apart. With N models per family the histograms have N values in
20 bins, so even two draws of one distribution give positive values;
compare methods at equal N.

Two details of the release this follows, noted because
``data-unlearning-bench`` differs: its ``scipy.stats.entropy`` renormalises
``q`` after the ``1e-5`` floor, and its ``run.py`` passes the oracle's
margins first, so it computes KL(retrained || unlearned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unlearn_core.evidence.request import EvidenceError

BINS = 20
Q_FLOOR = 1e-5
CLIP = 100.0
PERCENTILE = 95.0


def binned_kl(p_samples, q_samples, bins: int = BINS, floor: float = Q_FLOOR, clip: float = CLIP) -> float:
    """KL(p || q) of two 1-D samples on shared equal-width bins (the module docstring's steps 1-4)."""
    p = np.clip(np.asarray(p_samples, dtype=np.float64).ravel(), -clip, clip)
    q = np.clip(np.asarray(q_samples, dtype=np.float64).ravel(), -clip, clip)
    if p.size == 0 or q.size == 0:
        raise EvidenceError("a binned KL divergence needs at least one value on each side")
    low, high = min(p.min(), q.min()), max(p.max(), q.max())
    if low >= high:
        high = low + 1.0
    edges = np.linspace(low, high, bins + 1)
    p_counts = np.bincount(np.digitize(p, edges), minlength=bins + 2)[1:bins + 1].astype(np.float64)
    q_counts = np.bincount(np.digitize(q, edges), minlength=bins + 2)[1:bins + 1].astype(np.float64)
    p_prob = p_counts / p_counts.sum() if p_counts.sum() > 0 else np.zeros(bins)
    q_prob = q_counts / q_counts.sum() if q_counts.sum() > 0 else np.zeros(bins)
    mask = p_prob > 0
    q_safe = np.maximum(q_prob[mask], floor)
    return float(np.sum(p_prob[mask] * np.log(p_prob[mask] / q_safe)))


def klom_per_sample(unlearned_margins, retrained_margins) -> np.ndarray:
    """KLoM of every sample: ``(N models, n samples)`` margins of each family -> ``(n,)`` values."""
    u = np.asarray(unlearned_margins, dtype=np.float64)
    r = np.asarray(retrained_margins, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise EvidenceError(f"KLoM needs two (models, samples) arrays over the same samples; got {u.shape} and "
                            f"{r.shape}")
    if u.shape[0] < 1 or r.shape[0] < 1:
        raise EvidenceError("KLoM needs at least one model in each family")
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise EvidenceError("margins must be finite (a model's outputs were NaN or infinite)")
    return np.array([binned_kl(u[:, j], r[:, j]) for j in range(u.shape[1])])


@dataclass(frozen=True)
class KLoM:
    """KLoM per split: the per-sample values and their 95th percentile."""

    per_sample: dict             # split -> (n,) array
    n_models: tuple[int, int]    # (unlearned, retrained)

    @property
    def p95(self) -> dict:
        return {split: float(np.percentile(values, PERCENTILE)) if len(values) else None
                for split, values in self.per_sample.items()}

    def to_dict(self, per_sample: bool = False) -> dict:
        out = {"p95": self.p95, "mean": {s: float(np.mean(v)) if len(v) else None for s, v in self.per_sample.items()},
               "n_samples": {s: int(len(v)) for s, v in self.per_sample.items()},
               "n_unlearned": self.n_models[0], "n_retrained": self.n_models[1],
               "definition": "KL(unlearned || retrained) of margins, 20 shared bins (EasyDUB binned_kl_divergence)"}
        if per_sample:
            out["per_sample"] = {s: [float(x) for x in v] for s, v in self.per_sample.items()}
        return out


def klom_by_split(unlearned: dict, retrained: dict) -> KLoM:
    """KLoM on every split both dicts hold (e.g. ``forget``, ``retain``, ``validation``).

    Each dict maps a split name to a ``(N models, n samples)`` margin array;
    a split's samples are the same, in the same order, on both sides.
    """
    splits = [s for s in unlearned if s in retrained]
    if not splits:
        raise EvidenceError("KLoM needs at least one split present for both the unlearned and the retrained models")
    values = {s: klom_per_sample(unlearned[s], retrained[s]) for s in splits}
    first = splits[0]
    return KLoM(values, (int(np.shape(unlearned[first])[0]), int(np.shape(retrained[first])[0])))
