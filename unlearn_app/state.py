"""The dashboard's server-side state: the shared choice, the per-server limits, the cache of prepared setups."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

from unlearn_core.errors import CheckpointError, ForgetSpecError
from unlearn_core.settings import settings
from unlearn_app.uploads import UploadedModel, prepare_with_upload


@dataclass(frozen=True)
class Limits:
    """Per-server limits, from :func:`unlearn_core.settings.settings` (README's configuration table). 0: no limit."""

    jobs_per_session: int = 8
    setup_cache_bytes: int = 512 * 2**20
    job_results_bytes: int = 256 * 2**20
    trainings_per_session: int = 200
    server_queued_trainings: int = 400

    @classmethod
    def from_env(cls) -> "Limits":
        """The limits the ``UNLEARN_*`` environment sets; :class:`~unlearn_core.settings.SettingsError` if bad."""
        current = settings()
        return cls(current.max_jobs_per_session, current.setup_cache_bytes, current.job_results_bytes,
                   current.max_trainings_per_session, current.server_max_queued_trainings)


@dataclass(frozen=True)
class Choice:
    """The user's current request: what the pages share.

    ``original`` is empty for the trained original model, else the SHA-256 of
    an uploaded checkpoint; ``owner`` is the browser session for an upload
    (uploads are never shared between sessions on a shared server).
    """

    dataset: str
    model: str
    forget: str
    seed: int = 0
    device: str = "auto"
    original: str = ""
    owner: str = ""

    def key(self) -> tuple:
        return (self.dataset, self.model, self.forget, self.seed, self.device, self.original, self.owner)



def resolve_choice(session, setups: "SetupCache", owner: str) -> Choice:
    """The :class:`Choice` a session's values ask for (``dataset``, ``model``, ``forget``, ``seed``, ``original``).

    An empty model is the data set's default. An uploaded original stays only
    while ``setups`` still holds it for ``owner`` with the chosen data set,
    model and seed; otherwise (another choice, or the server let it go) the
    choice falls back to the trained original (``original == ""``).
    """
    from unlearn_core.data import default_model_for

    dataset, seed = session["dataset"], int(session["seed"])
    model = session.get("model") or default_model_for(dataset)
    original = session.get("original", "")
    if original:
        uploaded = setups.upload(owner, original)
        if uploaded is None or (uploaded.dataset, uploaded.model, uploaded.seed) != (dataset, model, seed):
            original = ""
    return Choice(dataset, model, session["forget"], seed, original=original, owner=owner if original else "")

def setup_nbytes(setup) -> int:
    """Bytes a prepared setup holds of its own: both models' weights and the cached outputs (not the data set)."""
    from unlearn_app.jobs import estimate_bytes

    total = 0
    for trained in (setup.original, setup.retrained):
        if trained is not None:
            total += estimate_bytes(trained.model)
    return total + estimate_bytes(getattr(setup, "_outputs", {}))


class SetupCache:
    """Prepared :class:`~unlearn_core.pipeline.Setup` objects by request, shared by the UI and the worker.

    The underlying models come from the core's disk cache, so after a restart
    a setup is rebuilt in well under a second without retraining. Setups and
    uploaded models are kept least-recently-used first out under ``max_bytes``
    (``UNLEARN_SETUP_CACHE_MB``): 400 forget sets used to add 95 MB on mlp and
    were never let go. The newest entry always stays, even if alone it is over.
    """

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = Limits.from_env().setup_cache_bytes if max_bytes is None else int(max_bytes)
        self._entries: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    # -- the LRU ---------------------------------------------------------------------------------------------
    def _touch(self, key: tuple):
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def _put(self, key: tuple, value) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        self._evict()

    def _evict(self) -> None:
        if not self.max_bytes:
            return
        sizes = {key: self._nbytes(value) for key, value in self._entries.items()}
        total = sum(sizes.values())
        for key in list(self._entries)[:-1]:
            if total <= self.max_bytes:
                break
            total -= sizes[key]
            del self._entries[key]

    @staticmethod
    def _nbytes(value) -> int:
        return value.nbytes if isinstance(value, UploadedModel) else setup_nbytes(value)

    def nbytes(self) -> int:
        with self._lock:
            return sum(self._nbytes(v) for v in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- uploads -----------------------------------------------------------------------------------------------
    def add_upload(self, owner: str, uploaded: UploadedModel) -> None:
        with self._lock:
            self._put(("upload", owner, uploaded.sha256), uploaded)

    def upload(self, owner: str, sha256: str) -> UploadedModel | None:
        with self._lock:
            return self._touch(("upload", owner, sha256))

    # -- setups ------------------------------------------------------------------------------------------------
    def get(self, choice: Choice, progress=None, cancel=None, with_retrain: bool = True):
        key = ("setup", *choice.key())
        with self._lock:
            cached = self._touch(key)
        if cached is not None and (cached.retrained is not None or not with_retrain):
            return cached
        if choice.original:
            uploaded = self.upload(choice.owner, choice.original)
            if uploaded is None:
                raise CheckpointError("the uploaded model is no longer held by the server (evicted or restarted); "
                                      "upload it again on the Setup page")
            setup = prepare_with_upload(choice, uploaded, progress, cancel, with_retrain)
        else:
            from unlearn_core.forget import ForgetSpec, index_root
            from unlearn_core.pipeline import prepare

            # Parsed here with files refused: pipeline.prepare would read an indices:<file> for anyone.
            spec = ForgetSpec.parse(choice.forget, allow_files=False, files_root=index_root())
            setup = prepare(choice.dataset, choice.model, spec, choice.seed, choice.device, progress=progress,
                            cancel=cancel, with_retrain=with_retrain)
        with self._lock:
            current = self._entries.get(key)
            if current is None or current.retrained is None:
                self._put(key, setup)
            else:
                self._entries.move_to_end(key)
            return self._entries.get(key, setup)

    def peek(self, choice: Choice):
        with self._lock:
            return self._entries.get(("setup", *choice.key()))

    def original_ready(self, choice: Choice) -> bool:
        """Whether ``choice``'s original model is at hand: an upload, a held setup, or the trained one on disk."""
        if choice.original or self.peek(choice) is not None:
            return True
        return original_is_cached(choice.dataset, choice.model, choice.seed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def original_cache_path(dataset: str, model: str, seed: int = 0):
    """Where the core's checkpoint cache keeps this original model (``recipes.model_cache_key``; no torch)."""
    from unlearn_core.checkpoints import CheckpointCache
    from unlearn_core.data import load_arrays
    from unlearn_core.recipes import default_recipe, model_cache_key

    arrays = load_arrays(dataset)
    key = model_cache_key("original", arrays, model, seed, default_recipe(arrays.name))
    return CheckpointCache().path_for(key)


@dataclass(frozen=True)
class ModelCard:
    """What Setup shows of an original model: test accuracy (%), parameter count, weights (MiB of the state
    dict's tensors) and training seconds (NaN for an upload)."""

    test_accuracy: float
    parameters: int
    mib: float
    train_seconds: float


def cached_original_card(dataset: str, model: str, seed: int = 0) -> ModelCard | None:
    """The trained original's card from its checkpoint's metadata alone (``checkpoints.read_meta``: no torch, no
    weights read); ``None`` when it is not cached or was saved without the figures the card needs."""
    from unlearn_core.checkpoints import read_meta

    meta = read_meta(original_cache_path(dataset, model, seed))
    try:
        return ModelCard(float(meta["test_accuracy"]), int(meta["parameters"]), float(meta["weight_bytes"]) / 2**20,
                         float(meta.get("seconds", math.nan)))
    except (TypeError, KeyError, ValueError):
        return None


def original_is_cached(dataset: str, model: str, seed: int = 0) -> bool:
    """Whether the original model is already on disk (so loading it is instant)."""
    return original_cache_path(dataset, model, seed).exists()


def load_run_model(run: dict, bundle, device=None):
    """The unlearned model of a stored run, rebuilt from its checkpoint."""
    import torch

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

