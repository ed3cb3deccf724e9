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


def _two_class_with_entropy(values):
    """Two-class softmax rows whose Shannon entropies are ``values`` (nats, each < ln 2), found by bisection."""
    rows = []
    for target in values:
        low, high = 0.5, 1.0  # H(p) falls from ln 2 at p = 0.5 to 0 at p = 1
        for _ in range(80):
            mid = (low + high) / 2
            h = -(mid * math.log(mid) + (1 - mid) * math.log(1 - mid)) if mid < 1 else 0.0
            low, high = (mid, high) if h > target else (low, mid)
        rows.append([high, 1 - high])
    return np.array(rows)


def test_entropy_mia_thresholds_the_raw_entropy():
    """Members' entropies fill [0, 0.2], non-members' [0.4, 0.6]: symmetric about 0.3, so a balanced logistic
    regression on the raw entropy puts its boundary at 0.3. Targets at 0.05 and 0.25 are members, 0.35 is not:
    2 of 3 called members. (On log-entropy the boundary moves far below 0.05 and the answer is 0 %.)"""
    members = _two_class_with_entropy(np.linspace(0.0, 0.2, 300))
    nonmembers = _two_class_with_entropy(np.linspace(0.4, 0.6, 300))
    targets = _two_class_with_entropy([0.05, 0.25, 0.35])
    np.testing.assert_allclose(metrics.entropy(targets), [0.05, 0.25, 0.35], atol=1e-6)
    assert metrics.mia_entropy(members, nonmembers, targets) == pytest.approx(200 / 3)


def test_modified_entropy_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.9, 0.0]])
    expected_first = -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    # A confident wrong prediction scores high: -(0.9) ln 0.1 - 0.9 ln 0.1 for the wrong class.
    expected_second = -0.9 * math.log(0.1) - 0.9 * math.log(0.1)
    np.testing.assert_allclose(metrics.modified_entropy(probs, np.array([0, 0])), [expected_first, expected_second],
                               rtol=1e-6)


def test_svc_mia_is_the_confidence_attack_and_reports_the_others():
    """Members give their true class 0.95, non-members 0.5 (each with the rest spread evenly over 9 classes).
    The confidence attack calls a target with 0.95 a member (0 % non-members) and one with 0.5 a non-member."""
    def rows(confidence, n):
        probs = np.full((n, 10), (1 - confidence) / 9)
        probs[:, 0] = confidence
        return probs, np.zeros(n, dtype=int)

    members, member_y = rows(0.95, 200)
    nonmembers, nonmember_y = rows(0.5, 200)
    member_like, y1 = rows(0.95, 10)
    unseen_like, y2 = rows(0.5, 10)
    assert metrics.mia_svc(members, member_y, nonmembers, nonmember_y, member_like, y1) == 0.0
    assert metrics.mia_svc(members, member_y, nonmembers, nonmember_y, unseen_like, y2) == 100.0
    attacks = metrics.mia_svc_attacks(members, member_y, nonmembers, nonmember_y, unseen_like, y2)
    assert set(attacks) == {"correctness", "confidence", "entropy", "m_entropy", "prob"}
    # Entropy, modified entropy and the probability vector separate these two groups as well.
    assert attacks["entropy"] == attacks["m_entropy"] == attacks["prob"] == 100.0
    # Every sample is classified right on both sides: correctness cannot tell them apart, whatever it answers.
    assert attacks["correctness"] in (0.0, 100.0)


def test_avg_gap_uses_remaining_class_test_accuracy_for_class_forgetting():
    unlearned = {"TA": 80.0, "TA_retain": 90.0, "RA": 99.0, "FA": 10.0, "MIA_entropy": 20.0}
    retrained = {"TA": 81.0, "TA_retain": 92.0, "RA": 100.0, "FA": 0.0, "MIA_entropy": 30.0}
    assert metrics.avg_gap(unlearned, retrained, metrics.AVG_GAP_KEYS_CLASSWISE) == pytest.approx((2 + 1 + 10 + 10) / 4)
    assert metrics.avg_gap(unlearned, retrained) == pytest.approx((1 + 1 + 10 + 10) / 4)


