"""Every metric on hand-made inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearn_core import metrics


def test_accuracy_and_per_class_accuracy():
    preds = np.array([0, 1, 1, 2, 2, 2])
    labels = np.array([0, 1, 0, 2, 2, 1])
    assert metrics.accuracy_percent(preds, labels) == pytest.approx(400 / 6)
    per_class = metrics.per_class_accuracy(preds, labels, 4)
    assert per_class[:3] == [50.0, 50.0, 100.0] and math.isnan(per_class[3])
    assert metrics.mean_class_accuracy(preds, labels, [1, 2]) == pytest.approx(75.0)
    assert math.isnan(metrics.accuracy_percent(np.array([]), np.array([])))


def test_entropy_of_uniform_and_one_hot():
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(metrics.entropy(probs), [math.log(4), 0.0], atol=1e-9)


def test_js_divergence_bounds():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert metrics.js_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    q = np.array([[0.0, 1.0], [0.0, 1.0]])
    # Disjoint supports give ln 2; the second row is a known value.
    row2 = 0.5 * (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75) + math.log(1 / 0.75))
    assert metrics.js_divergence(p, q) == pytest.approx((math.log(2) + row2) / 2, abs=1e-6)


def test_avg_gap_and_rte():
    unlearned = {"TA": 90.0, "RA": 99.0, "FA": 10.0, "MIA_entropy": 20.0}
    retrained = {"TA": 92.0, "RA": 100.0, "FA": 0.0, "MIA_entropy": 30.0}
    assert metrics.avg_gap(unlearned, retrained) == pytest.approx((2 + 1 + 10 + 10) / 4)
    assert metrics.rte(100.0, 4.0) == 25.0


def _confident(n, classes, rng, sharp):
    logits = rng.normal(size=(n, classes))
    labels = rng.integers(0, classes, n)
    logits[np.arange(n), labels] += sharp
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs, labels


def test_both_mias_separate_members_from_non_members():
    rng = np.random.default_rng(0)
    members, member_y = _confident(400, 5, rng, sharp=12.0)       # trained-on: very confident
    nonmembers, nonmember_y = _confident(400, 5, rng, sharp=1.0)  # unseen: unsure
    # A target that looks like members is called member by the entropy MIA and non-member by almost none.
    looks_member, looks_member_y = _confident(200, 5, rng, sharp=12.0)
    looks_unseen, looks_unseen_y = _confident(200, 5, rng, sharp=1.0)
    assert metrics.mia_entropy(members, nonmembers, looks_member) > 90
    assert metrics.mia_entropy(members, nonmembers, looks_unseen) < 10
    assert metrics.mia_svc(members, member_y, nonmembers, nonmember_y, looks_member, looks_member_y) < 10
    assert metrics.mia_svc(members, member_y, nonmembers, nonmember_y, looks_unseen, looks_unseen_y) > 90


def test_confusion_matrix_counts():
    matrix = metrics.confusion_matrix(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 2)
    assert matrix.tolist() == [[2, 1], [0, 1]]


def test_evaluate_model_matches_hand_computation(digits_class3):
    setup = digits_class3
    report = setup.metrics("retrained")
    bundle = setup.bundle
    test_pred = setup.outputs("retrained")["test"].argmax(1)
    test_y = bundle.test_y.numpy()
    assert report["Acc_f"] == pytest.approx(metrics.accuracy_percent(test_pred[test_y == 3], test_y[test_y == 3]))
    assert report["Acc_f"] == 0.0  # a model that never saw class 3 never predicts it
    assert report["FA"] == 0.0 and report["RA"] > 95
    assert report["TA"] == pytest.approx(metrics.accuracy_percent(test_pred, test_y))
    assert len(report["per_class_test"]) == 10 and report["per_class_test"][3] == 0.0
    expected_acc_r = np.mean([report["per_class_test"][c] for c in range(10) if c != 3])
    assert report["Acc_r"] == pytest.approx(expected_acc_r)
