"""Untrusted files: uploaded checkpoints that try to run code, are too big or do not fit, and image folders
that try to escape their root or hold junk. Every case uses real files in a temporary directory."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from unlearn_core.checkpoints import (CheckpointCache, load_uploaded_checkpoint, max_upload_bytes, read_checkpoint,
                                      save_checkpoint)
from unlearn_core.data import load_dataset, load_image_folder, resolve_image_folder
from unlearn_core.errors import CheckpointError, DatasetError
from unlearn_core.models import build_model
from unlearn_core.settings import SettingsError


class _WritesMarker:
    """A pickle payload that, if ever unpickled unsafely, creates a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _digits_mlp(seed: int = 0):
    return build_model("mlp", 1, (8, 8), 10, seed=seed)


def _malicious_checkpoint(marker) -> bytes:
    model = _digits_mlp()
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "meta": {"note": _WritesMarker(str(marker))}}, buffer)
    return buffer.getvalue()


def test_the_payload_is_live_when_unpickled_unsafely(tmp_path):
    # Proves the test payload is real: loading it without weights_only does create the marker.
    marker = tmp_path / "ran.txt"
    pickle.loads(pickle.dumps(_WritesMarker(str(marker))))
    assert marker.exists()


@pytest.mark.parametrize("as_kind", ["bytes", "path", "file-like", "raw pickle"])
def test_checkpoint_that_runs_code_is_refused_and_nothing_runs(tmp_path, as_kind):
    marker = tmp_path / "pwned.txt"
    data = pickle.dumps(_WritesMarker(str(marker))) if as_kind == "raw pickle" else _malicious_checkpoint(marker)
    source = {"bytes": data, "raw pickle": data, "file-like": io.BytesIO(data)}.get(as_kind)
    if as_kind == "path":
        source = tmp_path / "upload.pt"
        source.write_bytes(data)
    with pytest.raises(CheckpointError) as caught:
        load_uploaded_checkpoint(source, _digits_mlp())
    assert not marker.exists(), "unpickling ran the payload"
    message = str(caught.value)
    if as_kind != "raw pickle":  # a checkpoint names what it smuggled in
        assert "refused" in message and "run code" in message and "io.open" in message
    assert "weights_only" not in message  # never advise the unsafe load that torch's own text suggests
    assert "\n" not in message


def test_upload_cap_comes_from_the_environment(tmp_path, monkeypatch):
    model = _digits_mlp()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    size_mb = len(data) / 2**20
    monkeypatch.setenv("UNLEARN_MAX_UPLOAD_MB", f"{size_mb / 2:.6f}")
    assert max_upload_bytes() < len(data)
    for source in (data, io.BytesIO(data)):
        with pytest.raises(CheckpointError, match="larger than .* MiB upload limit .*UNLEARN_MAX_UPLOAD_MB"):
            read_checkpoint(source)
    monkeypatch.setenv("UNLEARN_MAX_UPLOAD_MB", f"{size_mb * 2:.6f}")
    fresh = _digits_mlp(seed=1)
    load_uploaded_checkpoint(io.BytesIO(data), fresh)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    monkeypatch.delenv("UNLEARN_MAX_UPLOAD_MB")
    assert max_upload_bytes() == 200 * 2**20
    for bad in ("lots", "-5", "0", "inf", "nan"):
        monkeypatch.setenv("UNLEARN_MAX_UPLOAD_MB", bad)
        with pytest.raises(SettingsError, match="UNLEARN_MAX_UPLOAD_MB must be a number of MiB, more than 0"):
            read_checkpoint(data)


def test_checkpoint_of_another_model_names_the_first_mismatched_key(tmp_path):
    target = _digits_mlp()
    other = build_model("small_cnn", 1, (8, 8), 10, seed=0)
    path = tmp_path / "other.pt"
    save_checkpoint(path, other)
    with pytest.raises(CheckpointError, match=r"key 'body\.1\.weight' has shape \(128, 256\), the model expects "
                                              r"\(256, 64\)"):
        load_uploaded_checkpoint(path, target)

    state = dict(target.state_dict())
    del state["body.3.bias"]
    with pytest.raises(CheckpointError, match=r"missing key 'body\.3\.bias'"):
        load_uploaded_checkpoint(_saved_bytes(state), _digits_mlp())

    wrong_classes = build_model("mlp", 1, (8, 8), 5, seed=0)
    save_checkpoint(path, wrong_classes)
    with pytest.raises(CheckpointError, match=r"key 'head\.weight' has shape \(5, 128\), the model expects \(10, 128\)"):
        load_uploaded_checkpoint(path, target)

    state = dict(target.state_dict())
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected key 'extra\.weight'"):
        load_uploaded_checkpoint(_saved_bytes(state), _digits_mlp())

    state = {k: v.clone() for k, v in target.state_dict().items()}
    state["head.bias"][0] = float("nan")
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in 'head\.bias'"):
        load_uploaded_checkpoint(_saved_bytes(state), _digits_mlp())


def _saved_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("data, message", [
    (b"", "empty or truncated"),
    (b"not a checkpoint at all" * 20, "not a readable PyTorch checkpoint"),
    (None, "not a readable PyTorch checkpoint"),  # a real checkpoint cut in half
    (_saved_bytes([torch.zeros(2)]), "not a state dict of tensors"),
    (_saved_bytes({"w": 3}), "not a state dict of tensors"),
])
def test_broken_uploads_fail_with_a_checkpoint_error(data, message):
    if data is None:
        whole = _saved_bytes(_digits_mlp().state_dict())
        data = whole[: len(whole) // 2]
    with pytest.raises(CheckpointError, match=message):
        load_uploaded_checkpoint(data, _digits_mlp())


def test_cache_sets_a_corrupt_file_aside_and_never_loads_it(tmp_path):
    cache = CheckpointCache(tmp_path)
    model = _digits_mlp()
    path = cache.save("k1", model, {"seconds": 1.0})
    path.write_bytes(path.read_bytes()[:-100])  # torn write, as if the disk filled up
    fresh = _digits_mlp(seed=5)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    assert cache.load("k1", fresh) is None
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
    assert not path.exists() and path.with_suffix(".corrupt").exists()


# --- image folders --------------------------------------------------------------------------------------------

def _write_pngs(folder, count, colour):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(colour)
    for i in range(count):
        pixels = np.clip(rng.normal(colour, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "allowed"
    _write_pngs(root / "shapes" / "cat", 5, 40)
    _write_pngs(root / "shapes" / "dog", 5, 200)
    outside = tmp_path / "secret"
    _write_pngs(outside / "cls_a", 3, 90)
    _write_pngs(outside / "cls_b", 3, 160)
    return root


def test_image_folder_loads_classes_and_counts_skipped_files(image_root):
    shapes = image_root / "shapes"
    (shapes / "cat" / "notes.txt").write_text("not an image")
    (shapes / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a real png")
    (shapes / "dog" / "empty.jpg").write_bytes(b"")
    (shapes / ".hidden").mkdir()
    bundle = load_image_folder("shapes", size=8, root=image_root)
    assert bundle.class_names == ["cat", "dog"]
    assert bundle.notes["skipped"] == 3
    assert len(bundle.train_y) + len(bundle.test_y) == 10
    assert bundle.train_x.shape[1:] == (3, 8, 8) and bundle.train_x.dtype == torch.uint8


@pytest.mark.parametrize("request_path", ["../secret", "shapes/../../secret", "SECRET_ABS"])
def test_paths_outside_the_image_root_are_refused(image_root, request_path):
    if request_path == "SECRET_ABS":
        request_path = str(image_root.parent / "secret")
    with pytest.raises(DatasetError, match="outside the allowed root"):
        load_image_folder(request_path, size=8, root=image_root)


def test_symlinked_folder_escaping_the_root_is_refused(image_root):
    (image_root / "sneaky").symlink_to(image_root.parent / "secret", target_is_directory=True)
    with pytest.raises(DatasetError, match="outside the allowed root"):
        resolve_image_folder("sneaky", root=image_root)


def test_symlinked_files_and_class_dirs_escaping_the_root_are_skipped(image_root):
    secret = image_root.parent / "secret"
    (image_root / "shapes" / "cat" / "leak.png").symlink_to(secret / "cls_a" / "img0.png")
    (image_root / "shapes" / "stolen").symlink_to(secret / "cls_b", target_is_directory=True)
    bundle = load_image_folder("shapes", size=8, root=image_root)
    assert bundle.class_names == ["cat", "dog"]  # the escaping class dir contributed nothing
    assert bundle.notes["skipped"] == 1 + 3
    assert len(bundle.train_y) + len(bundle.test_y) == 10


def test_a_symlink_inside_the_root_is_followed(image_root):
    (image_root / "alias").symlink_to(image_root / "shapes", target_is_directory=True)
    bundle = load_image_folder("alias", size=8, root=image_root)
    assert bundle.class_names == ["cat", "dog"] and bundle.notes["skipped"] == 0


def test_fewer_than_two_readable_classes_is_refused(image_root):
    lonely = image_root / "lonely"
    _write_pngs(lonely / "only", 4, 100)
    (lonely / "junk").mkdir()
    (lonely / "junk" / "a.png").write_bytes(b"garbage")
    (lonely / "junk" / "b.txt").write_text("text")
    with pytest.raises(DatasetError, match=r"1 class\(es\) with readable images; need at least 2 .*skipped 2"):
        load_image_folder("lonely", size=8, root=image_root)
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder("nowhere", size=8, root=image_root)


def test_load_dataset_honours_unlearn_image_root(image_root, monkeypatch):
    monkeypatch.setenv("UNLEARN_IMAGE_ROOT", str(image_root))
    assert load_dataset("imagefolder:shapes").class_names == ["cat", "dog"]
    with pytest.raises(DatasetError, match="outside the allowed root"):
        load_dataset("imagefolder:../secret")
    monkeypatch.setenv("UNLEARN_IMAGE_ROOT", str(image_root.parent / "secret"))
    # The same name under another root is a different data set, not a stale cache hit.
    assert load_dataset("imagefolder:.").class_names == ["cls_a", "cls_b"]