def test_acc_f_of_several_classes_is_the_mean_of_their_accuracies():
    """Class 0 has 1 test sample (right), class 1 has 3 (all wrong): the mean per class is 50 %, pooled is 25 %."""
    import torch

    from unlearn_core.data import DatasetBundle
    from unlearn_core.forget import ForgetSpec

    train_y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    test_y = torch.tensor([0, 1, 1, 1, 2, 2])
    bundle = DatasetBundle(name="tiny", train_x=torch.zeros(7, 1, 2, 2, dtype=torch.uint8), train_y=train_y,
                           test_x=torch.zeros(6, 1, 2, 2, dtype=torch.uint8), test_y=test_y,
                           class_names=["a", "b", "c"], mean=(0.5,), std=(0.5,))
    split = ForgetSpec.parse("class:0,1").resolve(bundle)
    onehot = lambda labels: np.eye(3)[labels]  # noqa: E731
    outputs = {"forget": onehot([0, 0, 1, 1]), "retain": onehot([2, 2, 2]),
               "test": onehot([0, 2, 2, 2, 2, 0])}
    report = metrics.evaluate_outputs(outputs, bundle, split)
    assert report["Acc_f"] == pytest.approx(50.0)
    assert report["TA"] == pytest.approx(100 * 2 / 6) and report["TA_retain"] == pytest.approx(50.0)
    assert set(report["MIA_svc_detail"]) == {"correctness", "entropy", "m_entropy", "prob"}


def _tiny_bundle(train_y, test_y, num_classes):
    import torch

    from unlearn_core.data import DatasetBundle

    train_y, test_y = torch.as_tensor(train_y), torch.as_tensor(test_y)
    return DatasetBundle(name="tiny", train_x=torch.zeros(len(train_y), 1, 2, 2, dtype=torch.uint8), train_y=train_y,
                         test_x=torch.zeros(len(test_y), 1, 2, 2, dtype=torch.uint8), test_y=test_y,
                         class_names=[str(c) for c in range(num_classes)], mean=(0.5,), std=(0.5,))


def _three_class_with_entropy(values, label):
    """Rows over three classes whose entropy is ``values`` (two-class rows, put on ``label`` and the next class)."""
    two = _two_class_with_entropy(values)
    rows = np.zeros((len(two), 3))
    rows[:, label] = two[:, 0]
    rows[:, (label + 1) % 3] = two[:, 1]
    return rows


def test_entropy_mia_takes_the_whole_test_set_as_non_members_and_names_the_variant():
    """Class 2 is forgotten. Remaining train samples (members) have entropy in [0, 0.2] and the remaining classes'
    test samples [0.4, 0.6]: without the forgotten class's test samples the boundary is 0.3 and all forget samples
    (entropy 0.2-0.28) are called members. The forgotten class's test samples (entropy 0-0.1, as an original model
    that still knows class 2 gives them) join the non-members in NatMU's and SSD's releases and pull the boundary
    down to about 0.17, below every forget sample."""
    from unlearn_core.forget import ForgetSpec

    members = _three_class_with_entropy(np.linspace(0.0, 0.2, 300), 0)
    forget = _three_class_with_entropy(np.linspace(0.2, 0.28, 30), 2)
    test_retain = _three_class_with_entropy(np.linspace(0.4, 0.6, 300), 1)
    test_forget = _three_class_with_entropy(np.linspace(0.0, 0.1, 300), 2)
    bundle = _tiny_bundle([0] * 300 + [2] * 30, [1] * 300 + [2] * 300, 3)
    split = ForgetSpec.parse("class:2").resolve(bundle)
    outputs = {"retain": members, "forget": forget, "test": np.vstack([test_retain, test_forget])}
    result = metrics.evaluate_outputs(outputs, bundle, split, seed=0, svc_draws=2)
    assert result["MIA_entropy_retain_test"] == 100.0
    assert result["MIA_entropy_retain_test"] == metrics.mia_entropy(members, test_retain, forget)
    assert result["MIA_entropy"] == metrics.mia_entropy(members, outputs["test"], forget)
    assert result["MIA_entropy"] == 0.0


