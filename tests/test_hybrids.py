"""NatMU's masks, blending and partner selection (unlearn_core.hybrids)."""

from __future__ import annotations

import numpy as np
import pytest

from unlearn_core.hybrids import (BALANCE_HIGH, base_masks, blend, build_hybrids, confusion_ranking, mask_index,
                                  preview_gallery, recompute_hybrids, select_partners, tent_masks)


def _expected_tent_32(delta: float) -> np.ndarray:
    # Written out from the spec for H = 32, b = 16: r/16 on the way up, (31 - r)/16 on the way down.
    up = [r / 16 for r in range(16)]
    down = [(31 - r) / 16 for r in range(16, 32)]
    return np.clip(np.array(up + down) + delta, 0, 1)


def test_masks_match_spec_at_delta_zero_for_32_pixels():
    masks = tent_masks(32, 32, 0.0)
    assert masks.shape == (4, 32, 32) and masks.dtype == np.float32
    tent = _expected_tent_32(0.0)
    np.testing.assert_allclose(masks[0], np.repeat(tent[:, None], 32, axis=1), atol=1e-7)
    np.testing.assert_allclose(masks[1], np.repeat(tent[None, :], 32, axis=0), atol=1e-7)
    np.testing.assert_allclose(masks[2], 15 / 16 - masks[0], atol=1e-7)
    np.testing.assert_allclose(masks[3], 15 / 16 - masks[1], atol=1e-7)
    assert masks[0][15, 0] == pytest.approx(15 / 16) and masks[0][16, 7] == pytest.approx(15 / 16)
    assert masks[0][0, 3] == 0 and masks[0][31, 3] == 0
    assert masks[2][0, 3] == pytest.approx(15 / 16) and masks[2][15, 3] == pytest.approx(0)
    # Mean of the tent: 2 * (0 + 1 + ... + 15) / 16 / 32 = 0.46875, and the inverted masks mirror it.
    np.testing.assert_allclose(masks.mean(axis=(1, 2)), [0.46875] * 4, atol=1e-6)


def test_masks_match_spec_at_delta_minus_0_19():
    masks = tent_masks(32, 32, -0.19)
    np.testing.assert_allclose(masks[0][:, 5], _expected_tent_32(-0.19), atol=1e-6)
    assert masks[0][3, 0] == 0  # 3/16 - 0.19 < 0 is clipped
    assert masks[0][4, 0] == pytest.approx(4 / 16 - 0.19, abs=1e-6)
    # Rows 4..15 and their mirror images survive: 2 * sum(k/16 - 0.19, k = 4..15) / 32 = 0.3028125,
    # the "mean weight near 0.3" the spec gives for delta near -0.2.
    np.testing.assert_allclose(masks.mean(axis=(1, 2)), [0.3028125] * 4, atol=1e-6)
    assert masks.min() == 0.0 and masks.max() == pytest.approx(15 / 16 - 0.19, abs=1e-6)


@pytest.mark.parametrize("size", [(32, 32), (8, 8), (5, 12), (1, 3)])
def test_delta_one_gives_all_ones_masks(size):
    np.testing.assert_array_equal(tent_masks(*size, 1.0), np.ones((4, *size), dtype=np.float32))


@pytest.mark.parametrize("height,width", [(8, 8), (28, 28), (64, 64), (7, 12), (12, 7), (1, 1)])
def test_masks_for_any_size_are_tents_along_the_right_axis(height, width):
    masks = base_masks(height, width)
    assert masks.shape == (4, height, width)
    assert masks.min() >= 0 and masks.max() < 1
    # m0/m2 vary along rows only, m1/m3 along columns only, and every tent is mirror-symmetric.
    for j in (0, 2):
        np.testing.assert_array_equal(masks[j], np.repeat(masks[j][:, :1], width, axis=1))
        np.testing.assert_allclose(masks[j], masks[j][::-1], atol=1e-6)
    for j in (1, 3):
        np.testing.assert_array_equal(masks[j], np.repeat(masks[j][:1, :], height, axis=0))
        np.testing.assert_allclose(masks[j], masks[j][:, ::-1], atol=1e-6)
    half = height / 2
    expected_rows = [r / half if r < half else (height - 1 - r) / half for r in range(height)]
    np.testing.assert_allclose(masks[0][:, 0], expected_rows, atol=1e-6)
    np.testing.assert_allclose(masks[2], masks[0].max() - masks[0], atol=1e-6)
    shifted = tent_masks(height, width, -0.1)
    np.testing.assert_allclose(shifted, np.clip(masks - 0.1, 0, 1), atol=1e-6)


