"""UI-agnostic helpers behind the dashboard: prepared setups, run models, tables.

The Streamlit pages stay thin: they read widgets and call these functions,
which are plain Python and tested without a browser. Nothing here imports
Streamlit.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from unlearn_core.errors import CheckpointError, ForgetSpecError, UnlearnError
from unlearn_core.metrics import AVG_GAP_KEYS, avg_gap

METRIC_COLUMNS = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy")
# Every metric is judged by its distance to the retrained reference (the gold standard of unlearning).
GAP_COLUMNS = tuple(f"gap_{m}" for m in METRIC_COLUMNS)


@dataclass(frozen=True)
class Choice:
    """The user's current request: what the pages share."""

    dataset: str
    model: str
    forget: str
    seed: int = 0
    device: str = "auto"

    def key(self) -> tuple:
        return (self.dataset, self.model, self.forget, self.seed, self.device)


class SetupCache:
    """Prepared :class:`~unlearn_core.pipeline.Setup` objects by request, shared by the UI and the worker.

    The underlying models come from the core's disk cache, so after a restart
    a setup is rebuilt in well under a second without retraining.
    """

    def __init__(self):
        self._setups: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def get(self, choice: Choice, progress=None, cancel=None, with_retrain: bool = True):
        from unlearn_core.pipeline import prepare

        with self._lock:
            cached = self._setups.get(choice.key())
        if cached is not None and (cached.retrained is not None or not with_retrain):
            return cached
        setup = prepare(choice.dataset, choice.model, choice.forget, choice.seed, choice.device, progress=progress,
                        cancel=cancel, with_retrain=with_retrain)
        with self._lock:
            current = self._setups.get(choice.key())
            if current is None or current.retrained is None:
                self._setups[choice.key()] = setup
            return self._setups[choice.key()]

    def peek(self, choice: Choice):
        with self._lock:
            return self._setups.get(choice.key())

    def clear(self) -> None:
        with self._lock:
            self._setups.clear()


def original_cache_path(dataset: str, model: str, seed: int = 0):
    """Where the core's checkpoint cache keeps this original model (same key as ``training.get_original``)."""
    from unlearn_core.checkpoints import CheckpointCache, cache_key
    from unlearn_core.data import load_dataset
    from unlearn_core.training import CACHE_VERSION, default_recipe

    bundle = load_dataset(dataset)
    key = cache_key({"v": CACHE_VERSION, "kind": "original", "dataset": bundle.name, "model": model, "seed": seed,
                     "recipe": default_recipe(bundle.name).as_dict(), "forget": None,
                     "n_train": int(bundle.train_y.numel())})
    return CheckpointCache().path_for(key)


def original_is_cached(dataset: str, model: str, seed: int = 0) -> bool:
    """Whether the original model is already on disk (so loading it is instant)."""
    return original_cache_path(dataset, model, seed).exists()


def install_original(network, choice: Choice) -> None:
    """Make uploaded weights the original model of ``choice`` (written where the training cache looks)."""
    from unlearn_core.checkpoints import save_checkpoint

    save_checkpoint(original_cache_path(choice.dataset, choice.model, choice.seed), network,
                    {"kind": "original", "uploaded": True, "dataset": choice.dataset, "model": choice.model})


def load_uploaded_checkpoint(data: bytes, dataset: str, model: str, seed: int = 0):
    """Build ``model`` for ``dataset`` and load uploaded weights into it; raises ``CheckpointError`` if they do not fit."""
    from unlearn_core.checkpoints import load_state_strict, read_checkpoint
    from unlearn_core.data import load_dataset
    from unlearn_core.models import build_for_dataset

    if not data:
        raise CheckpointError("the uploaded file is empty")
    checkpoint = read_checkpoint(bytes(data))  # the UNLEARN_MAX_UPLOAD_MB cap applies
    network = build_for_dataset(model, load_dataset(dataset), seed=seed)
    load_state_strict(network, checkpoint["state_dict"])
    network.eval()
    return network


def load_run_model(run: dict, bundle, device=None):
    """The unlearned model of a stored run, rebuilt from its checkpoint."""
    from unlearn_core.checkpoints import load_state_strict, read_checkpoint
    from unlearn_core.models import build_for_dataset

    path = run.get("checkpoint_path")
    if not path:
        raise CheckpointError(f"run {run.get('id')} has no saved checkpoint")
    network = build_for_dataset(run["model"], bundle, seed=run.get("seed") or 0)
    load_state_strict(network, read_checkpoint(path)["state_dict"])
    return network.to(device or torch.device("cpu")).eval()