def test_mean_ci95_is_the_student_t_interval_of_the_mean():
    mean, half, k = metrics.mean_ci95([1.0, 2.0, 3.0, 4.0, float("nan")])
    # t_{0.975, 3} = 3.182446; s = sqrt(5/3).
    assert (mean, k) == (2.5, 4)
    assert half == pytest.approx(3.182446 * math.sqrt(5 / 3) / 2, rel=1e-6)
    assert metrics.mean_ci95([7.0, 7.0]) == (7.0, 0.0, 2)
    one = metrics.mean_ci95([5.0])
    assert one[0] == 5.0 and math.isnan(one[1]) and one[2] == 1
    assert math.isnan(metrics.mean_ci95([])[0])


def _confidence_rows(confidences, n_classes=10):
    confidences = np.asarray(confidences, dtype=np.float64)
    probs = np.repeat(((1 - confidences) / (n_classes - 1))[:, None], n_classes, axis=1)
    probs[:, 0] = confidences
    return probs, np.zeros(len(confidences), dtype=int)


def test_svc_mia_is_a_mean_over_seeded_draws_and_salun_sampling_is_its_own_key():
    """Non-members: 100 test samples with confidence 0.5. Members: the first 100 remaining samples at 0.95, the
    other 900 at 0.7. SalUn's sampling takes exactly the first 100 (0.95 vs 0.5): a forget sample at 0.65 lies on the
    non-member side. A random draw of 100 members is mostly 0.7 (0.7 vs 0.5): the same sample lies on the member
    side, in every draw. So MIA_svc (mean of 10 draws) is 0 and MIA_svc_salun 100."""
    from unlearn_core.forget import ForgetSpec, ForgetSplit

    members, member_y = _confidence_rows([0.95] * 100 + [0.7] * 900)
    nonmembers, nonmember_y = _confidence_rows([0.5] * 100)
    targets, target_y = _confidence_rows([0.65] * 10)
    salun = metrics.mia_svc_salun(members, member_y, nonmembers, nonmember_y, targets, target_y)
    assert salun == {"confidence": 100.0}
    draws = metrics.mia_svc_draws(members, member_y, nonmembers, nonmember_y, targets, target_y, seed=3, draws=4)
    assert draws["confidence"] == [0.0] * 4
    # Draws differ from each other and are fixed by the seed.
    picks = [np.random.default_rng((3, k)).choice(1000, 100, replace=False) for k in range(2)]
    assert not np.array_equal(picks[0], picks[1])
    assert metrics.mia_svc_draws(members, member_y, nonmembers, nonmember_y, targets, target_y, seed=3, draws=4) \
        == draws

    bundle = _tiny_bundle([0] * 1010, [0] * 100, 10)
    split = ForgetSplit(spec=ForgetSpec.parse("random:0.01"), forget_idx=np.arange(1000, 1010),
                        retain_idx=np.arange(1000), test_forget_idx=np.zeros(0, dtype=int),
                        test_retain_idx=np.arange(100), forgotten_classes=(), num_classes=10)
    result = metrics.evaluate_outputs({"retain": members, "forget": targets, "test": nonmembers}, bundle, split, seed=3)
    assert result["MIA_svc"] == 0.0 and result["MIA_svc_ci95"] == 0.0 and result["MIA_svc_draws"] == 10
    assert result["MIA_svc_salun"] == 100.0
    assert set(result["MIA_svc_detail"]) == {"correctness", "entropy", "m_entropy", "prob"}


def test_svc_mia_draws_report_their_spread():
    """Members and non-members overlap (confidence uniform on [0.6, 1] vs [0.5, 0.9]) and the forget samples sit in
    the overlap, so which members are drawn moves the answer: the report gives the mean and its 95 % interval."""
    rng = np.random.default_rng(0)
    members, member_y = _confidence_rows(rng.uniform(0.6, 1.0, 3000))
    nonmembers, nonmember_y = _confidence_rows(rng.uniform(0.5, 0.9, 300))
    targets, target_y = _confidence_rows(np.linspace(0.7, 0.8, 50))
    values = metrics.mia_svc_draws(members, member_y, nonmembers, nonmember_y, targets, target_y, seed=0,
                                   draws=10)["confidence"]
    assert len(set(values)) > 1
    mean, half, k = metrics.mean_ci95(values)
    assert k == 10 and mean == pytest.approx(np.mean(values))
    assert half == pytest.approx(2.262157 * np.std(values, ddof=1) / math.sqrt(10), rel=1e-5)
