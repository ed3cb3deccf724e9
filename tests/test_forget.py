"""Forget specs: parsing, resolution and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearn_core.data import DatasetBundle, load_dataset
from unlearn_core.errors import ForgetSpecError
from unlearn_core.forget import ForgetSpec, indices_spec


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_class_forgetting_takes_every_sample_of_the_classes(digits):
    split = ForgetSpec.parse("class:1,3,5").resolve(digits)
    train_y = digits.train_y.numpy()
    assert set(train_y[split.forget_idx]) == {1, 3, 5}
    assert not np.isin(train_y[split.retain_idx], [1, 3, 5]).any()
    assert len(split.forget_idx) + len(split.retain_idx) == len(train_y)
    assert set(digits.test_y.numpy()[split.test_forget_idx]) == {1, 3, 5}
    assert split.forgotten_classes == (1, 3, 5) and split.remaining_classes == (0, 2, 4, 6, 7, 8, 9)


def test_random_forgetting_is_class_balanced_and_seeded(digits):
    spec = ForgetSpec.parse("random:0.1")
    first, again, other = spec.resolve(digits, 0), spec.resolve(digits, 0), spec.resolve(digits, 1)
    assert np.array_equal(first.forget_idx, again.forget_idx)
    assert not np.array_equal(first.forget_idx, other.forget_idx)
    per_class = np.bincount(digits.train_y.numpy()[first.forget_idx], minlength=10)
    totals = np.bincount(digits.train_y.numpy(), minlength=10)
    assert np.all(np.abs(per_class - 0.1 * totals) <= 1)
    assert first.forgotten_classes == () and len(first.test_forget_idx) == 0


def test_indices_inline_and_from_file(digits, tmp_path):
    inline = ForgetSpec.parse("indices:5,1,5,9").resolve(digits)
    assert inline.forget_idx.tolist() == [1, 5, 9]
    path = tmp_path / "picked.txt"
    path.write_text("3\n7, 11\n")
    assert ForgetSpec.parse(f"indices:{path}").resolve(digits).forget_idx.tolist() == [3, 7, 11]
    np.save(tmp_path / "picked.npy", np.array([2, 4]))
    assert ForgetSpec.parse(f"indices:{tmp_path / 'picked.npy'}").resolve(digits).forget_idx.tolist() == [2, 4]
    assert indices_spec([8, 2]).resolve(digits).forget_idx.tolist() == [2, 8]


def test_class_names_are_accepted():
    bundle = load_dataset("digits")
    assert ForgetSpec.parse("class:7").resolve(bundle).forgotten_classes == (7,)


@pytest.mark.parametrize("text, message", [
    ("class:11", "unknown class 11"),
    ("class:cat", "unknown class 'cat'"),
    ("class:0,1,2,3,4,5,6,7,8,9", "leaves nothing"),
    ("random:0", "strictly between 0 and 1"),
    ("random:1.5", "strictly between 0 and 1"),
    ("random:nan", "strictly between 0 and 1"),
    ("random:abc", "not a number"),
    ("indices:99999", "out of range"),
    ("indices:-1", "out of range"),
    ("indices:/no/such/file", "does not exist"),
    ("class:", "nothing after"),
    ("pixels:3", "unknown forget kind"),
    ("3", "must look like KIND:VALUE"),
    ("subclass:3", "no fine classes"),
])
def test_invalid_specs_fail_clearly(digits, text, message):
    with pytest.raises(ForgetSpecError, match=message):
        ForgetSpec.parse(text).resolve(digits)


def test_forgetting_every_index_is_refused(digits):
    everything = ",".join(str(i) for i in range(len(digits.train_y)))
    with pytest.raises(ForgetSpecError, match="whole training set"):
        ForgetSpec.parse(f"indices:{everything}").resolve(digits)


def test_subclass_forgets_one_fine_class_inside_its_superclass():
    fine = torch.arange(40) % 4          # fine classes 0..3
    coarse = fine // 2                   # super-classes {0,1} -> 0, {2,3} -> 1
    images = torch.zeros(40, 1, 4, 4, dtype=torch.uint8)
    bundle = DatasetBundle("toy", images, coarse, images[:8], coarse[:8], ["a", "b"], (0.5,), (0.5,),
                           fine_train_y=fine, fine_test_y=fine[:8], fine_names=["w", "x", "y", "z"])
    split = ForgetSpec.parse("subclass:x").resolve(bundle)
    assert (fine[split.forget_idx] == 1).all() and len(split.forget_idx) == 10
    assert split.forgotten_classes == ()  # the super-class itself stays
    assert (fine[:8][split.test_forget_idx] == 1).all() and len(split.test_forget_idx) == 2