def test_mask_index_cycles_through_the_four_masks():
    np.testing.assert_array_equal(mask_index(np.arange(9)), [0, 1, 2, 3, 0, 1, 2, 3, 0])


def test_blend_weights_forget_by_mask_in_raw_pixel_space():
    rng = np.random.default_rng(0)
    forget = rng.integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)
    partner = rng.integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)
    np.testing.assert_array_equal(blend(forget, partner, np.ones((4, 5))), forget)
    np.testing.assert_array_equal(blend(forget, partner, np.zeros((4, 5))), partner)
    mask = rng.random((2, 4, 5)).astype(np.float32)
    mixed = blend(forget, partner, mask)
    assert mixed.dtype == np.uint8
    # The same spatial weight applies to every channel.
    expected = np.rint(partner * (1 - mask[:, None]) + forget * mask[:, None])
    np.testing.assert_allclose(mixed.astype(float), expected, atol=1.0)
    as_float = blend(forget / 255.0, partner / 255.0, mask)
    assert as_float.dtype.kind == "f" and 0 <= as_float.min() and as_float.max() <= 1
    np.testing.assert_allclose(as_float * 255, expected, atol=1.0)
    with pytest.raises(ValueError):
        blend(forget, partner[:1], mask)


def test_recompute_hybrids_uses_mask_of_each_slot():
    rng = np.random.default_rng(1)
    forget = rng.integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    partners = rng.integers(0, 256, (3, 5, 1, 8, 8), dtype=np.uint8)
    masks, hybrids = recompute_hybrids(forget, partners, -0.05)
    np.testing.assert_array_equal(masks, tent_masks(8, 8, -0.05))
    assert hybrids.shape == partners.shape and hybrids.dtype == np.uint8
    for k in range(5):
        np.testing.assert_array_equal(hybrids[:, k], blend(forget, partners[:, k], masks[k % 4]))
    _, plain = recompute_hybrids(forget, partners, 1.0)
    np.testing.assert_array_equal(plain, np.repeat(forget[:, None], 5, axis=1))
    with pytest.raises(ValueError):
        recompute_hybrids(forget, partners[:2], 0.0)


def _synthetic(num_classes=5, per_class=30, forget_labels=(0,) * 10, seed=0):
    rng = np.random.default_rng(seed)
    retain_labels = np.repeat(np.arange(num_classes), per_class)
    forget_labels = np.asarray(forget_labels)
    probs = rng.dirichlet(np.ones(num_classes), size=len(forget_labels))
    return probs, forget_labels, retain_labels


def _check_plan(plan, forget_labels, retain_labels, forgotten=()):
    assert np.all(plan.label == retain_labels[plan.partner_pos]), "a hybrid must carry its partner's label"
    assert np.all(plan.label != forget_labels[plan.forget_pos]), "a partner must come from another class"
    assert not np.isin(plan.label, list(forgotten)).any(), "a partner came from a forgotten class"
    for i in np.unique(plan.forget_pos):
        mine = plan.label[plan.forget_pos == i]
        assert len(set(mine.tolist())) == len(mine), "one forget sample borrowed twice from a class"
        np.testing.assert_array_equal(plan.slot[plan.forget_pos == i], np.arange(len(mine)))