def forget_spec_for(mode: str, classes=(), fraction: float | None = None, subclass: str | None = None,
                    indices=()) -> str:
    """The forget-spec text for one of the Forget page's modes, with a clear error when it would be empty."""
    from unlearn_core.forget import indices_spec

    if mode == "class":
        if not classes:
            raise ForgetSpecError("choose at least one class to forget")
        return "class:" + ",".join(str(c) for c in classes)
    if mode == "random":
        if fraction is None or not 0 < fraction < 1:
            raise ForgetSpecError("the random fraction must be strictly between 0 and 1")
        return f"random:{fraction:g}"
    if mode == "subclass":
        if not subclass:
            raise ForgetSpecError("choose a sub-class to forget")
        return f"subclass:{subclass}"
    if mode == "indices":
        if len(indices) == 0:
            raise ForgetSpecError("the forget set is empty: select samples on the map first")
        return str(indices_spec(indices))
    raise ForgetSpecError(f"unknown forget mode {mode!r}")


def _value(metrics: dict | None, key: str):
    value = (metrics or {}).get(key)
    return float("nan") if value is None else float(value)


def metrics_table(runs: list[dict]) -> pd.DataFrame:
    """One row for the original, one for the retrained reference, one per finished run.

    Columns: the metrics, their absolute gaps to the retrained model, the
    average gap, seconds and RTE. The reference rows come from the newest run.
    """
    done = [r for r in runs if r.get("status") == "done" and r.get("report")]
    rows = []
    if done:
        newest = done[0]["report"]
        for label, which in (("original", "original"), ("retrain (reference)", "retrained")):
            metrics = newest.get(which)
            if metrics is None:
                continue
            row = {"run": label, "method": which, **{k: _value(metrics, k) for k in METRIC_COLUMNS}}
            row["seconds"] = newest.get("retrain_seconds") if which == "retrained" else float("nan")
            if newest.get("retrained") is not None:
                # The original's distance from retraining is what unlearning has to close; the reference's is 0.
                row["avg_gap"] = avg_gap(metrics, newest["retrained"], newest.get("avg_gap_keys") or AVG_GAP_KEYS)
            rows.append(row)
    for run in done:
        report = run["report"]
        row = {"run": f"#{run['id']} {run['method']}", "method": run["method"],
               **{k: _value(report.get("unlearned"), k) for k in METRIC_COLUMNS},
               "seconds": report.get("seconds"), "rte": report.get("rte"), "avg_gap": report.get("avg_gap"),
               "run_id": run["id"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    reference = table[table["method"] == "retrained"]
    for key in METRIC_COLUMNS:
        table[f"gap_{key}"] = (table[key] - float(reference[key].iloc[0])).abs() if len(reference) else float("nan")
    for column in ("rte", "avg_gap", "run_id", "seconds"):
        table[column] = pd.to_numeric(table[column], errors="coerce") if column in table else float("nan")
    return table


def best_per_column(table: pd.DataFrame) -> dict[str, object]:
    """For every gap column, ``avg_gap`` and ``rte``: the run label that is best (smallest gap, largest RTE).

    Only unlearning runs compete; the original and the reference are context.
    """
    runs = table[table["method"].isin(["original", "retrained"]) == False]  # noqa: E712 (pandas mask)
    best = {}
    for column in (*GAP_COLUMNS, "avg_gap"):
        values = pd.to_numeric(runs[column], errors="coerce") if column in runs else pd.Series(dtype=float)
        if values.notna().any():
            best[column] = runs.loc[values.idxmin(), "run"]
    if "rte" in runs and pd.to_numeric(runs["rte"], errors="coerce").notna().any():
        best["rte"] = runs.loc[pd.to_numeric(runs["rte"], errors="coerce").idxmax(), "run"]
    return best


def per_class_shift(runs: list[dict]) -> tuple[pd.DataFrame, list[str], tuple[int, ...]]:
    """Per-class test accuracy of every run minus the original's: rows run label, columns class names.

    Returns ``(shift, class_names, forgotten_classes)``; the retrained
    reference is the first row, so a method can be compared with it.
    """
    done = [r for r in runs if r.get("status") == "done" and r.get("report")]
    if not done:
        return pd.DataFrame(), [], ()
    report = done[0]["report"]
    names = [str(n) for n in report.get("class_names") or range(len(report["original"]["per_class_test"]))]
    original = np.asarray(report["original"]["per_class_test"], dtype=float)
    rows, labels = [], []
    if report.get("retrained"):
        rows.append(np.asarray(report["retrained"]["per_class_test"], dtype=float) - original)
        labels.append("retrain (reference)")
    for run in done:
        rows.append(np.asarray(run["report"]["unlearned"]["per_class_test"], dtype=float) - original)
        labels.append(f"#{run['id']} {run['method']}")
    shift = pd.DataFrame(np.vstack(rows), index=labels, columns=names)
    return shift, names, tuple(report.get("forgotten_classes") or ())


def over_unlearning(shift: pd.DataFrame, forgotten: tuple[int, ...], threshold: float = 2.0) -> list[str]:
    """Plain-language warnings: runs where a retained class lost more than ``threshold`` points."""
    warnings = []
    retained = [i for i in range(shift.shape[1]) if i not in set(forgotten)]
    for label, row in shift.iterrows():
        values = row.to_numpy()[retained]
        if len(values) and np.nanmin(values) < -threshold:
            worst = retained[int(np.nanargmin(values))]
            warnings.append(f"{label}: retained class {shift.columns[worst]} lost {-np.nanmin(values):.1f} points")
    return warnings


def predictions(model, images: torch.Tensor, device=None) -> tuple[np.ndarray, np.ndarray]:
    """``(predicted class, softmax)`` for raw images."""
    from unlearn_core.training import predict_logits

    probs = torch.softmax(predict_logits(model, images, device), dim=1).numpy()
    return probs.argmax(1), probs


def entropy_groups(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Prediction entropy of the forget, remaining and test outputs (what the entropy MIA sees)."""
    from unlearn_core.metrics import entropy

    return {name: entropy(outputs[name]) for name in ("forget", "retain", "test") if name in outputs}


def to_display(images: torch.Tensor | np.ndarray, scale: int = 1) -> list[np.ndarray]:
    """Raw ``(N, C, H, W)`` ``uint8`` images to ``(H, W)`` / ``(H, W, 3)`` arrays for ``st.image``, upscaled."""
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    out = []
    for image in array:
        picture = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
        if scale > 1:
            picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
        out.append(np.ascontiguousarray(picture.astype(np.uint8)))
    return out


def display_scale(image_size: tuple[int, int], target: int = 56) -> int:
    """An integer upscale so tiny images (8x8 digits) are visible as thumbnails."""
    return max(1, int(math.ceil(target / max(image_size))))


def gallery_indices(labels: np.ndarray, per_class: int, seed: int = 0) -> dict[int, np.ndarray]:
    """A few training indices per class for the Setup page's gallery."""
    rng = np.random.default_rng(seed)
    out = {}
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        out[int(cls)] = np.sort(rng.choice(members, size=min(per_class, len(members)), replace=False))
    return out


def model_size(model) -> dict:
    """Parameter count and size in MiB of the float32 weights."""
    from unlearn_core.models import count_parameters

    params = count_parameters(model)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {"parameters": int(params), "mib": size / 2**20}


def ensure_valid_choice(dataset: str, model: str) -> None:
    """Fail early with a clear message for an unknown model (the data set is checked on load)."""
    from unlearn_core.models import MODELS

    if model not in MODELS:
        raise UnlearnError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")


def forget_gradient_shares(model, space, images: torch.Tensor, targets: torch.Tensor, device=None) -> dict:
    """Per layer, the share of the forget-set weight gradient inside the top-``r`` retained directions, for every r.

    Returns ``{layer: array}`` where ``array[r]`` is the share of the squared
    gradient norm that projecting onto the first ``r`` eigenvectors captures,
    i.e. what UNSC's projection removes at a rank ``r``. One backward pass
    serves every eps, so the Null space page's slider never recomputes it.
    """
    import copy

    from torch import nn

    from unlearn_core.data import to_float
    from unlearn_core.methods.base import freeze_batchnorm
    from unlearn_core.nullspace import tracked_layers

    device = device or next(model.parameters()).device
    work = copy.deepcopy(model).to(device)
    work.train()
    freeze_batchnorm(work)
    for module in work.modules():
        if isinstance(module, nn.Dropout):
            module.eval()  # the share must not depend on a random dropout mask
    work.zero_grad(set_to_none=True)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    for start in range(0, len(images), 256):
        x = to_float(images[start:start + 256]).to(device)
        loss_fn(work(x), targets[start:start + 256].to(device)).backward()
    shares = {}
    for name, module in tracked_layers(work).items():
        grad = module.weight.grad
        spectrum = space.layers.get(name)
        if grad is None or spectrum is None:
            continue
        flat = grad.reshape(grad.shape[0], -1).double()
        total = float((flat ** 2).sum())
        energy = ((flat @ spectrum.eigenvectors.to(flat.device).double()) ** 2).sum(0).cpu().numpy()
        cumulative = np.concatenate([[0.0], np.cumsum(energy)]) / total if total > 0 else np.zeros(len(energy) + 1)
        shares[name] = np.minimum(cumulative, 1.0)
    return shares
