"""End-to-end tests of the UNSC method: accuracy shape, several classes, drift, labels, artifacts, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import prepared
from unlearn_core.errors import ParameterError
from unlearn_core.methods import get_method
from unlearn_core.methods._common import fit_classifier, random_labels
from unlearn_core.methods.base import freeze_batchnorm
from unlearn_core.methods.unsc import pseudo_labels
from unlearn_core.nullspace import preactivation_drift
from unlearn_core.pipeline import build_report, run_method
from unlearn_core.report import Report


def _check_shape(report: Report) -> None:
    unlearned, retrained = report.unlearned, report.retrained
    assert unlearned.Acc_f <= 2.0, unlearned
    assert unlearned.Acc_r >= retrained.Acc_r - 1.0, (unlearned, retrained)


def test_digits_one_class_forgotten_with_defaults(digits_class3):
    run = run_method(digits_class3, "unsc")
    report = build_report(digits_class3, run)
    _check_shape(report)
    assert report.original.Acc_f > 90  # there was something to forget
    artifacts = run.artifacts
    assert [row["layer"] for row in artifacts["layers"]] == ["body.1", "body.3", "head"]
    assert all(0 < row["rank"] < row["input_dim"] for row in artifacts["layers"])
    assert set(artifacts["spectrum"]) == {"body.1", "body.3", "head"}
    assert all(0.5 < share <= 1.0 for share in artifacts["gradient_removed_share"].values())
    # Pseudo-labels never name the forgotten class.
    assert artifacts["target_counts"][3] == 0 and sum(artifacts["target_counts"]) == report.n_forget


def test_digits_two_classes_forgotten_at_once():
    setup = prepared("digits", "class:1,3", "mlp")
    run = run_method(setup, "unsc")
    report = build_report(setup, run)
    _check_shape(report)
    counts = run.artifacts["target_counts"]
    assert counts[1] == 0 and counts[3] == 0


def test_remaining_preactivations_move_far_less_than_without_projection(digits_class3):
    """The null space is what keeps remaining-data pre-activations in place.

    Same forget samples, labels, optimiser and steps, with and without the
    projection: with it, every layer's pre-activations on remaining inputs move
    at least 5x less, and at the output layer the forget inputs move at least
    5x more than the remaining ones.
    """
    setup = digits_class3
    run = run_method(setup, "unsc")
    params = run.params
    task = setup.task()
    forget_x, forget_y = task.forget_data()
    targets = pseudo_labels(task.frozen_original(), forget_x, forget_y, (3,), task.device)
    unprojected = task.copy_original()
    optimizer = torch.optim.SGD(unprojected.parameters(), lr=params["lr"])
    fit_classifier(unprojected, forget_x, targets, task, optimizer, params["epochs"], params["batch_size"],
                   train_mode=freeze_batchnorm)
    retain_x, _ = task.retain_data()
    original = setup.original.model
    with_projection = preactivation_drift(original, run.model, retain_x)
    without_projection = preactivation_drift(original, unprojected, retain_x)
    for layer, drift in with_projection.items():
        assert drift * 5 < without_projection[layer], (layer, drift, without_projection[layer])
    forget_drift = preactivation_drift(original, run.model, forget_x)
    assert forget_drift["head"] > 5 * with_projection["head"]
    # The artifacts report the same picture on their probe samples.
    artifact = run.artifacts["preactivation_drift"]
    assert artifact["forget"]["head"] > 5 * artifact["remaining"]["head"]


def test_random_label_ablation_runs_and_never_targets_forgotten_or_own_class(digits_class3):
    run = run_method(digits_class3, "unsc", {"labels": "random", "epochs": 5})
    assert run.artifacts["target_counts"][3] == 0
    labels = torch.tensor([0, 1, 2, 3] * 50)
    drawn = random_labels(labels, 5, torch.Generator().manual_seed(0), "remaining_wrong", (4,))
    assert not bool((drawn == labels).any()) and not bool((drawn == 4).any())
    assert len(torch.unique(drawn)) == 4


def test_incremental_basis_meets_the_shape_too(digits_class3):
    run = run_method(digits_class3, "unsc", {"basis": "incremental"})
    _check_shape(build_report(digits_class3, run))
    assert run.artifacts["basis_form"] == "incremental"


def test_random_forget_set_uses_the_best_other_class(digits_random):
    setup = digits_random
    run = run_method(setup, "unsc", {"epochs": 3})
    task = setup.task()
    forget_x, forget_y = task.forget_data()
    targets = pseudo_labels(task.frozen_original(), forget_x, forget_y, (), task.device)
    assert not bool((targets == forget_y).any())
    assert np.array_equal(np.bincount(targets.numpy(), minlength=10), run.artifacts["target_counts"])
    report = build_report(setup, run)
    # The remaining classes are protected here as well.
    assert report.unlearned.TA >= report.original.TA - 2.0


def test_bad_parameters_are_refused():
    unsc = get_method("unsc")
    with pytest.raises(ParameterError):
        unsc.resolve_params({"eps": 1.5})
    with pytest.raises(ParameterError):
        unsc.resolve_params({"labels": "second-best"})
    assert unsc.resolve_params({})["eps"] == 0.99


@pytest.mark.slow
def test_mnist5k_small_cnn_defaults_reach_the_paper_shape(mnist_class3):
    run = run_method(mnist_class3, "unsc")
    report = build_report(mnist_class3, run)
    _check_shape(report)
    assert [row["layer"] for row in run.artifacts["layers"]][:2] == ["body.0.0", "body.0.3"]


def test_forget_gradient_shares_grow_to_the_whole_gradient(digits_class3):
    import torch

    from unlearn_core.methods.unsc import forget_gradient_shares
    from unlearn_core.nullspace import build_retained_space

    setup = digits_class3
    model = setup.original.model
    retain = setup.bundle.train_x[torch.as_tensor(setup.split.retain_idx[:400])]
    space = build_retained_space(model, retain, 0.99, setup.device)
    forget = setup.bundle.train_x[torch.as_tensor(setup.split.forget_idx)]
    targets = torch.zeros(len(forget), dtype=torch.long)
    shares = forget_gradient_shares(model, space, forget, targets, setup.device)
    assert set(shares) == set(space.layers)
    for name, share in shares.items():
        assert share[0] == 0 and np.all(np.diff(share) >= -1e-9)
        assert share[-1] == pytest.approx(1.0, abs=1e-6)  # the full basis captures the whole gradient
    # the first layer's input (pixels) is the same for forget and remaining data: most of its gradient is protected
    first = next(iter(shares))
    assert shares[first][space.layers[first].rank(0.99)] > 0.5