def test_partners_follow_the_confusion_ranking_and_are_never_reused():
    probs, forget_labels, retain_labels = _synthetic(num_classes=10, per_class=50,
                                                     forget_labels=np.arange(40) % 10)
    plan = select_partners(probs, forget_labels, retain_labels, 4, rng=np.random.default_rng(0))
    assert len(plan) == 160 and plan.reused == 0 and plan.fallbacks == 0
    assert len(np.unique(plan.partner_pos)) == len(plan)
    _check_plan(plan, forget_labels, retain_labels)
    ranking = confusion_ranking(probs, forget_labels, np.zeros(10, dtype=bool))
    for i in range(40):
        np.testing.assert_array_equal(plan.label[plan.forget_pos == i], ranking[i, :4])
        assert forget_labels[i] not in ranking[i, :9]


def test_classwise_partners_never_come_from_a_forgotten_class():
    num_classes = 6
    forgotten = (2, 4)
    forget_labels = np.array([2] * 12 + [4] * 12)
    retain_labels = np.repeat([0, 1, 3, 5], 40)  # the forgotten classes have nothing left
    probs = np.full((24, num_classes), 0.01)
    probs[:12, 4] = 0.9  # a class-2 sample's strongest confusion is the other forgotten class
    probs[12:, 2] = 0.9
    probs[:, 3] = 0.05
    probs /= probs.sum(1, keepdims=True)
    plan = select_partners(probs, forget_labels, retain_labels, 4, forgotten_classes=forgotten,
                           rng=np.random.default_rng(3))
    assert len(plan) == 24 * 4
    _check_plan(plan, forget_labels, retain_labels, forgotten)
    assert np.all(plan.label[plan.slot == 0] == 3)  # the top remaining confusion comes first


def test_hybrid_count_is_capped_by_the_classes_a_sample_may_borrow_from():
    forget_labels = np.array([0] * 5 + [1] * 5)
    retain_labels = np.repeat([2, 3], 20)
    probs = np.full((10, 4), 0.25)
    plan = select_partners(probs, forget_labels, retain_labels, 4, forgotten_classes=(0, 1))
    np.testing.assert_array_equal(plan.hybrids_per_sample, [2] * 10)
    assert len(plan) == 20 and set(plan.label.tolist()) == {2, 3}
    _check_plan(plan, forget_labels, retain_labels, (0, 1))


def test_exhausting_a_class_falls_back_along_the_ranking_and_terminates():
    num_classes = 5
    retain_labels = np.array([1] * 3 + [2] * 30 + [3] * 30 + [4] * 30)
    forget_labels = np.zeros(20, dtype=np.int64)
    probs = np.tile([0.0, 0.6, 0.2, 0.15, 0.05], (20, 1))  # everyone wants class 1, which has 3 samples
    plan = select_partners(probs, forget_labels, retain_labels, 2, rng=np.random.default_rng(0))
    assert len(plan) == 40 and plan.reused == 0
    # 17 samples find class 1 spent at slot 0 and take class 2, so their slot-1 request (class 2) is taken too.
    assert plan.fallbacks == 34
    assert np.sum(plan.label == 1) == 3
    assert len(np.unique(plan.partner_pos)) == len(plan)
    _check_plan(plan, forget_labels, retain_labels)
    # A sample that lost class 1 takes the next classes in its ranking, 2 then 3.
    fell_back = [i for i in range(20) if 1 not in plan.label[plan.forget_pos == i]]
    for i in fell_back:
        np.testing.assert_array_equal(np.sort(plan.label[plan.forget_pos == i]), [2, 3])
    assert num_classes == probs.shape[1]


def test_when_every_class_is_spent_partners_are_reused_evenly():
    retain_labels = np.array([1, 1, 2, 2, 3])
    forget_labels = np.zeros(10, dtype=np.int64)
    probs = np.tile([0.1, 0.5, 0.3, 0.1], (10, 1))
    plan = select_partners(probs, forget_labels, retain_labels, 3, rng=np.random.default_rng(0))
    assert len(plan) == 30, "every sample keeps its hybrids"
    assert plan.reused == 25
    _check_plan(plan, forget_labels, retain_labels)
    # Every sample borrows from all three classes; fresh passes spread each class's 10 uses evenly.
    np.testing.assert_array_equal(np.bincount(plan.partner_pos, minlength=5), [5, 5, 5, 5, 10])


