"""Ensemble verdicts of one method on one forget set: forget quality, KLoM and U-LiRA from K + K runs.

A run keeps :class:`RunOutputs` (:func:`run_outputs`): the logit-scaled
confidence ``phi = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j`` of
the model on three fixed sample sets:

- ``forget``: every forget training sample (``split.forget_idx`` order);
- ``retain``: ``RETAIN_SAMPLES`` (500) retained training samples;
- ``validation``: ``VALIDATION_SAMPLES`` (500) test samples, all classes
  (EasyDUB's validation split is the whole held-out set).

The retain and validation sets are drawn with a fixed seed from the forget
set's own index sets (:func:`verdict_samples`), never from the run's seed, so
every unlearned and retrained model of a forget set is read on the same
samples. 500 keeps a run's record small (4 bytes a sample) while giving the
95th percentile of KLoM and the attack's TPR at 1 % FPR enough samples
(K = 8 gives 4 000 scores per family, 40 of them in the top 1 %).

``phi`` is all three definitions need: it is the competition's "logit-scaled
confidence", EasyDUB's "margin" and U-LiRA's statistic (one quantity; the
softmax confidence on the true label is ``sigmoid(phi)``).

:func:`ensemble_verdicts` turns K unlearned and K retrained runs' outputs
into :class:`EnsembleVerdicts`:

- ``forget_quality``: the competition's released forget score
  (:mod:`~unlearn_core.evidence.forget_quality`) on the forget set;
- ``klom_p95``: the 95th percentile of KLoM (:mod:`~unlearn_core.evidence.klom`)
  on forget, retain and validation samples;
- ``ulira``: the leave-one-out likelihood-ratio attack
  (:mod:`~unlearn_core.evidence.ulira`): ``auc``, ``tpr_at_1fpr``,
  ``tpr_at_5fpr`` on the forget set and the same under ``retain``.

``protocol`` names how the K unlearned runs were made: ``competition`` (one
original model, K unlearning runs with different seeds) or ``seeds`` (one
original model per seed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from torch import nn

from unlearn_core.data import DatasetBundle
from unlearn_core.evidence._common import _take
from unlearn_core.evidence.distinguisher import logit_scaled_confidence
from unlearn_core.evidence.forget_quality import ForgetQuality, forget_quality_from_confidences
from unlearn_core.evidence.klom import KLoM, klom_by_split
from unlearn_core.evidence.request import EvidenceError
from unlearn_core.evidence.ulira import ULiRA, ulira_by_split
from unlearn_core.forget import ForgetSplit
from unlearn_core.training import predict_logits

SPLITS = ("forget", "retain", "validation")
RETAIN_SAMPLES = 500
VALIDATION_SAMPLES = 500
PROTOCOLS = ("competition", "seeds")
_SAMPLE_SEED = 20231  # fixed: the sample sets belong to the forget set, not to a run


def verdict_samples(bundle: DatasetBundle, split: ForgetSplit, retain: int = RETAIN_SAMPLES,
                    validation: int = VALIDATION_SAMPLES) -> dict[str, tuple[str, np.ndarray]]:
    """``split -> (source, indices)``: all forget samples, and seeded subsets of retained and test samples."""
    rng = np.random.default_rng(_SAMPLE_SEED)

    def subset(indices: np.ndarray, limit: int) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        return indices if len(indices) <= limit else np.sort(rng.choice(indices, size=limit, replace=False))

    return {"forget": ("train", np.asarray(split.forget_idx, dtype=np.int64)),
            "retain": ("train", subset(split.retain_idx, retain)),
            "validation": ("test", subset(np.arange(len(bundle.test_y)), validation))}


@dataclass(frozen=True)
class RunOutputs:
    """What one run keeps for the ensemble verdicts: per split, the sample indices and ``phi`` on each."""

    indices: dict                # split -> (n,) int64 indices into ``sources[split]``
    sources: dict                # split -> "train" or "test"
    phi: dict                    # split -> (n,) float32 logit-scaled confidence on the true label

    def to_dict(self) -> dict:
        return {split: {"source": self.sources[split], "indices": [int(i) for i in self.indices[split]],
                        "phi": [float(v) for v in self.phi[split]]} for split in self.phi}

    @classmethod
    def from_dict(cls, data: dict) -> "RunOutputs":
        try:
            return cls({s: np.asarray(v["indices"], dtype=np.int64) for s, v in data.items()},
                       {s: str(v["source"]) for s, v in data.items()},
                       {s: np.asarray(v["phi"], dtype=np.float32) for s, v in data.items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise EvidenceError(f"stored run outputs are malformed ({exc})") from None


def run_outputs(model: nn.Module, bundle: DatasetBundle, split: ForgetSplit, device=None,
                samples: dict | None = None) -> RunOutputs:
    """``phi`` of ``model`` on the verdict samples (``samples`` from :func:`verdict_samples`, computed if None)."""
    samples = samples or verdict_samples(bundle, split)
    indices, sources, phi = {}, {}, {}
    for name, (source, idx) in samples.items():
        images, labels = (bundle.train_x, bundle.train_y) if source == "train" else (bundle.test_x, bundle.test_y)
        logits = predict_logits(model, _take(images, idx), device).numpy() if len(idx) else np.zeros((0, 2))
        indices[name], sources[name] = np.asarray(idx, dtype=np.int64), source
        phi[name] = (logit_scaled_confidence(logits, labels.numpy()[idx]).astype(np.float32) if len(idx)
                     else np.zeros(0, dtype=np.float32))
    return RunOutputs(indices, sources, phi)


@dataclass(frozen=True)
class EnsembleVerdicts:
    """Forget quality, KLoM and U-LiRA of K unlearned against K retrained runs of one forget set."""

    forget_quality: ForgetQuality
    klom: KLoM
    ulira: ULiRA
    protocol: str
    k_unlearned: int
    k_retrained: int
    k_used: int                  # models per family the forget quality and the attack used (the smaller K)
    seconds: float

    def to_dict(self, per_sample: bool = False) -> dict:
        attack = self.ulira.per_split
        forget = attack.get("forget", {})
        return {"forget_quality": self.forget_quality.score,
                "forget_quality_detail": self.forget_quality.to_dict(per_example=per_sample),
                "klom_p95": self.klom.p95,
                "klom": self.klom.to_dict(per_sample=per_sample),
                "ulira": {"auc": forget.get("auc"), "tpr_at_1fpr": forget.get("tpr_at_1fpr"),
                          "tpr_at_5fpr": forget.get("tpr_at_5fpr"), "n_samples": forget.get("n_samples"),
                          **{s: dict(v) for s, v in attack.items() if s != "forget"}},
                "protocol": self.protocol, "k_unlearned": self.k_unlearned, "k_retrained": self.k_retrained,
                "k_used": self.k_used, "seconds": self.seconds}


def _stack(runs: list, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(K, n)`` phi of one split and its indices, checking every run read the same samples."""
    first = runs[0]
    for run in runs[1:]:
        if run.sources[split] != first.sources[split] or not np.array_equal(run.indices[split], first.indices[split]):
            raise EvidenceError(f"the runs were read on different {split} samples (a different forget set or "
                                f"sample draw); ensemble verdicts compare models on the same samples")
    return np.stack([np.asarray(run.phi[split], dtype=np.float64) for run in runs]), first.indices[split]


