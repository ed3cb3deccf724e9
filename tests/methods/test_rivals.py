"""The training-free rivals of UNSC: SVD class forgetting (svd_forget), ESC and ESC-T.

Each on a one-layer model whose answer is known by hand, then on digits and (slow) on mnist5k.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unlearn_core.errors import MethodError, ParameterError
from unlearn_core.methods import get_method
from unlearn_core.methods.base import UnlearnTask
from unlearn_core.models import UnlearnModel
from unlearn_core.pipeline import build_report, run_method
from unlearn_core.subspaces import scaled_importance

D = 4


def tiny_task(forget_rows: list[list[int]], bias=(0.0, 0.01, 0.02)) -> UnlearnTask:
    """A model whose features are the 4 pixels of a 1x1x4 image and whose head is W = [e0; e1; e2].

    Class c's images are ``forget_rows`` (class 0, forgotten) or ``255 e_c`` (classes 1 and 2),
    two of each, so every feature direction is chosen by hand.
    """
    rows = [r for r in forget_rows] + [[0, 255, 0, 0]] * 2 + [[0, 0, 255, 0]] * 2
    labels = [0] * len(forget_rows) + [1, 1, 2, 2]
    images = torch.tensor(rows, dtype=torch.uint8).reshape(-1, 1, 1, D)
    model = UnlearnModel(torch.nn.Flatten(), D, 3, (0.0,), (1.0,), {"name": "tiny"})
    with torch.no_grad():
        model.head.weight.copy_(torch.eye(3, D))
        model.head.bias.copy_(torch.tensor(bias))
    bundle = SimpleNamespace(train_x=images, train_y=torch.tensor(labels), num_classes=3, augmentation="none",
                             crop_padding=0)
    n_forget = len(forget_rows)
    split = SimpleNamespace(forget_idx=np.arange(n_forget), retain_idx=np.arange(n_forget, len(labels)),
                            forgotten_classes=(0,), remaining_classes=(1, 2), is_classwise=True)
    return UnlearnTask(bundle, split, model, torch.device("cpu"), 0, None, "tiny")


def head_after(method: str, task: UnlearnTask, params: dict | None = None):
    cls = get_method(method)
    output = cls().unlearn(task, cls.resolve_params(params))
    return output.model.head.weight.detach().double(), output


def without_e0(weight: torch.Tensor) -> torch.Tensor:
    projector = torch.eye(D, dtype=torch.float64)
    projector[0, 0] = 0.0
    return weight @ projector


def test_esc_removes_exactly_the_forget_direction():
    task = tiny_task([[255, 0, 0, 0], [200, 0, 0, 0]])
    original = task.original.head.weight.detach().double().clone()
    weight, output = head_after("esc", task, {"p": 25})  # int(4 * 25 / 100) = 1 direction
    assert torch.allclose(weight, without_e0(original), atol=1e-6)
    assert output.artifacts["erased_rank"] == 1
    assert output.artifacts["forget_energy_erased"] == pytest.approx(1.0)
    assert torch.equal(output.model.head.bias, task.original.head.bias)
    # The original model is untouched.
    assert torch.equal(task.original.head.weight.detach().double(), original)


def test_esc_with_no_direction_to_erase_leaves_the_head_alone():
    task = tiny_task([[255, 0, 0, 0]])
    weight, output = head_after("esc", task, {"p": 10})  # int(0.4) = 0
    assert output.artifacts["erased_rank"] == 0
    assert torch.allclose(weight, task.original.head.weight.double(), atol=1e-7)


def test_svd_forget_removes_a_direction_the_remaining_data_lacks():
    # The forget class lives on e0 alone (energy share 1, so lambda_f = 1 for any alpha_f): D = e0 e0^T and
    # P = I - e0 e0^T, whatever alpha_r, since e0 is orthogonal to the remaining data.
    task = tiny_task([[255, 0, 0, 0], [128, 0, 0, 0]])
    original = task.original.head.weight.detach().double().clone()
    weight, output = head_after("svd_forget", task)
    assert torch.allclose(weight, without_e0(original), atol=1e-6)
    row = output.artifacts["layers"][0]
    assert row["layer"] == "head" and row["removed_rank"] == 1 and row["top_strength"] == pytest.approx(1.0)
    assert output.artifacts["retain_samples"] == 4 and output.artifacts["forget_samples"] == 2


def test_svd_forget_protects_a_direction_shared_with_the_remaining_data():
    # Forget samples along e0 and e1 with equal energy; e1 is also a remaining class's direction. The update is
    # W P^T with P = I - M_f + M_f M_r, M_f = lam_f (e0 e0^T + e1 e1^T), M_r = lam_r (e1 e1^T + e2 e2^T).
    task = tiny_task([[255, 0, 0, 0], [0, 255, 0, 0]])
    original = task.original.head.weight.detach().double().clone()
    params = {"alpha_f": 3.0, "alpha_r": 100.0}
    weight, _ = head_after("svd_forget", task, params)
    lam_f = float(scaled_importance(torch.tensor([1.0, 1.0]), 3.0)[0])  # 0.75
    lam_r = float(scaled_importance(torch.tensor([1.0, 1.0]), 100.0)[0])  # 100 * 0.5 / 50.5
    m_f = torch.diag(torch.tensor([lam_f, lam_f, 0.0, 0.0], dtype=torch.float64))
    m_r = torch.diag(torch.tensor([0.0, lam_r, lam_r, 0.0], dtype=torch.float64))
    expected = original @ (torch.eye(D, dtype=torch.float64) - m_f + m_f @ m_r).T
    assert torch.allclose(weight, expected, atol=1e-6)
    # By hand: column 0 scaled by 1 - lam_f, column 1 by 1 - lam_f (1 - lam_r), the rest unchanged.
    assert weight[0, 0] == pytest.approx(1 - lam_f) and weight[1, 1] == pytest.approx(1 - lam_f * (1 - lam_r))
    assert weight[2, 2] == pytest.approx(1.0)


def test_esc_t_mask_erases_the_forget_direction_and_nothing_else():
    # Forget features c e0: P_m f = c m_00^2 e0 (the other basis columns have no e0 entry), so ascent on the
    # cross-entropy lowers one mask entry until the class-0 logit falls below the bias of class 2.
    task = tiny_task([[255, 0, 0, 0], [255, 0, 0, 0]])
    original = task.original.head.weight.detach().double().clone()
    weight, output = head_after("esc_t", task, {"lr": 0.5, "epochs": 50, "batch_size": 2})
    assert torch.allclose(weight, without_e0(original), atol=1e-6)
    artifacts = output.artifacts
    assert artifacts["forget_hits_binary"] == 0 and artifacts["erased_rank"] == 1
    assert artifacts["epochs_run"] < 50  # stopped once no forget sample was recognised
    assert artifacts["mask_kept_share"] == pytest.approx(15 / 16)  # one entry of the 4 x 4 mask erased


def test_esc_t_with_a_tiny_step_keeps_the_mask_and_the_model():
    task = tiny_task([[255, 0, 0, 0], [255, 0, 0, 0]])
    weight, output = head_after("esc_t", task, {"lr": 1e-6, "epochs": 2, "batch_size": 2})
    assert output.artifacts["erased_rank"] == 0 and output.artifacts["epochs_run"] == 2
    assert torch.allclose(weight, task.original.head.weight.double(), atol=1e-6)


def test_parameters_are_checked_and_defaults_are_the_releases():
    assert get_method("svd_forget").defaults() == {"alpha_r": 100.0, "alpha_f": 3.0, "samples": 900}
    assert get_method("esc").defaults() == {"p": 1.5}
    assert get_method("esc_t").defaults() == {"lr": 1e-3, "epochs": 50, "batch_size": 64, "threshold": 0.7}
    for method, bad in (("esc", {"p": 120}), ("esc_t", {"threshold": 1.5}), ("svd_forget", {"alpha_f": 0})):
        with pytest.raises(ParameterError):
            get_method(method).resolve_params(bad)
    for method in ("svd_forget", "esc", "esc_t"):
        assert get_method(method).forget_kinds == ("class",)


def test_empty_forget_set_is_refused():
    task = tiny_task([[255, 0, 0, 0]])
    task.split.forget_idx = np.arange(0)
    for method in ("svd_forget", "esc", "esc_t"):
        cls = get_method(method)
        with pytest.raises(MethodError):
            cls().unlearn(task, cls.defaults())


# ESC-T's release step size (1e-3) does not move the mask of the saturated digits MLP (the correctly classified
# forget samples' cross-entropy gradient is ~0), so the digits check uses 0.1 (docs/RIVALS.md).
DIGITS = {"svd_forget": ({}, 40.0, 2.0), "esc": ({}, 10.0, 6.0), "esc_t": ({"lr": 0.1}, 5.0, 3.0)}


@pytest.mark.parametrize("method", sorted(DIGITS))
def test_digits_forgotten_class_drops_and_the_rest_hold(digits_class3, method):
    params, max_acc_f, max_acc_r_loss = DIGITS[method]
    run = run_method(digits_class3, method, params)
    report = build_report(digits_class3, run).to_dict()
    original, unlearned = report["original"], report["unlearned"]
    assert original["Acc_f"] > 90
    assert unlearned["Acc_f"] <= max_acc_f, unlearned
    assert unlearned["Acc_r"] >= original["Acc_r"] - max_acc_r_loss, (unlearned, original)


@pytest.mark.slow
@pytest.mark.parametrize("method, params, max_acc_f", [
    ("esc", {}, 10.0),                        # release default p = 1.5: one direction; measured Acc_f 2 (seed 0)
    ("svd_forget", {"alpha_f": 10.0}, 5.0),   # in the release's tuning grid; measured Acc_f 2 (seed 0)
    ("esc_t", {"lr": 1.0}, 10.0),             # measured Acc_f 2 in 5 epochs (seed 0)
])
def test_mnist5k_class3_forgotten_and_the_rest_hold(mnist_class3, method, params, max_acc_f):
    run = run_method(mnist_class3, method, params)
    report = build_report(mnist_class3, run).to_dict()
    original, unlearned = report["original"], report["unlearned"]
    assert unlearned["Acc_f"] <= max_acc_f, unlearned
    assert unlearned["Acc_r"] >= original["Acc_r"] - 2.0, (unlearned, original)


@pytest.mark.slow
def test_mnist5k_release_defaults_that_fall_short(mnist_class3):
    """What the release defaults do on mnist5k where they do not reach Acc_f near 0 (docs/RIVALS.md).

    SVD class forgetting at alpha_f = 3 removes most of class 3 but not all (measured Acc_f 15 on seed 0);
    ESC-T's step size 1e-3 cannot move the mask: the confident small_cnn gives the mask a gradient of at most
    ~6e-3 per entry, so 50 epochs of 7 steps leave it at 1 and nothing is erased.
    """
    run = run_method(mnist_class3, "svd_forget")
    report = build_report(mnist_class3, run).to_dict()
    original, unlearned = report["original"], report["unlearned"]
    assert 2.0 < unlearned["Acc_f"] < 50.0, unlearned
    assert unlearned["Acc_r"] >= original["Acc_r"] - 2.0
    run = run_method(mnist_class3, "esc_t")
    assert run.artifacts["erased_rank"] == 0 and run.artifacts["epochs_run"] == 50
    assert run.artifacts["mask_kept_share"] == 1.0
    assert build_report(mnist_class3, run).unlearned.Acc_f >= original["Acc_f"] - 2.0