def test_random_forgetting_balances_an_over_requested_class():
    num_classes = 5
    retain_labels = np.repeat(np.arange(num_classes), 100)  # per = 100
    forget_labels = np.full(150, 4)
    probs = np.tile([0.7, 0.1, 0.1, 0.1, 0.0], (150, 1))  # 150 requests for class 0
    unbalanced = select_partners(probs, forget_labels, retain_labels, 1, balance=False,
                                 rng=np.random.default_rng(0))
    assert np.sum(unbalanced.label == 0) == 100 and unbalanced.fallbacks == 50 and unbalanced.rebalanced == 0
    plan = select_partners(probs, forget_labels, retain_labels, 1, balance=True, rng=np.random.default_rng(0))
    counts = np.bincount(plan.label, minlength=num_classes)
    assert counts[0] == int(BALANCE_HIGH * 100)
    assert plan.rebalanced == 150 - counts[0] and plan.fallbacks == 0
    assert counts[1:4].max() <= 40 and counts[4] == 0  # overflow went to classes requested < 0.4 * per
    _check_plan(plan, forget_labels, retain_labels)


def test_build_hybrids_blends_each_pair_with_its_slot_mask():
    rng = np.random.default_rng(2)
    probs, forget_labels, retain_labels = _synthetic(num_classes=4, per_class=10, forget_labels=[0, 1, 2])
    forget_images = rng.integers(0, 256, (3, 2, 6, 9), dtype=np.uint8)
    retain_images = rng.integers(0, 256, (40, 2, 6, 9), dtype=np.uint8)
    plan = select_partners(probs, forget_labels, retain_labels, 3, rng=rng)
    hybrids = build_hybrids(forget_images, retain_images, plan, -0.1)
    masks = tent_masks(6, 9, -0.1)
    assert hybrids.shape == (9, 2, 6, 9)
    for row in range(len(plan)):
        expected = blend(forget_images[plan.forget_pos[row]], retain_images[plan.partner_pos[row]],
                         masks[plan.slot[row] % 4])
        np.testing.assert_array_equal(hybrids[row], expected)


def test_preview_gallery_takes_one_forget_sample_per_class_first_and_their_partners():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 12)  # 5 classes, 12 images each
    images = rng.integers(0, 256, size=(len(labels), 1, 4, 4), dtype=np.uint8)
    forget_idx = np.flatnonzero(np.isin(labels, [0, 1]))[::3]  # 8 samples of classes 0 and 1
    retain_idx = np.setdiff1d(np.arange(len(labels)), forget_idx)
    asked = []

    def probs_of(batch):
        asked.append(batch.copy())
        probs = np.full((len(batch), 5), 0.1)
        probs[:, 4] = 0.6  # every sample is most confused with class 4, then 2 and 3 (ties by index)
        return probs

    gallery = preview_gallery(images, labels, forget_idx, retain_idx, probs_of, count=3, num_hybrids=2, seed=7)
    rows = gallery["forget_index"]
    assert len(rows) == 3 and set(rows) <= set(forget_idx)
    assert set(labels[rows[:2]]) == {0, 1}  # one per class before any class repeats
    np.testing.assert_array_equal(gallery["forget_images"], images[rows])
    np.testing.assert_array_equal(asked[0], images[rows])  # the model saw exactly the shown samples
    assert gallery["partner_index"].shape == (3, 2) and gallery["partner_images"].shape == (3, 2, 1, 4, 4)
    np.testing.assert_array_equal(gallery["partner_images"], images[gallery["partner_index"]])
    assert set(gallery["partner_index"].ravel()) <= set(retain_idx)
    np.testing.assert_array_equal(gallery["hybrid_labels"], labels[gallery["partner_index"]])
    assert np.all(gallery["hybrid_labels"][:, 0] == 4)  # the most-confused class first
    assert not np.any(gallery["hybrid_labels"] == gallery["forget_labels"][:, None])
    again = preview_gallery(images, labels, forget_idx, retain_idx, probs_of, count=3, num_hybrids=2, seed=7)
    np.testing.assert_array_equal(again["partner_index"], gallery["partner_index"])  # seeded