def ensemble_verdicts(unlearned: list, retrained: list, protocol: str = "seeds") -> EnsembleVerdicts:
    """The three verdicts from K unlearned and K retrained runs' :class:`RunOutputs` (or their ``to_dict()``).

    Forget quality and the attack pair the models one to one: when the
    families differ in size, the first ``min(K_u, K_r)`` of each (in the
    order given) are used and ``k_used`` says so. KLoM uses every model.
    Needs at least 3 models per family (the attack leaves one out and fits
    on the rest).
    """
    if protocol not in PROTOCOLS:
        raise EvidenceError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    started = time.perf_counter()
    u_runs = [r if isinstance(r, RunOutputs) else RunOutputs.from_dict(r) for r in unlearned]
    r_runs = [r if isinstance(r, RunOutputs) else RunOutputs.from_dict(r) for r in retrained]
    k = min(len(u_runs), len(r_runs))
    if k < 3:
        raise EvidenceError(f"ensemble verdicts need at least 3 unlearned and 3 retrained runs; got "
                            f"{len(u_runs)} and {len(r_runs)}")
    stacked_u, stacked_r = {}, {}
    for split in SPLITS:
        if not all(split in run.phi for run in u_runs + r_runs):
            continue
        stacked_u[split], idx_u = _stack(u_runs, split)
        stacked_r[split], idx_r = _stack(r_runs, split)
        if not np.array_equal(idx_u, idx_r):
            raise EvidenceError(f"the unlearned and retrained runs were read on different {split} samples")
    if "forget" not in stacked_u or stacked_u["forget"].shape[1] == 0:
        raise EvidenceError("ensemble verdicts need the runs' forget-set outputs")
    quality = forget_quality_from_confidences(stacked_u["forget"][:k], stacked_r["forget"][:k])
    kl = klom_by_split(stacked_u, stacked_r)
    attacked = [s for s in ("forget", "retain") if s in stacked_u and stacked_u[s].shape[1]]
    attack = ulira_by_split({s: stacked_u[s][:k] for s in attacked}, {s: stacked_r[s][:k] for s in attacked})
    return EnsembleVerdicts(quality, kl, attack, protocol, len(u_runs), len(r_runs), k,
                            time.perf_counter() - started)
