"""Forget sets: parse a short text spec and resolve it against a data set.

Spec forms:

- ``class:3`` or ``class:1,3,5`` (indices or class names): full-class forgetting;
- ``random:0.1``: a class-balanced, seeded fraction of the training set;
- ``subclass:<fine class>``: one fine class inside a super-class data set
  (``cifar20``), by name or index;
- ``indices:<list or file>``: training indices, given inline (``indices:4,8,15``)
  or as a file of integers (text, JSON list or ``.npy``). Files are for the
  command line: ``ForgetSpec.parse(text, allow_files=False)`` (what the app
  uses for the URL and its widgets) refuses them, unless ``files_root`` names
  a folder they must lie inside (``UNLEARN_INDEX_ROOT``, see :func:`index_root`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unlearn_core.errors import ForgetSpecError, ParameterError
from unlearn_core.parsing import ascii_int, is_ascii_int
from unlearn_core.settings import settings

if TYPE_CHECKING:
    from unlearn_core.data import DatasetArrays, DatasetBundle

KINDS = ("class", "random", "subclass", "indices")
MAX_INDEX_FILE_BYTES = 50 * 1024 * 1024
MAX_SEED = 2**32 - 1  # numpy's default_rng takes no negative seed; torch none past 2**64
INDEX_ROOT_ENV = "UNLEARN_INDEX_ROOT"


def index_root() -> Path | None:
    """The folder the app may read ``indices:<file>`` from (``settings().index_root``); ``None``: no files at all."""
    return settings().index_root


@dataclass(frozen=True)
class ForgetSpec:
    """A parsed forget request; resolve it with :meth:`resolve`."""

    kind: str
    values: tuple[str, ...] = ()
    fraction: float = 0.0

    @classmethod
    def parse(cls, text: str, allow_files: bool = True, files_root: str | Path | None = None) -> "ForgetSpec":
        """Parse ``KIND:VALUE``.

        ``allow_files=False`` is for text from a browser (a URL, a widget): an
        ``indices:<file>`` would read a server file, and its errors would tell
        which paths exist and show a file's first number. Such a spec is refused
        without touching the file system, unless ``files_root`` is given: then
        the file must lie inside that folder (symlinks resolved), as with
        ``imagefolder:``.
        """
        if not isinstance(text, str) or ":" not in text:
            raise ForgetSpecError(f"forget spec {text!r} must look like KIND:VALUE, KIND one of {', '.join(KINDS)} "
                                  "(e.g. class:3, random:0.1)")
        kind, _, body = text.strip().partition(":")
        kind, body = kind.strip().lower(), body.strip()
        if kind not in KINDS:
            raise ForgetSpecError(f"unknown forget kind {kind!r}; choose one of {', '.join(KINDS)}")
        if not body:
            raise ForgetSpecError(f"forget spec {text!r} has nothing after '{kind}:'")
        if kind == "random":
            try:
                if not body.isascii():
                    raise ValueError(body)
                fraction = float(body)
            except ValueError:
                raise ForgetSpecError(f"random fraction {body!r} is not a number") from None
            if not math.isfinite(fraction) or not 0.0 < fraction < 1.0:
                raise ForgetSpecError(f"random fraction must be strictly between 0 and 1, got {body}")
            return cls("random", (), fraction)
        if kind == "indices" and "," not in body and not is_ascii_int(body):
            if not allow_files:
                return cls("indices", (_file_inside(body, files_root),))
            return cls("indices", (body,))  # a file path
        values = tuple(v.strip() for v in body.split(",") if v.strip())
        if not values:
            raise ForgetSpecError(f"forget spec {text!r} lists no values")
        if kind == "subclass" and len(values) != 1:
            raise ForgetSpecError("subclass: takes exactly one fine class")
        return cls(kind, values)

    def __str__(self) -> str:
        if self.kind == "random":
            return f"random:{self.fraction:g}"
        return f"{self.kind}:{','.join(self.values)}"

    def resolve(self, bundle: DatasetBundle | DatasetArrays, seed: int = 0) -> "ForgetSplit":
        """Resolve against ``bundle`` (either level of :mod:`unlearn_core.data`: the split is the same); random
        forgetting is seeded by ``seed``."""
        validate_seed(seed)
        train_y = np.asarray(bundle.train_y)
        test_y = np.asarray(bundle.test_y)
        n_train = len(train_y)
        forgotten_classes: tuple[int, ...] = ()
        test_forget = np.zeros(len(test_y), dtype=bool)
        if self.kind == "class":
            forgotten_classes = tuple(sorted({_class_index(v, bundle.class_names, "class") for v in self.values}))
            if len(forgotten_classes) >= bundle.num_classes:
                raise ForgetSpecError(f"forgetting all {bundle.num_classes} classes leaves nothing to keep")
            forget_mask = np.isin(train_y, forgotten_classes)
            test_forget = np.isin(test_y, forgotten_classes)
        elif self.kind == "subclass":
            if bundle.fine_train_y is None or bundle.fine_names is None:
                raise ForgetSpecError(f"data set {bundle.name!r} has no fine classes; subclass: needs a "
                                      "hierarchical data set such as cifar20")
            fine = _class_index(self.values[0], bundle.fine_names, "fine class")
            forget_mask = np.asarray(bundle.fine_train_y) == fine
            test_forget = np.asarray(bundle.fine_test_y) == fine
        elif self.kind == "random":
            rng = np.random.default_rng(seed)
            forget_mask = np.zeros(n_train, dtype=bool)
            for cls in np.unique(train_y):
                members = np.flatnonzero(train_y == cls)
                take = int(round(len(members) * self.fraction))
                forget_mask[rng.choice(members, size=min(take, len(members)), replace=False)] = True
        else:
            indices = _read_indices(self.values)
            bad = indices[(indices < 0) | (indices >= n_train)]
            if bad.size:
                raise ForgetSpecError(f"index {int(bad[0])} is out of range: the training set has {n_train} "
                                      f"samples (0..{n_train - 1})")
            forget_mask = np.zeros(n_train, dtype=bool)
            forget_mask[indices] = True
        forget_idx = np.flatnonzero(forget_mask)
        if forget_idx.size == 0:
            raise ForgetSpecError(f"forget set {self} is empty on {bundle.name}")
        if forget_idx.size >= n_train:
            raise ForgetSpecError(f"forget set {self} covers the whole training set; nothing would remain")
        return ForgetSplit(spec=self, forget_idx=forget_idx, retain_idx=np.flatnonzero(~forget_mask),
                           test_forget_idx=np.flatnonzero(test_forget), test_retain_idx=np.flatnonzero(~test_forget),
                           forgotten_classes=forgotten_classes, num_classes=bundle.num_classes)


@dataclass
class ForgetSplit:
    """Index sets of a resolved forget request.

    ``forget_idx``/``retain_idx`` index the training set;
    ``test_forget_idx`` are the test samples of what is forgotten (the
    forgotten classes, or the fine class; empty for sample forgetting) and
    ``test_retain_idx`` the rest. ``forgotten_classes`` lists the labels that
    disappear entirely (only for class forgetting).
    """

    spec: ForgetSpec
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    test_forget_idx: np.ndarray
    test_retain_idx: np.ndarray
    forgotten_classes: tuple[int, ...]
    num_classes: int
    _key: str = field(default="", repr=False)

    @property
    def is_classwise(self) -> bool:
        return bool(self.forgotten_classes)

    @property
    def remaining_classes(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.num_classes) if c not in self.forgotten_classes)

    def key(self) -> str:
        """A short hash of the forget indices: the identity of this request."""
        if not self._key:
            digest = hashlib.sha256(np.asarray(self.forget_idx, dtype=np.int64).tobytes()).hexdigest()
            self._key = digest[:16]
        return self._key

    def counts_per_class(self, train_y: np.ndarray) -> dict[int, int]:
        labels, counts = np.unique(np.asarray(train_y)[self.forget_idx], return_counts=True)
        return {int(label): int(count) for label, count in zip(labels, counts)}


def validate_seed(seed) -> int:
    """Refuse seeds that numpy or torch would choke on (negative, too large, not whole)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= MAX_SEED:
        raise ParameterError(f"seed must be a whole number in [0, {MAX_SEED}], got {str(seed)[:40]}")
    return int(seed)


