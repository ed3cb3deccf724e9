"""The paper settings' data path: torchvision data sets loaded from files in torchvision's own on-disk format.

No download is possible here, so each test writes a tiny copy of the files
torchvision reads (MNIST's idx files, CIFAR's pickled batches, SVHN's .mat)
and loads it through ``load_dataset``. CIFAR and SVHN check the files' MD5
sums against the real downloads; that one check is switched off for the
tiny copies, everything else (parsing, layout, labels) is torchvision's.
"""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from unlearn_core.data import load_dataset

RNG = np.random.default_rng(0)


def _skip_md5(monkeypatch, module_name: str) -> None:
    """The file must still exist; only the MD5 comparison with the real download is dropped."""
    import importlib
    import os

    module = importlib.import_module(f"torchvision.datasets.{module_name}")
    monkeypatch.setattr(module, "check_integrity", lambda path, md5=None: os.path.isfile(path))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    return tmp_path / "datasets"


def _idx(path, array: np.ndarray, compress: bool = False) -> None:
    """An idx file: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian dimensions, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if compress else payload)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_style_sets_load_from_idx_files(data_dir, name, folder):
    raw = data_dir / name / folder / "raw"
    train_x, test_x = RNG.integers(0, 256, (30, 28, 28)), RNG.integers(0, 256, (20, 28, 28))
    train_y, test_y = np.arange(30) % 10, np.arange(20) % 10
    _idx(raw / "train-images-idx3-ubyte", train_x)
    _idx(raw / "train-labels-idx1-ubyte", train_y)
    _idx(raw / "t10k-images-idx3-ubyte", test_x)
    _idx(raw / "t10k-labels-idx1-ubyte", test_y)
    bundle = load_dataset(name)
    assert bundle.train_x.shape == (30, 1, 28, 28) and bundle.test_x.shape == (20, 1, 28, 28)
    assert np.array_equal(bundle.train_x[:, 0].numpy(), train_x) and np.array_equal(bundle.test_y.numpy(), test_y)
    assert bundle.num_classes == 10 and bundle.default_model == "small_cnn"


def _cifar_batch(n: int, labels_key: str, classes: int, extra: dict | None = None) -> dict:
    data = RNG.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8)  # rows of R, G, B planes, as CIFAR stores them
    return {"data": data, labels_key: list(np.arange(n) % classes), **(extra or {})}


def test_cifar10_loads_from_pickled_batches(data_dir, monkeypatch):
    _skip_md5(monkeypatch, "cifar")
    folder = data_dir / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _cifar_batch(4, "labels", 10) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(6, "labels", 10)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    bundle = load_dataset("cifar10")
    assert bundle.train_x.shape == (20, 3, 32, 32) and bundle.test_x.shape == (6, 3, 32, 32)
    first = batches["data_batch_1"]["data"][0].reshape(3, 32, 32)
    assert np.array_equal(bundle.train_x[0].numpy(), first)  # channels first, planes intact
    assert bundle.class_names == names and bundle.augmentation == "crop_flip"


def test_cifar100_and_its_super_classes_load_from_pickles(data_dir, monkeypatch):
    _skip_md5(monkeypatch, "cifar")
    folder = data_dir / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    train = _cifar_batch(200, "fine_labels", 100)
    train["coarse_labels"] = [label // 5 for label in train["fine_labels"]]
    test = _cifar_batch(100, "fine_labels", 100)
    test["coarse_labels"] = [label // 5 for label in test["fine_labels"]]
    (folder / "train").write_bytes(pickle.dumps(train))
    (folder / "test").write_bytes(pickle.dumps(test))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"fine{i}" for i in range(100)],
                                                "coarse_label_names": [f"super{i}" for i in range(20)]}))
    fine = load_dataset("cifar100")
    assert fine.num_classes == 100 and fine.train_x.shape == (200, 3, 32, 32)
    coarse = load_dataset("cifar20")
    assert coarse.num_classes == 20 and coarse.class_names[3] == "super3"
    assert np.array_equal(coarse.train_y.numpy(), np.array(train["coarse_labels"]))
    assert np.array_equal(coarse.fine_train_y.numpy(), np.array(train["fine_labels"]))


def test_svhn_loads_from_mat_files(data_dir, monkeypatch):
    import scipy.io

    _skip_md5(monkeypatch, "svhn")
    _skip_md5(monkeypatch, "utils")  # SVHN's download=True always calls download_url, which checks first
    folder = data_dir / "svhn"
    folder.mkdir(parents=True)
    for split, n in (("train", 12), ("test", 8)):
        images = RNG.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)  # SVHN's H x W x C x N layout
        labels = (np.arange(n) % 10 + 1).reshape(-1, 1)  # SVHN writes digit 0 as label 10
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": images, "y": labels})
    bundle = load_dataset("svhn")
    assert bundle.train_x.shape == (12, 3, 32, 32) and bundle.test_x.shape == (8, 3, 32, 32)
    assert sorted(set(bundle.train_y.tolist())) == list(range(10))  # 10 mapped back to 0
