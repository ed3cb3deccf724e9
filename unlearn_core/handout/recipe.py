"""The recipe that reproduces a set of runs: commands, data and checkpoint hashes, package versions, code commit.

Each finished run is reproduced by one ``python -m unlearn_core unlearn``
command (:func:`run_command`): the data set, model, forget set, method, every
resolved parameter (``--param``), the seed, the device and the evidence
request exactly as the run store recorded them. A sweep is reproduced by its
``sweep`` command (:func:`sweep_command`) rebuilt from its stored spec. The
hashes say which bytes were used: SHA-256 of the data set's tensors
(:func:`dataset_sha256`) and of each checkpoint's weights (:func:`weights_sha256`).
"""

from __future__ import annotations

import hashlib
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path

#: Distributions whose versions decide the numbers (or how they are drawn).
PACKAGES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas", "plotly", "umap-learn")


def _value_text(value) -> str:
    """A parameter value as ``--param`` reads it back: floats in Python's shortest round-trip form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def evidence_flags(evidence: dict | None) -> list[str]:
    """``--evidence KINDS`` and one ``--evidence-param KIND.KEY=VALUE`` per resolved parameter."""
    if not evidence or not evidence.get("kinds"):
        return []
    flags = ["--evidence", ",".join(evidence["kinds"])]
    for kind in evidence["kinds"]:
        for key, value in sorted((evidence.get("params") or {}).get(kind, {}).items()):
            flags += ["--evidence-param", f"{kind}.{key}={_value_text(value)}"]
    return flags


def run_command(run: dict) -> str:
    """The ``python -m unlearn_core unlearn`` command line that runs ``run`` again (shell-quoted).

    The device is the one the run used (``cuda:0`` becomes ``cuda``: the same kind of device, whichever is
    free); ``auto`` is never written, so the command does not depend on the machine it is pasted on.
    """
    config = run.get("config") or {}
    device = str(run.get("device") or config.get("device") or "cpu")
    device = device.split(":")[0] if device.startswith("cuda") else device
    parts = ["python", "-m", "unlearn_core", "unlearn", "--dataset", str(run["dataset"]), "--model",
             str(run["model"]), "--forget", str(run["forget"]), "--method", str(run["method"]),
             "--seed", str(int(run.get("seed") or 0)), "--device", device]
    for key, value in sorted((run.get("params") or {}).items()):
        parts += ["--param", f"{key}={_value_text(value)}"]
    parts += evidence_flags(config.get("evidence"))
    return " ".join(shlex.quote(p) for p in parts)


def sweep_command(tag: str, spec: dict) -> str:
    """The ``python -m unlearn_core sweep`` command of a stored sweep spec, on the inline engine.

    ``--engine inline`` runs the same functions in one process (the numbers do not depend on the engine for
    the same seeds, docs/SWEEPS.md). The tag is kept, so in the same store the sweep finds its runs already
    recorded; in a fresh data directory it runs them all again.
    """
    parts = ["python", "-m", "unlearn_core", "sweep", "--engine", "inline", "--dataset", str(spec.get("dataset"))]
    if spec.get("model"):
        parts += ["--model", str(spec["model"])]
    for forget in spec.get("forgets") or []:
        parts += ["--forget", str(forget)]
    if spec.get("methods"):
        parts += ["--methods", ",".join(spec["methods"])]
    for method, grid in sorted((spec.get("grid") or {}).items()):
        for param, values in sorted(grid.items()):
            parts += ["--grid", f"{method}.{param}=" + ",".join(_value_text(v) for v in values)]
    parts += ["--seeds", ",".join(str(int(s)) for s in spec.get("seeds") or [0])]
    if spec.get("retrains") is not None:
        parts += ["--retrains", str(int(spec["retrains"]))]
    parts += evidence_flags(spec.get("evidence"))
    parts += ["--tag", tag]
    return " ".join(shlex.quote(p) for p in parts)


def dataset_sha256(bundle) -> str:
    """SHA-256 over the data set's raw tensors in a fixed order: train images, train labels, test images, labels.

    Each tensor contributes its dtype, shape and bytes, so a resized or re-split data set gets another hash.
    """
    digest = hashlib.sha256()
    for tensor in (bundle.train_x, bundle.train_y, bundle.test_x, bundle.test_y):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def weights_sha256(path) -> str | None:
    """SHA-256 of a checkpoint's weights: every ``state_dict`` entry (name, dtype, shape, bytes) in name order.

    The file's own bytes also hold metadata such as the training time, which the cache rewrites when a model
    is trained again only to be timed; the weights' hash names the model itself. ``None`` when the file is
    missing or cannot be read as a checkpoint.
    """
    from unlearn_core.checkpoints import read_checkpoint
    from unlearn_core.errors import UnlearnError

    if not path or not Path(path).is_file():
        return None
    try:
        state = read_checkpoint(Path(path))["state_dict"]
    except (OSError, UnlearnError, KeyError):
        return None
    digest = hashlib.sha256()
    for name in sorted(state):
        array = state[name].detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Python, the platform and the installed versions of :data:`PACKAGES` ("not installed" when absent)."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