def indices_spec(indices) -> ForgetSpec:
    """A spec for an explicit list of training indices (e.g. a lasso selection)."""
    values = sorted({int(i) for i in indices})
    if not values:
        raise ForgetSpecError("no samples selected")
    return ForgetSpec("indices", tuple(str(v) for v in values))


def _class_index(value: str, names: list[str], what: str) -> int:
    if value in names:
        return names.index(value)
    lowered = [n.lower() for n in names]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    try:
        index = ascii_int(value)  # int() would read "class:٣" as class 3
    except ValueError:
        raise ForgetSpecError(f"unknown {what} {value!r}; known: {', '.join(names[:20])}"
                              f"{' ...' if len(names) > 20 else ''}") from None
    if not 0 <= index < len(names):
        raise ForgetSpecError(f"unknown {what} {index}: valid indices are 0..{len(names) - 1}")
    return index


def _file_inside(body: str, root: str | Path | None) -> str:
    """The absolute path of an index file inside ``root``, or a refusal that says nothing about the file system."""
    if root is None:
        raise ForgetSpecError("index files are not accepted here: list the training indices inline "
                              "(e.g. indices:4,8,15); a file works from the command line, or from inside "
                              f"{INDEX_ROOT_ENV} when the server sets it")
    try:
        base = Path(root).expanduser().resolve()
        target = (base / body).resolve()
    except (OSError, RuntimeError, ValueError):
        raise ForgetSpecError(f"index file name {body[:80]!r} is not usable") from None
    if target != base and base not in target.parents:
        raise ForgetSpecError(f"index file {body[:80]!r} is outside the allowed root (set {INDEX_ROOT_ENV} to "
                              "change it)")
    return str(target)


