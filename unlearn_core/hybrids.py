"""NatMU's hybrid images: tent masks, partner selection and pixel-space blending.

Pure functions with no model or training inside, so the NatMU method and the
dashboard's "NatMU hybrids" page share them: the page redraws the masks and
blends instantly when the delta slider moves (:func:`recompute_hybrids`),
without rerunning anything.

A hybrid blends a forget image ``x_f`` with a remaining image ``x_r`` of
another class: ``clip(x_r * (1 - m) + x_f * m)``, labelled with ``x_r``'s
class. ``m`` is one of four tent masks shifted by ``delta`` and clipped to
[0, 1] (see ``shared/specs/natmu.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

NUM_MASKS = 4
# Random-forgetting balance (spec): a class requested more than BALANCE_HIGH * per times hands its
# overflow to classes requested fewer than BALANCE_LOW * per times, per = |D_r| / C.
BALANCE_HIGH = 0.98
BALANCE_LOW = 0.4
BUILD_BLOCK = 2048


def _tent(length: int) -> np.ndarray:
    """Rises from 0 at both ends towards the centre: r/b before b = length/2, (length-1-r)/b after."""
    half = length / 2.0
    r = np.arange(length, dtype=np.float64)
    return np.where(r < half, r / half, (length - 1 - r) / half)


def base_masks(height: int, width: int) -> np.ndarray:
    """The four unshifted masks, ``float32`` of shape ``(4, H, W)``.

    m0: tent along rows; m1: tent along columns; m2 = peak - m0 (high at the
    top and bottom edges); m3 = peak - m1. ``peak`` is the tent's maximum
    (15/16 for 32 pixels).
    """
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    rows, cols = _tent(height), _tent(width)
    m0 = np.repeat(rows[:, None], width, axis=1)
    m1 = np.repeat(cols[None, :], height, axis=0)
    m2 = rows.max() - m0
    m3 = cols.max() - m1
    return np.stack([m0, m1, m2, m3]).astype(np.float32)


def tent_masks(height: int, width: int, delta: float) -> np.ndarray:
    """The four masks shifted by ``delta`` and clipped to [0, 1]; ``(4, H, W)`` ``float32``.

    Each weights the *forget* image. ``delta = 1`` gives all-ones masks
    (plain relabelling); ``delta = -0.19`` on 32 pixels gives a mean weight
    of about 0.30.
    """
    return np.clip(base_masks(height, width) + np.float32(delta), 0.0, 1.0).astype(np.float32)


def mask_index(slot: np.ndarray | int) -> np.ndarray:
    """Which of the four masks hybrid ``slot`` (0-based, most confused first) uses; cycles past 4."""
    return np.asarray(slot) % NUM_MASKS


def blend(forget: np.ndarray, partner: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``clip(partner * (1 - mask) + forget * mask)`` in the images' own value range.

    ``forget`` and ``partner`` are ``(..., C, H, W)`` arrays of one dtype:
    ``uint8`` (0..255; the result is rounded back to ``uint8``) or float in
    [0, 1]. ``mask`` is ``(..., H, W)`` and broadcasts over channels.
    """
    forget, partner = np.asarray(forget), np.asarray(partner)
    if forget.shape != partner.shape:
        raise ValueError(f"forget {forget.shape} and partner {partner.shape} images differ in shape")
    weight = np.asarray(mask, dtype=np.float32)[..., None, :, :]
    base = partner.astype(np.float32)
    # partner + (forget - partner) * mask, in place: the same blend with fewer full-size temporaries.
    mixed = forget.astype(np.float32)
    mixed -= base
    mixed *= weight
    mixed += base
    if forget.dtype == np.uint8:
        return np.clip(np.rint(mixed, out=mixed), 0, 255, out=mixed).astype(np.uint8)
    return np.clip(mixed, 0.0, 1.0, out=mixed)


