"""Pick the compute device: cuda, then mps, then cpu, unless overridden."""

from __future__ import annotations

import contextlib

import torch

from unlearn_core.errors import UnlearnError

VALID_DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(override: str | None = None) -> torch.device:
    """Return the device to compute on.

    ``override`` may be ``None``/``"auto"`` (best available), ``"cpu"``,
    ``"cuda"``, ``"cuda:N"`` or ``"mps"``. Asking for an accelerator that is
    not present raises :class:`UnlearnError` rather than failing later.
    """
    choice = (override or "auto").strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UnlearnError(f"device {override!r} requested but CUDA is not available on this machine")
        return torch.device(choice)
    if choice == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UnlearnError("device 'mps' requested but MPS is not available on this machine")
        return torch.device("mps")
    raise UnlearnError(f"unknown device {override!r}; choose one of {', '.join(VALID_DEVICES)} or cuda:N")


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device):
    """Seed torch's global generators inside a fork, restoring the caller's state afterwards.

    Dropout (and anything else that draws without an explicit generator) uses
    the global generators; seeding them here makes one seed give one model,
    without disturbing the random state of whoever called us.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield
