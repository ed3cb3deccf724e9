"""The on-disk checkpoint cache and safe checkpoint loading.

Checkpoints are keyed by a hash of everything that determines them. They are
written atomically (temporary file, fsync, rename), so a crash never leaves a
partial file under a trusted name, and always read with
``torch.load(weights_only=True)``, so a file can never run code. A file that
fails to load is moved aside and treated as a cache miss.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import io
import json
import os
import pickle
import pickletools
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearn_core import paths
from unlearn_core.errors import CheckpointError
from unlearn_core.settings import settings

if TYPE_CHECKING:
    from torch import nn

MAX_UPLOAD_ENV = "UNLEARN_MAX_UPLOAD_MB"
MAX_UNPACKED_ENV = "UNLEARN_MAX_UNPACKED_MB"
# Bounds on what an uploaded checkpoint's zip may hold, checked before torch.load. The largest registered model
# (resnet18 with BatchNorm) has 122 state-dict tensors; the bounds leave room for any of them and refuse floods.
MAX_CHECKPOINT_TENSORS = 1000
MAX_CHECKPOINT_RECORDS = 2000


def max_upload_bytes() -> int:
    """The upload size cap: ``settings().max_upload_mb`` (``UNLEARN_MAX_UPLOAD_MB``, 200 MiB by default)."""
    return settings().max_upload_bytes


def max_unpacked_bytes() -> int:
    """The cap on what an uploaded checkpoint's zip directory may declare: ``settings().max_unpacked_mb``.

    (``UNLEARN_MAX_UNPACKED_MB``, 1 GiB by default.) ``torch.save`` writes its zip entries uncompressed, so a
    real checkpoint declares about its own file size; 1 GiB leaves room for any model this library builds
    (resnet18 is 45 MB).
    """
    return settings().max_unpacked_bytes


def check_zip_directory(handle, max_unpacked: int | None) -> None:
    """Refuse a zip checkpoint that would inflate, before ``torch.load`` reads a byte of its tensors.

    ``torch.save`` stores every entry uncompressed. A file re-packed with deflate held a 1 GiB tensor in 1.2 MB
    (870:1) and torch inflated it in full on every load, so compressed entries are refused outright, and the
    sizes the directory declares are summed against ``max_unpacked`` (``None``: no cap, for our own files).
    Reading the directory costs only the central directory at the end of the file.
    """
    start = handle.tell()
    try:
        if handle.read(4) != b"PK\x03\x04":
            return  # not a zip: the legacy format (or junk), which torch.load judges on its own
        handle.seek(start)
        try:
            with zipfile.ZipFile(handle) as archive:
                entries = archive.infolist()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
            raise CheckpointError(f"not a readable PyTorch checkpoint: broken zip directory ({error})") from None
        compressed = [e for e in entries if e.compress_type != zipfile.ZIP_STORED]
        if compressed:
            raise CheckpointError(f"refused: the checkpoint holds {len(compressed)} compressed "
                                  f"entr{'y' if len(compressed) == 1 else 'ies'} (e.g. "
                                  f"{compressed[0].filename[-60:]!r}); torch.save never compresses, and a "
                                  "compressed tensor can unpack to many times the upload's size")
        declared = sum(e.file_size for e in entries)
        if max_unpacked is not None and declared > max_unpacked:
            raise CheckpointError(f"refused: the checkpoint declares {declared / 2**20:,.0f} MiB of content, over "
                                  f"the {max_unpacked / 2**20:g} MiB limit (set {MAX_UNPACKED_ENV} to change it)")
        if max_unpacked is not None:
            _check_record_counts(archive_entries=entries, handle=handle, start=start)
    finally:
        handle.seek(start)


def _count_tensor_references(pickle_bytes: bytes, limit: int) -> int:
    """How many persistent ids (one per tensor's storage reference) a ``data.pkl`` holds, counting up to ``limit + 1``.

    The pickle is read as opcodes (``pickletools.genops``), never executed; counting stops past ``limit``, so a
    pickle of millions of tensors costs no more than one just over the bound.
    """
    count = 0
    try:
        for opcode, _, _ in pickletools.genops(pickle_bytes):
            if opcode.name in ("BINPERSID", "PERSID"):
                count += 1
                if count > limit:
                    break
    except (ValueError, EOFError, UnicodeDecodeError) as error:
        raise CheckpointError(f"not a readable PyTorch checkpoint: broken pickle ({str(error)[:80]})") from None
    return count


def _check_record_counts(archive_entries, handle, start: int) -> None:
    """Refuse an upload with more zip records or tensors than any registered model's checkpoint holds.

    Many tiny tensors sharing one storage cost little on disk and a great deal in memory and time when torch
    rebuilds them (400,000 of them in a 26 MB file took 19 s and 580 MiB), so the count is bounded before
    ``torch.load``: :data:`MAX_CHECKPOINT_RECORDS` zip entries and :data:`MAX_CHECKPOINT_TENSORS` tensor
    references in ``data.pkl``.
    """
    if len(archive_entries) > MAX_CHECKPOINT_RECORDS:
        raise CheckpointError(f"refused: the checkpoint holds {len(archive_entries):,} records, more than the "
                              f"{MAX_CHECKPOINT_RECORDS:,} any model this app builds needs")
    pickles = [e for e in archive_entries if e.filename.endswith("data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError("not a readable PyTorch checkpoint: its zip holds no single data.pkl")
    handle.seek(start)
    with zipfile.ZipFile(handle) as archive:
        data = archive.read(pickles[0])
    tensors = _count_tensor_references(data, MAX_CHECKPOINT_TENSORS)
    if tensors > MAX_CHECKPOINT_TENSORS:
        raise CheckpointError(f"refused: the checkpoint holds more than {MAX_CHECKPOINT_TENSORS:,} tensors; the "
                              "models this app builds have a few hundred at most")


def cache_key(payload: dict) -> str:
    """A stable hash of a JSON-able description of what a checkpoint depends on."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_checkpoint(path: Path, model: nn.Module, meta: dict | None = None) -> None:
    """Atomically save a model's state dict with JSON-able metadata."""
    import torch

    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "meta": json.loads(json.dumps(meta or {}, default=str))}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def _refuse_foreign_format(handle) -> None:
    """Refuse, by its first bytes, a file that torch.save cannot have written (a zip archive, or a pickle).

    Otherwise an uploaded text file reaches the unpickler, whose message is "KeyError: 101" (the code of its first
    letter, read as a pickle opcode). An empty file is left to the loader's own "empty" message.
    """
    head = handle.read(512)
    handle.seek(0)
    if not head or head.startswith(b"PK") or head[:1] == b"\x80":
        return
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head[:-3].decode("utf-8", errors="replace") if len(head) == 512 else ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        raise CheckpointError("not a readable PyTorch checkpoint: this is a text file; choose the .pt file that "
                              "torch.save(model.state_dict(), path) wrote")
    raise CheckpointError("not a readable PyTorch checkpoint: the file is neither a zip archive nor a pickle, the "
                          "two formats torch.save writes")


def read_checkpoint(source, max_bytes: int | None = None) -> dict:
    """Read a checkpoint file or bytes safely; returns ``{"state_dict", "meta"}``.

    Plain state dicts (as saved by ``torch.save(model.state_dict())``) are
    accepted too. Anything that is not tensors and plain containers is refused.
    Bytes and file-like objects are uploads: unless ``max_bytes`` is given they
    are capped by :func:`max_upload_bytes`.
    """
    if hasattr(source, "read") and not isinstance(source, (str, Path)):
        # An upload object (e.g. Streamlit's UploadedFile): read one byte past the cap, never the whole stream.
        limit = max_bytes if max_bytes is not None else max_upload_bytes()
        source = source.read(limit + 1)
        max_bytes = limit
    if isinstance(source, (bytes, bytearray, memoryview)):
        if max_bytes is None:
            max_bytes = max_upload_bytes()
        size = len(source)
        handle = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        size = path.stat().st_size
        handle = open(path, "rb")
    if max_bytes is not None and size > max_bytes:
        handle.close()
        raise CheckpointError(f"checkpoint is larger than the {max_bytes / 2**20:g} MiB upload limit "
                              f"(set {MAX_UPLOAD_ENV} to change it)")
    try:
        _refuse_foreign_format(handle)
        # Uploads (a size cap applies) are held to the unpacked-size cap too; our own files only to "no deflate".
        check_zip_directory(handle, max_unpacked_bytes() if max_bytes is not None else None)
    except BaseException:
        handle.close()
        raise
    import torch

    try:
        with handle:
            loaded = torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own text advises weights_only=False; never pass that on, name only what was refused.
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if refused:
            raise CheckpointError("refused: the checkpoint holds objects other than tensors and may try to run "
                                  f"code (it references {refused.group(1)}); only plain state dicts of tensors "
                                  "are accepted") from None
        raise CheckpointError("not a readable PyTorch checkpoint: it is not a pickle of tensors") from None
    except Exception as error:  # truncated zip, wrong format, ...
        detail = str(error).splitlines()[0][:200] if str(error) else "the file is empty or truncated"
        raise CheckpointError(f"not a readable PyTorch checkpoint: {type(error).__name__}: {detail}") from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        checkpoint = {"state_dict": loaded["state_dict"], "meta": loaded.get("meta") or {}}
    elif isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        checkpoint = {"state_dict": loaded, "meta": {}}
    else:
        raise CheckpointError("checkpoint is not a state dict of tensors")
    for key, value in checkpoint["state_dict"].items():
        _refuse_exotic_tensor(key, value)
    return checkpoint


def _refuse_exotic_tensor(key, value) -> None:
    """Only plain dense tensors: sparse, quantized or other layouts fail deep inside torch with a traceback."""
    import torch

    if not isinstance(value, torch.Tensor):
        return  # load_state_strict names the key; metadata dicts may hold other values
    if value.layout != torch.strided:
        raise CheckpointError(f"refused: {str(key)[:80]!r} is a {str(value.layout).replace('torch.', '')} tensor; "
                              "only dense tensors are accepted")
    if value.is_quantized:
        raise CheckpointError(f"refused: {str(key)[:80]!r} is a quantized tensor; only dense float or integer "
                              "tensors are accepted")


def load_uploaded_checkpoint(source, model: nn.Module) -> dict:
    """Read an uploaded checkpoint under the size cap and load it into ``model``; returns its metadata."""
    checkpoint = read_checkpoint(source)
    load_state_strict(model, checkpoint["state_dict"])
    return checkpoint["meta"]


def load_state_strict(model: nn.Module, state_dict: dict[str, Any]) -> None:
    """Load weights, naming the first key that is missing, unexpected or mis-shaped."""
    import torch

    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state_dict:
            raise CheckpointError(f"checkpoint does not fit the model: missing key {key!r}")
        given = state_dict[key]
        if not isinstance(given, torch.Tensor) or tuple(given.shape) != tuple(value.shape):
            shape = tuple(given.shape) if isinstance(given, torch.Tensor) else type(given).__name__
            raise CheckpointError(f"checkpoint does not fit the model: key {key!r} has shape {shape}, "
                                  f"the model expects {tuple(value.shape)}")
    for key in state_dict:
        if key not in expected:
            raise CheckpointError(f"checkpoint does not fit the model: unexpected key {key!r}")
    cast = {}
    for key, value in state_dict.items():
        _refuse_exotic_tensor(key, value)
        target = expected[key]
        # Judge the values the model will hold, not the file's: float64 1e300 is finite and becomes inf as
        # float32, and an integer past the target's range would wrap.
        if target.is_floating_point():
            if value.is_complex():
                raise CheckpointError(f"checkpoint holds complex values in {key!r}; the model expects "
                                      f"{str(target.dtype).replace('torch.', '')}")
            value = value.to(target.dtype)
            if not torch.isfinite(value).all():
                raise CheckpointError(f"checkpoint holds NaN or infinite values in {key!r} (as "
                                      f"{str(target.dtype).replace('torch.', '')}, the model's type)")
        elif value.is_floating_point() or value.is_complex():
            raise CheckpointError(f"checkpoint holds fractional values in {key!r}; the model expects "
                                  f"{str(target.dtype).replace('torch.', '')}")
        else:
            info = torch.iinfo(target.dtype) if target.dtype != torch.bool else None
            if info is not None and value.numel() and (int(value.min()) < info.min or int(value.max()) > info.max):
                raise CheckpointError(f"checkpoint holds values in {key!r} outside the range of "
                                      f"{str(target.dtype).replace('torch.', '')}")
            value = value.to(target.dtype)
        cast[key] = value
    model.load_state_dict(cast, strict=True)


#: The most a cached checkpoint's pickle (its structure, not its tensors' bytes) may hold for :func:`read_meta`.
MAX_META_PICKLE_BYTES = 16 * 2**20


class _StructureUnpickler(pickle.Unpickler):
    """Reads the structure of a checkpoint that :func:`save_checkpoint` wrote, with every tensor as ``None``:
    torch's rebuild functions and storage types become a stub, its storages are not read, and any other global
    than ``collections.OrderedDict`` is refused."""

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _no_tensor
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name} is not part of a checkpoint's structure")

    def persistent_load(self, pid):
        return None


def _no_tensor(*args, **kwargs):
    return None


def read_meta(path: Path) -> dict | None:
    """The metadata of a checkpoint this module saved, read without torch (and without reading its tensors);
    ``None`` when the file is missing or not such a checkpoint. For a page that shows a cached model's figures
    before torch is imported; :meth:`CheckpointCache.load` still reads and checks the weights when they are used."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info for info in archive.infolist() if info.filename.endswith("/data.pkl")]
            if len(names) != 1 or names[0].file_size > MAX_META_PICKLE_BYTES:
                return None
            loaded = _StructureUnpickler(io.BytesIO(archive.read(names[0]))).load()
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError):
        return None
    meta = loaded.get("meta") if isinstance(loaded, dict) else None
    return meta if isinstance(meta, dict) else None


class CheckpointCache:
    """Checkpoints stored under ``root`` by key, with a lock per key.

    The lock stops two processes from training the same model at once: the
    second waits and then loads what the first wrote.
    """

    STALE_TEMP_SECONDS = 3600

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else paths.checkpoints_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temp_files()

    def remove_stale_temp_files(self, older_than: float | None = None) -> int:
        """Delete temporary files that a killed writer left behind; returns how many.

        Only files untouched for ``older_than`` seconds (default an hour) go, so a
        write in progress in another process is never pulled from under it.
        """
        cutoff = time.time() - (self.STALE_TEMP_SECONDS if older_than is None else older_than)
        removed = 0
        for temp in self.root.glob(".*.pt.*.tmp"):
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    removed += 1
        return removed

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    @contextlib.contextmanager
    def lock(self, key: str):
        with open(self.root / f".{key}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- the quota: least recently used entries go first, pinned ones never -----------------------------------
    def pin_path(self, key: str) -> Path:
        return self.root / f".{key}.pin"

    def pin(self, key: str) -> None:
        """Keep ``key`` through :meth:`enforce_quota` (a prepared demo's references, say)."""
        self.pin_path(key).touch()

    def unpin(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pin_path(key).unlink()

    def entries(self) -> list[tuple[str, int, float, bool]]:
        """Every cached checkpoint as ``(key, bytes, last use, pinned)``, least recently used first."""
        found = []
        for path in self.root.glob("*.pt"):
            with contextlib.suppress(OSError):
                info = path.stat()
                key = path.name[:-3]
                found.append((key, info.st_size, info.st_mtime, self.pin_path(key).exists()))
        return sorted(found, key=lambda entry: entry[2])

    def total_bytes(self) -> int:
        return sum(size for _, size, _, _ in self.entries())

    def enforce_quota(self, quota_bytes: int | None = None, keep: set[str] | frozenset = frozenset()) -> list[str]:
        """Delete the least recently used unpinned checkpoints until the rest fit ``quota_bytes``; returns their keys.

        ``quota_bytes`` defaults to ``UNLEARN_CHECKPOINT_CACHE_MB``. Pinned keys and ``keep`` (what the caller is
        about to use) stay; a key whose lock another process holds (it is being trained or read) is skipped. A
        pruned model is trained again when it is next needed.
        """
        if quota_bytes is None:
            from unlearn_core.settings import settings

            quota_bytes = settings().checkpoint_cache_bytes
        entries = self.entries()
        total = sum(size for _, size, _, _ in entries)
        pruned = []
        for key, size, _, pinned in entries:
            if total <= quota_bytes:
                break
            if pinned or key in keep:
                continue
            with open(self.root / f".{key}.lock", "a+") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                try:
                    self.path_for(key).unlink()
                    pruned.append(key)
                    total -= size
                except FileNotFoundError:
                    total -= size
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        return pruned

    def load(self, key: str, model: nn.Module) -> dict | None:
        """Load ``key`` into ``model``; return its metadata, or ``None`` on a miss. A hit counts as a use (LRU)."""
        path = self.path_for(key)
        if not path.exists():
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        try:
            checkpoint = read_checkpoint(path)
            load_state_strict(model, checkpoint["state_dict"])
        except CheckpointError:
            # A file we cannot trust is set aside, never loaded, and rebuilt.
            with contextlib.suppress(OSError):
                os.replace(path, path.with_suffix(".corrupt"))
            return None
        return checkpoint["meta"]

    def save(self, key: str, model: nn.Module, meta: dict | None = None) -> Path:
        """Save ``key``, then prune the least recently used others past the quota (never ``key`` itself)."""
        path = self.path_for(key)
        save_checkpoint(path, model, meta)
        self.enforce_quota(keep={key})
        return path
