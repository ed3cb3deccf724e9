"""A small on-disk store of named numpy arrays (``.npz`` per key) with an in-memory LRU in front.

Used for what is expensive to compute and cheap to keep: map panels (:class:`unlearn_core.embeddings.EmbeddingCache`)
and the reference models' softmax outputs (:meth:`unlearn_core.pipeline.Setup.outputs`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from unlearn_core.checkpoints import atomic_write_bytes


class ArrayCache:
    """Named numpy arrays by key: an LRU dict in memory over one ``<key>.npz`` file per key under ``root``.

    Writes are atomic (readers see the old file or the whole new one); a file that cannot be read (torn,
    foreign) is deleted and reads as missing, so its value is computed again, never trusted. Thread-safe.
    """

    def __init__(self, root: Path, memory_items: int = 32):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.memory_items = memory_items
        self._memory: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                value = {name: data[name] for name in data.files}
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a torn or foreign file is recomputed, never trusted
            return None
        self._remember(key, value)
        return value

    def put(self, key: str, value: dict[str, np.ndarray]) -> None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **value)
        atomic_write_bytes(self._path(key), buffer.getvalue())
        self._remember(key, value)

    def _remember(self, key: str, value: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def get_or_compute(self, key: str, compute) -> dict[str, np.ndarray]:
        cached = self.get(key)
        if cached is not None:
            return cached
        value = compute()
        self.put(key, value)
        return value