def _read_indices(values: tuple[str, ...]) -> np.ndarray:
    if len(values) == 1 and not is_ascii_int(values[0]):
        path = Path(values[0]).expanduser()
        shown = repr(str(path))  # a name with a newline or an escape sequence stays one harmless line
        if not path.is_file():
            raise ForgetSpecError(f"indices file {shown} does not exist")
        if path.stat().st_size > MAX_INDEX_FILE_BYTES:
            raise ForgetSpecError(f"indices file {shown} is larger than {MAX_INDEX_FILE_BYTES // 2**20} MiB")
        try:
            if path.suffix == ".npy":
                raw = np.load(path, allow_pickle=False).ravel().tolist()
            else:
                text = path.read_text()
                raw = json.loads(text) if text.lstrip().startswith("[") else text.replace(",", " ").split()
        except (ValueError, OSError, RecursionError) as error:
            raise ForgetSpecError(f"cannot read indices file {shown}: {type(error).__name__}") from None
        source = f"indices file {shown}"
    else:
        raw = list(values)
        source = "indices"
    parsed = []
    for value in raw:
        try:
            parsed.append(ascii_int(str(value)))
        except ValueError:
            # A file's content is never echoed: the path may name a server file the user should not read.
            shown = "" if source != "indices" else f"; {str(value)[:40]!r} is not"
            raise ForgetSpecError(f"{source} must hold whole numbers only{shown}") from None
    if not parsed:
        raise ForgetSpecError(f"{source} lists no indices")
    too_big = [v for v in parsed if not -2**62 < v < 2**62]
    if too_big:
        raise ForgetSpecError(f"index {too_big[0]} is out of range")
    return np.unique(np.asarray(parsed, dtype=np.int64))