def recompute_hybrids(forget_images: np.ndarray, partner_images: np.ndarray,
                      delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks and hybrids for a new ``delta``, for the gallery's slider.

    ``forget_images`` is ``(n, C, H, W)``; ``partner_images`` is
    ``(n, K, C, H, W)``, partner ``k`` of sample ``i`` being hybrid slot ``k``
    (it uses mask ``k % 4``). Returns ``(masks (4, H, W), hybrids (n, K, C, H, W))``,
    hybrids in the images' dtype.
    """
    forget_images, partner_images = np.asarray(forget_images), np.asarray(partner_images)
    if forget_images.ndim != 4 or partner_images.ndim != 5 or partner_images.shape[0] != forget_images.shape[0] \
            or partner_images.shape[2:] != forget_images.shape[1:]:
        raise ValueError(f"expected forget (n, C, H, W) and partners (n, K, C, H, W), got "
                         f"{forget_images.shape} and {partner_images.shape}")
    height, width = forget_images.shape[-2:]
    masks = tent_masks(height, width, delta)
    slots = partner_images.shape[1]
    per_slot = masks[mask_index(np.arange(slots))]  # (K, H, W)
    forget = np.broadcast_to(forget_images[:, None], partner_images.shape)
    return masks, blend(forget, partner_images, np.broadcast_to(per_slot, (forget_images.shape[0], *per_slot.shape)))


def confusion_ranking(probs: np.ndarray, labels: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Classes per sample, most confused first, with the true class and excluded classes last.

    ``probs`` is ``(n, C)`` softmax; ``excluded`` a boolean ``(C,)`` of classes
    that may never be partners (forgotten classes, classes with no remaining
    sample). Ties break towards the lower class index.
    """
    scores = np.array(probs, dtype=np.float64, copy=True)
    scores[np.arange(len(labels)), labels] = -1.0
    scores[:, np.asarray(excluded, dtype=bool)] = -2.0
    return np.argsort(-scores, axis=1, kind="stable")


@dataclass
class PartnerPlan:
    """Which remaining image each hybrid blends with.

    Parallel arrays, one entry per hybrid: ``forget_pos`` (row of the forget
    set), ``slot`` (0-based hybrid number of that forget sample; mask
    ``slot % 4``), ``partner_pos`` (row of the remaining set) and ``label``
    (the partner's class, the hybrid's label). ``fallbacks`` counts hybrids
    whose requested class had run out (or was already taken by that sample),
    ``reused`` those whose partner had already been used (only once every
    eligible class of the sample is spent), ``rebalanced`` requests moved by
    the random-forgetting balance.
    """

    forget_pos: np.ndarray
    slot: np.ndarray
    partner_pos: np.ndarray
    label: np.ndarray
    hybrids_per_sample: np.ndarray
    fallbacks: int = 0
    reused: int = 0
    rebalanced: int = 0

    def __len__(self) -> int:
        return len(self.label)

    def summary(self) -> dict:
        return {"hybrids": int(len(self)), "fallbacks": int(self.fallbacks), "reused": int(self.reused),
                "rebalanced": int(self.rebalanced),
                "hybrids_per_sample_min": int(self.hybrids_per_sample.min()) if len(self.hybrids_per_sample) else 0,
                "hybrids_per_sample_max": int(self.hybrids_per_sample.max()) if len(self.hybrids_per_sample) else 0}


def _balance(requests: list[list[int]], labels: np.ndarray, excluded: np.ndarray, per: float,
             rng: np.random.Generator) -> int:
    """Move overflow requests of over-requested classes to under-requested ones, in place.

    A request may only move to a class that is not the sample's own and not
    among its other requests. Each request is considered once, so this ends.
    """
    num_classes = len(excluded)
    counts = np.zeros(num_classes, dtype=np.int64)
    for row in requests:
        for cls in row:
            counts[cls] += 1
    high, low = BALANCE_HIGH * per, BALANCE_LOW * per
    eligible_low = [c for c in range(num_classes) if counts[c] < low and not excluded[c]]
    moved = 0
    for cls in rng.permutation(num_classes):
        if counts[cls] <= high:
            continue
        holders = [(i, k) for i, row in enumerate(requests) for k, c in enumerate(row) if c == cls]
        excess = int(counts[cls] - np.floor(high))
        for pick in rng.permutation(len(holders))[:excess]:
            i, k = holders[pick]
            targets = [c for c in eligible_low if counts[c] < low and c != labels[i] and c not in requests[i]]
            if not targets:
                continue
            target = targets[int(rng.integers(len(targets)))]
            requests[i][k] = target
            counts[cls] -= 1
            counts[target] += 1
            moved += 1
    return moved


def select_partners(probs: np.ndarray, forget_labels: np.ndarray, retain_labels: np.ndarray, num_hybrids: int,
                    forgotten_classes=(), balance: bool = False,
                    rng: np.random.Generator | None = None) -> PartnerPlan:
    """Choose the partner of every hybrid (spec steps 1-3).

    Each forget sample requests its ``num_hybrids`` most confused classes
    (capped by the number of eligible classes: neither its own class, nor a
    forgotten class, nor a class with no remaining sample). ``balance``
    applies the random-forgetting balance. Partners are drawn without
    replacement across all hybrids, the most-confused slot of every sample
    first. When a requested class has run out, the hybrid falls back to the
    next class in that sample's ranking that still has partners. Only when
    every eligible class of the sample is spent is a partner reused: the
    requested class is refilled with a new shuffled pass over its samples,
    so reuse is spread evenly and the hybrid count stays ``num_hybrids``
    per sample. Every step handles each request once, so it always ends.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    probs = np.asarray(probs)
    forget_labels = np.asarray(forget_labels, dtype=np.int64)
    retain_labels = np.asarray(retain_labels, dtype=np.int64)
    num_classes = probs.shape[1]
    if num_hybrids < 1:
        raise ValueError(f"num_hybrids must be at least 1, got {num_hybrids}")
    if probs.ndim != 2 or len(probs) != len(forget_labels):
        raise ValueError(f"probs must be (forget samples, classes); got {probs.shape} for {len(forget_labels)} "
                         "forget labels")
    members = [np.flatnonzero(retain_labels == c) for c in range(num_classes)]
    excluded = np.array([len(m) == 0 for m in members])
    excluded[list(forgotten_classes)] = True
    ranking = confusion_ranking(probs, forget_labels, excluded)
    allowed = [[int(c) for c in row if not excluded[c] and c != label] for row, label in zip(ranking, forget_labels)]
    requests = [row[:num_hybrids] for row in allowed]
    rebalanced = _balance(requests, forget_labels, excluded, len(retain_labels) / num_classes, rng) \
        if balance else 0

    pools = [list(rng.permutation(m)) for m in members]
    forget_pos, slots, partner_pos, labels = [], [], [], []
    used_classes: list[set] = [set() for _ in requests]
    partner_used = np.zeros(len(retain_labels), dtype=bool)
    fallbacks = reused = 0
    for slot in range(max((len(r) for r in requests), default=0)):
        for i in rng.permutation(len(requests)):
            if slot >= len(requests[i]):
                continue
            wanted = requests[i][slot]
            cls = wanted if wanted not in used_classes[i] and pools[wanted] else None
            if cls is None:
                candidates = [c for c in allowed[i] if c not in used_classes[i]]
                cls = next((c for c in candidates if pools[c]), None)
                if cls is None:
                    # Every eligible class is spent: reuse, starting a fresh pass over the best one.
                    cls = wanted if wanted not in used_classes[i] else candidates[0]
                    pools[cls] = list(rng.permutation(members[cls]))
                else:
                    fallbacks += 1
            partner = int(pools[cls].pop())
            reused += bool(partner_used[partner])
            partner_used[partner] = True
            used_classes[i].add(cls)
            forget_pos.append(i)
            slots.append(slot)
            partner_pos.append(partner)
            labels.append(cls)
    order = np.lexsort((np.asarray(slots, dtype=np.int64), np.asarray(forget_pos, dtype=np.int64)))
    return PartnerPlan(forget_pos=np.asarray(forget_pos, dtype=np.int64)[order],
                       slot=np.asarray(slots, dtype=np.int64)[order],
                       partner_pos=np.asarray(partner_pos, dtype=np.int64)[order],
                       label=np.asarray(labels, dtype=np.int64)[order],
                       hybrids_per_sample=np.array([len(r) for r in requests], dtype=np.int64),
                       fallbacks=fallbacks, reused=reused, rebalanced=rebalanced)


def build_hybrids(forget_images: np.ndarray, retain_images: np.ndarray, plan: PartnerPlan,
                  delta: float) -> np.ndarray:
    """The hybrid images of a plan, in the images' dtype, ``(len(plan), C, H, W)``."""
    height, width = forget_images.shape[-2:]
    masks = tent_masks(height, width, delta)
    out = np.empty((len(plan), *forget_images.shape[1:]), dtype=forget_images.dtype)
    # Blocks bound the float temporaries (tens of MB) however many hybrids there are.
    for start in range(0, len(plan), BUILD_BLOCK):
        rows = slice(start, start + BUILD_BLOCK)
        out[rows] = blend(forget_images[plan.forget_pos[rows]], retain_images[plan.partner_pos[rows]],
                          masks[mask_index(plan.slot[rows])])
    return out


def preview_gallery(images: np.ndarray, labels: np.ndarray, forget_idx: np.ndarray, retain_idx: np.ndarray,
                    probs_of: Callable[[np.ndarray], np.ndarray], count: int, num_hybrids: int,
                    forgotten_classes=(), seed: int = 0) -> dict:
    """A few forget samples with their partners and hybrid labels, chosen as NatMU chooses them.

    ``images`` and ``labels`` are the training set (``(N, C, H, W)`` and ``(N,)``), ``forget_idx`` and
    ``retain_idx`` its forget and remaining rows, and ``probs_of(images)`` the original model's softmax. Up to
    ``count`` forget samples are taken in a seeded random order, one per class first; their partners come from
    :func:`select_partners` over the whole remaining set with ``num_hybrids`` per sample, cut to the smallest
    number any chosen sample got so the arrays stay rectangular. Returns ``forget_index``, ``forget_images``,
    ``forget_labels``, ``original_probs``, ``partner_index`` ``(n, K)``, ``partner_images`` ``(n, K, C, H, W)``
    and ``hybrid_labels`` ``(n, K)``; :func:`recompute_hybrids` blends them for any ``delta``.
    """
    labels = np.asarray(labels)
    forget_idx, retain_idx = np.asarray(forget_idx), np.asarray(retain_idx)
    order = np.random.default_rng(seed).permutation(len(forget_idx))
    seen: set = set()
    first = [int(i) for i in order if not (labels[forget_idx[i]] in seen or seen.add(labels[forget_idx[i]]))]
    chosen = (first + [int(i) for i in order if int(i) not in first])[:count]
    rows = forget_idx[chosen]
    forget_images = np.asarray(images[rows])
    probs = np.asarray(probs_of(forget_images))
    plan = select_partners(probs, labels[rows], labels[retain_idx], num_hybrids,
                           forgotten_classes=forgotten_classes, rng=np.random.default_rng(seed))
    per_sample = int(plan.hybrids_per_sample.min()) if len(plan.hybrids_per_sample) else 0
    take = np.stack([np.flatnonzero(plan.forget_pos == i)[:per_sample] for i in range(len(rows))])
    partner_rows = retain_idx[plan.partner_pos[take]]
    partners = np.asarray(images[partner_rows.reshape(-1)])
    partners = partners.reshape(len(rows), per_sample, *forget_images.shape[1:])
    return {"forget_index": rows, "forget_images": forget_images, "forget_labels": labels[rows],
            "original_probs": probs, "partner_index": partner_rows, "partner_images": partners,
            "hybrid_labels": plan.label[take]}
