"""The NatMU method: its wiring, its gallery artifact, and end-to-end unlearning on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearn_core.errors import ParameterError
from unlearn_core.forget import ForgetSpec
from unlearn_core.hybrids import recompute_hybrids, tent_masks
from unlearn_core.methods import UnlearnTask, get_method
from unlearn_core.methods import natmu as natmu_module
from unlearn_core.pipeline import build_report, run_method


def _capture_fit(monkeypatch):
    """Replace the fine-tuning loop by a recorder, to inspect what NatMU trains on without training."""
    seen = {}

    def fake_fit(model, images, labels, task, optimizer, epochs, batch_size, **kwargs):
        seen.update(model=model, images=images, labels=labels, optimizer=optimizer, epochs=epochs,
                    batch_size=batch_size, **kwargs)
        return {"final_loss": 0.0}

    monkeypatch.setattr(natmu_module, "fit_classifier", fake_fit)
    return seen


def _run(task, **params):
    method = get_method("natmu")
    return method().unlearn(task, method.resolve_params(params))


def test_trains_on_augmented_remaining_data_plus_unaugmented_hybrids(digits_random, monkeypatch):
    seen = _capture_fit(monkeypatch)
    task = digits_random.task()
    output = _run(task)
    retain_x, retain_y = task.retain_data()
    n_forget, n_retain = len(task.split.forget_idx), len(retain_y)
    assert len(seen["labels"]) == n_retain + 4 * n_forget
    torch.testing.assert_close(seen["images"][:n_retain], retain_x)
    torch.testing.assert_close(seen["labels"][:n_retain], retain_y)
    mask = seen["augment_mask"]
    assert mask[:n_retain].all() and not mask[n_retain:].any()
    assert seen["augment"] == task.recipe.augment and seen["images"].dtype == torch.uint8
    assert isinstance(seen["optimizer"], torch.optim.AdamW)
    assert seen["optimizer"].param_groups[0]["lr"] == pytest.approx(1e-3)
    assert seen["epochs"] == 5 and seen["batch_size"] == 128 and seen["scheduler_per_step"] is not None
    # Random forgetting keeps the head; every hybrid borrows another class's correct label.
    torch.testing.assert_close(seen["model"].head.weight, task.original.head.weight)
    assert output.artifacts["reinit_head"] is False and output.artifacts["reused"] == 0
    train_y = task.bundle.train_y.numpy()
    hybrid_labels = seen["labels"][n_retain:].numpy()
    forget_labels = np.repeat(train_y[task.split.forget_idx], 4)
    assert not np.any(hybrid_labels == forget_labels)


def test_hybrids_are_the_blends_of_the_gallery(digits_random, monkeypatch):
    seen = _capture_fit(monkeypatch)
    task = digits_random.task()
    gallery = _run(task, delta=-0.05)
    gallery = gallery.artifacts["gallery"]
    bundle, split = task.bundle, task.split
    n = len(gallery["forget_index"])
    assert n == 6 and gallery["hybrid_images"].shape == (6, 4, 1, 8, 8)
    assert gallery["forget_images"].dtype == np.uint8 and gallery["partner_images"].dtype == np.uint8
    assert len(set(gallery["forget_labels"].tolist())) == 6, "the gallery should show varied classes"
    assert np.isin(gallery["forget_index"], split.forget_idx).all()
    assert np.isin(gallery["partner_index"], split.retain_idx).all()
    train_y = bundle.train_y.numpy()
    np.testing.assert_array_equal(gallery["forget_labels"], train_y[gallery["forget_index"]])
    np.testing.assert_array_equal(gallery["hybrid_labels"], train_y[gallery["partner_index"]])
    np.testing.assert_array_equal(gallery["partner_images"], bundle.train_x.numpy()[gallery["partner_index"]])
    np.testing.assert_array_equal(gallery["masks"], tent_masks(8, 8, -0.05))
    masks, hybrids = recompute_hybrids(gallery["forget_images"], gallery["partner_images"], gallery["delta"])
    np.testing.assert_array_equal(hybrids, gallery["hybrid_images"])
    # The gallery's hybrids are exactly the images the model was fine-tuned on.
    trained = seen["images"][len(split.retain_idx):].numpy().reshape(-1, 4, 1, 8, 8)
    forget_rows = np.searchsorted(split.forget_idx, gallery["forget_index"])
    np.testing.assert_array_equal(trained[forget_rows], gallery["hybrid_images"])


def test_classwise_resets_the_head_and_borrows_only_remaining_classes(digits_class3, monkeypatch):
    seen = _capture_fit(monkeypatch)
    task = digits_class3.task()
    output = _run(task)
    assert output.artifacts["reinit_head"] is True
    assert not torch.allclose(seen["model"].head.weight, task.original.head.weight)
    torch.testing.assert_close(seen["model"].head.bias, task.original.head.bias)
    hybrid_labels = seen["labels"][len(task.split.retain_idx):]
    assert len(hybrid_labels) == 4 * len(task.split.forget_idx) and not (hybrid_labels == 3).any()
    assert not (output.artifacts["gallery"]["hybrid_labels"] == 3).any()
    kept = _run(task, reinit_head="no")
    assert kept.artifacts["reinit_head"] is False
    torch.testing.assert_close(seen["model"].head.weight, task.original.head.weight)


def test_hybrids_per_sample_shrink_to_the_classes_left(digits_class3, monkeypatch):
    seen = _capture_fit(monkeypatch)
    setup = digits_class3
    split = ForgetSpec.parse("class:0,1,2,3,4,5,6,7").resolve(setup.bundle, 0)
    task = UnlearnTask(setup.bundle, split, setup.original.model, setup.device, 0, setup.recipe, setup.model_name)
    output = _run(task, num_hybrids=9)
    hybrid_labels = seen["labels"][len(split.retain_idx):]
    assert len(hybrid_labels) == 2 * len(split.forget_idx)
    assert set(hybrid_labels.tolist()) == {8, 9}
    assert output.artifacts["hybrids_per_sample_max"] == 2
    assert output.artifacts["gallery"]["hybrid_images"].shape[1] == 2


def test_bad_parameters_are_rejected():
    method = get_method("natmu")
    for bad in ({"delta": 1.5}, {"num_hybrids": 0}, {"reinit_head": "maybe"}, {"lr": -1}, {"epochs": 0}):
        with pytest.raises(ParameterError):
            method.resolve_params(bad)


def test_random_forgetting_keeps_fa_near_retrain(digits_random):
    setup = digits_random
    before = {k: v.clone() for k, v in setup.original.model.state_dict().items()}
    natural = build_report(setup, run_method(setup, "natmu"))
    for key, value in setup.original.model.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=f"NatMU changed the original model's {key}")
    unlearned, retrained = natural.unlearned, natural.retrained
    assert abs(unlearned.FA - retrained.FA) <= 3.0
    assert abs(unlearned.TA - retrained.TA) <= 2.0


def test_class_forgetting_collapses_the_forgotten_class(digits_class3):
    setup = digits_class3
    report = build_report(setup, run_method(setup, "natmu"))
    assert report.original.Acc_f > 80
    assert report.unlearned.Acc_f <= 2.0
    assert abs(report.unlearned.Acc_r - report.retrained.Acc_r) <= 2.0
