"""What a job runner refuses and what it counts: the per-session queue limit and duplicate-run refusals (as
``UnlearnError`` subclasses with one line for the person), a run's fingerprint, and the bytes a result holds.
"""

from __future__ import annotations

from unlearn_core.errors import UnlearnError


class QueueFull(UnlearnError):
    """A session asked for more queued or running jobs than the per-session limit allows."""


class DuplicateRun(UnlearnError):
    """A session asked again for a run it already has queued or running (same setting, method, params, seed)."""


def run_fingerprint(dataset: str, model: str, forget: str, seed: int, method: str, params: dict,
                    original: str = "") -> str:
    """What makes two runs the same run: the setting (data set, model, forget set, seed, uploaded original's
    SHA-256 or "" for the trained one), the method and its resolved parameters, as one canonical JSON text."""
    import json

    return json.dumps({"dataset": dataset, "model": model, "forget": forget, "seed": int(seed), "method": method,
                       "params": params or {}, "original": original or ""}, sort_keys=True, default=str)


def estimate_bytes(obj, _depth: int = 0, _seen: set | None = None) -> int:
    """Bytes held by tensors and arrays inside ``obj`` (modules, dicts, lists, dataclasses), each counted once.

    Used to bound memory by what a cached setup or a finished job holds; plain Python objects count as 0.
    """
    import numpy as np
    import torch

    seen = set() if _seen is None else _seen
    if _depth > 6 or id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return int(obj.numel() * obj.element_size())
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, torch.nn.Module):
        return sum(estimate_bytes(t, _depth + 1, seen) for t in obj.state_dict(keep_vars=True).values())
    if isinstance(obj, dict):
        return sum(estimate_bytes(v, _depth + 1, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(estimate_bytes(v, _depth + 1, seen) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(estimate_bytes(getattr(obj, name, None), _depth + 1, seen) for name in obj.__dataclass_fields__)
    return 0
