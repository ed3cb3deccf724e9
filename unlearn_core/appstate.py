"""UI-agnostic helpers behind the dashboard: prepared setups, run models, tables.

The Streamlit pages stay thin: they read widgets and call these functions,
which are plain Python and tested without a browser. Nothing here imports
Streamlit.
"""

from __future__ import annotations

import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from unlearn_core.errors import CheckpointError, ForgetSpecError, ParameterError, UnlearnError
from unlearn_core.metrics import AVG_GAP_KEYS, avg_gap

METRIC_COLUMNS = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy")
# Every metric is judged by its distance to the retrained reference (the gold standard of unlearning).
GAP_COLUMNS = tuple(f"gap_{m}" for m in METRIC_COLUMNS)


SHARED_ENV = "UNLEARN_SHARED"
MAX_JOBS_ENV = "UNLEARN_MAX_JOBS_PER_SESSION"
SETUP_CACHE_ENV = "UNLEARN_SETUP_CACHE_MB"
JOB_RESULTS_ENV = "UNLEARN_JOB_RESULTS_MB"
DEFAULT_MAX_JOBS = 8
DEFAULT_SETUP_CACHE_MB = 512.0
DEFAULT_JOB_RESULTS_MB = 256.0
PROBE_SAMPLES = 256


def shared_mode() -> bool:
    """``UNLEARN_SHARED=1``: a server many people open; each session sees only its own runs and uploads."""
    return os.environ.get(SHARED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _env_number(name: str, default: float, whole: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0 or (whole and value != int(value)):
        raise UnlearnError(f"{name} must be a {'whole ' if whole else ''}number >= 0, got {raw!r}")
    return int(value) if whole else value


@dataclass(frozen=True)
class Limits:
    """Per-server limits, from the environment (README's configuration table). 0 means no limit."""

    jobs_per_session: int = DEFAULT_MAX_JOBS
    setup_cache_bytes: int = int(DEFAULT_SETUP_CACHE_MB * 2**20)
    job_results_bytes: int = int(DEFAULT_JOB_RESULTS_MB * 2**20)

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(int(_env_number(MAX_JOBS_ENV, DEFAULT_MAX_JOBS, whole=True)),
                   int(_env_number(SETUP_CACHE_ENV, DEFAULT_SETUP_CACHE_MB) * 2**20),
                   int(_env_number(JOB_RESULTS_ENV, DEFAULT_JOB_RESULTS_MB) * 2**20))


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


@dataclass
class UploadedModel:
    """An accepted upload: weights checked key by key, in the model's dtypes, and by a probe batch."""

    sha256: str
    dataset: str
    model: str
    seed: int
    network: torch.nn.Module
    test_accuracy: float
    nbytes: int

    @property
    def key(self) -> str:
        # Its own namespace: never a key of the training cache, so no upload can stand in for a trained model.
        return f"upload-{self.sha256[:16]}"


def setup_nbytes(setup) -> int:
    """Bytes a prepared setup holds of its own: both models' weights and the cached outputs (not the data set)."""
    from unlearn_core.jobs import estimate_bytes

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

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def prepare_with_upload(choice: Choice, uploaded: UploadedModel, progress=None, cancel=None,
                        with_retrain: bool = True):
    """A setup whose original is an accepted upload; the retrained reference is the shared trained one."""
    import copy
    import time

    from unlearn_core.data import load_dataset
    from unlearn_core.device import pick_device
    from unlearn_core.forget import ForgetSpec, index_root
    from unlearn_core.pipeline import Setup
    from unlearn_core.training import TrainedModel, default_recipe, get_retrained

    started = time.perf_counter()
    bundle = load_dataset(choice.dataset)
    split = ForgetSpec.parse(choice.forget, allow_files=False, files_root=index_root()).resolve(bundle, choice.seed)
    device = pick_device(choice.device)
    recipe = default_recipe(bundle.name)
    # A copy per setup: methods start from setup.original.model, and nothing may touch the accepted upload.
    network = copy.deepcopy(uploaded.network).to(device).eval()
    original = TrainedModel(network, uploaded.key, {"uploaded": True, "sha256": uploaded.sha256,
                                                    "test_accuracy": uploaded.test_accuracy},
                            True, time.perf_counter() - started)
    retrained = get_retrained(bundle, split, choice.model, choice.seed, recipe, device, progress, cancel) \
        if with_retrain else None
    return Setup(bundle, split, choice.model, choice.seed, device, recipe, original, retrained)


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


def probe_outputs(network, bundle, samples: int = PROBE_SAMPLES) -> None:
    """Run a batch of real test images through ``network``; refuse the model if any output is not finite.

    Finite weights can still give inf/NaN logits: a normalisation std of 0, a mean of 1e30 with a std of
    1e-30, an integer weight of 2**62. Such a model was accepted as the original (10 % accuracy) and made every
    later fine-tune diverge.
    """
    from unlearn_core.data import to_float
    from unlearn_core.training import predict_logits

    count = min(samples, int(bundle.test_y.numel()))
    logits = predict_logits(network, bundle.test_x[:count], torch.device("cpu"))
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(dim=1).sum())
        raise CheckpointError(f"refused: the model's outputs are NaN or infinite on {bad} of {count} test images "
                              "(check the normalisation statistics and weights it was saved with)")
    with torch.no_grad():
        features = network.features(to_float(bundle.test_x[:min(count, 32)]))
    if not torch.isfinite(features).all():
        raise CheckpointError("refused: the model's features are NaN or infinite on test images")


def accept_upload(data: bytes, dataset: str, model: str, seed: int = 0) -> UploadedModel:
    """Check an uploaded checkpoint fully, once: size caps, zip directory, keys, shapes, dtypes, a probe batch.

    Returns an :class:`UploadedModel` keyed by the file's SHA-256; nothing is written anywhere.
    """
    import hashlib

    from unlearn_core.data import load_dataset
    from unlearn_core.jobs import estimate_bytes
    from unlearn_core.training import accuracy

    network = load_uploaded_checkpoint(data, dataset, model, seed)
    bundle = load_dataset(dataset)
    with torch.no_grad():
        probe_outputs(network, bundle)
    sha = hashlib.sha256(bytes(data)).hexdigest()
    test_accuracy = float(accuracy(network, bundle.test_x, bundle.test_y, torch.device("cpu")))
    return UploadedModel(sha, dataset, model, int(seed), network, test_accuracy, estimate_bytes(network))


def load_uploaded_checkpoint(data: bytes, dataset: str, model: str, seed: int = 0):
    """Build ``model`` for ``dataset`` and load uploaded weights into it; raises ``CheckpointError`` if they do not fit."""
    from unlearn_core.checkpoints import load_state_strict, read_checkpoint
    from unlearn_core.data import load_dataset
    from unlearn_core.models import build_for_dataset

    if not data:
        raise CheckpointError("the uploaded file is empty")
    checkpoint = read_checkpoint(bytes(data))  # the UNLEARN_MAX_UPLOAD_MB and UNLEARN_MAX_UNPACKED_MB caps apply
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


# -- what a browser may ask for ----------------------------------------------------------------------------------
# What can make markup in Streamlit's markdown: emphasis, code, links and images ([ ] !), autolinks (< >), HTML,
# tables, strikethrough, math ($) and colour directives (":red[...]" needs the "[").
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$!{}])")
# GFM turns bare "http://..." and "www...." into live links: a backslash inside each breaks the pattern.
_MD_AUTOLINK = re.compile(r"(?i)(://|www\.)")
# An image-folder name from a URL: plain relative names only (the loader keeps it inside UNLEARN_IMAGE_ROOT).
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _./-]{0,199}")
# Class and fine-class names as the registries spell them (cifar100: "aquarium_fish", "maple_tree").
_SPEC_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}")


def escape_markdown(text) -> str:
    """``text`` with every character that makes markup in Streamlit's markdown escaped.

    For anything a user or a URL controls that ends up in ``st.markdown``,
    ``st.error`` and friends: a ``[text](url)`` link or ``![](url)`` beacon
    becomes plain text. Newlines become spaces so a value stays on its line.
    """
    flat = " ".join(str(text).split())
    escaped = _MD_SPECIAL.sub(r"\\\1", flat)
    escaped = _MD_AUTOLINK.sub(lambda m: ":\\/\\/" if m.group(1) == "://" else m.group(1)[:3] + "\\.", escaped)
    # A leading list, heading-underline or quote marker stays text.
    escaped = re.sub(r"^(\d+)([.)])", r"\1\\\2", escaped)
    if re.match(r"[-+=>]", escaped):
        escaped = "\\" + escaped
    return escaped


def markdown_code(text) -> str:
    """``text`` as an inline code span: shown literally (no links, images or colour directives inside one);
    backticks, the only way out of a span, become quotes."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def check_dataset_name(name: str) -> str:
    """A registered data set or ``imagefolder:<plain relative name>``; raises ``DatasetError`` otherwise."""
    from unlearn_core.data import DATASETS, IMAGEFOLDER_PREFIX
    from unlearn_core.errors import DatasetError

    name = str(name).strip()
    if name in DATASETS:
        return name
    if name.startswith(IMAGEFOLDER_PREFIX) and _FOLDER_NAME.fullmatch(name[len(IMAGEFOLDER_PREFIX):]) \
            and ".." not in name:
        return name
    raise DatasetError(f"unknown data set (choose one of {', '.join(DATASETS)}, or imagefolder:<folder>)")


def check_model_name(name: str) -> str:
    from unlearn_core.errors import ModelError
    from unlearn_core.models import MODELS

    if name not in MODELS:
        raise ModelError(f"unknown model (choose one of {', '.join(MODELS)})")
    return name


def check_forget_text(text: str) -> str:
    """A forget spec a browser may send, in canonical form: inline values only, no files, plain names."""
    from unlearn_core.forget import ForgetSpec, index_root

    spec = ForgetSpec.parse(str(text), allow_files=False, files_root=index_root())
    if spec.kind in ("class", "subclass") and not all(_SPEC_VALUE.fullmatch(v) for v in spec.values):
        raise ForgetSpecError("class names may hold only letters, digits, spaces, '_', '.' and '-'")
    return str(spec)


def check_seed_text(text) -> int:
    """A seed from a URL: ASCII digits only (``int`` also reads Arabic-Indic digits and "1_0"), in torch's range."""
    from unlearn_core.forget import validate_seed

    text = str(text).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        raise ParameterError("the seed must be a whole number")
    return validate_seed(int(text))


def choice_from_query(params: dict, defaults: dict) -> tuple[dict, list[str]]:
    """Validate ``?dataset=``, ``?model=``, ``?forget=`` (and ``?seed=``) before any page uses them.

    Returns the values to use and one plain-text warning per value ignored
    (the bad value itself is never repeated: it is what an attacker wrote).
    The seed is checked only when ``defaults`` or ``params`` name it.
    """
    checks = {"dataset": check_dataset_name, "model": check_model_name, "forget": check_forget_text,
              "seed": check_seed_text}
    values, warnings = {}, []
    for name, check in checks.items():
        if name not in defaults and name not in params:
            continue
        raw = params.get(name)
        if raw in (None, ""):
            values[name] = defaults.get(name, "")
            continue
        try:
            values[name] = check(str(raw))
        except UnlearnError as error:
            warnings.append(f"The link's {name} was ignored: {str(error).split(';')[0]}.")
            values[name] = defaults.get(name, "")
    return values, warnings


# -- what survives a reload ----------------------------------------------------------------------------------------
# The choice lives in the URL (a reload or a shared link opens the same view); the session token that owns jobs and
# runs lives in a cookie, never in the URL, so a shared link cannot hand its recipient the sender's runs.
URL_KEYS = ("dataset", "model", "forget", "seed")
SESSION_COOKIE = "unlearn_session"
SESSION_TOKEN_BYTES = 24  # secrets.token_urlsafe(24): 192 random bits in 32 URL-safe characters
_SESSION_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
# A hand-picked set of a few thousand samples fits a link; beyond this the URL keeps the rest of the choice only
# (proxies and servers refuse request lines of some tens of KB: Tornado's default limit is 64 KB).
MAX_URL_FORGET_CHARS = 16_000
_INDEX_VALUE = re.compile(r"\s*-?\d+\s*")


def new_session_token() -> str:
    import secrets

    return secrets.token_urlsafe(SESSION_TOKEN_BYTES)


def check_session_token(value) -> str | None:
    """A token read back from the browser, or ``None`` when it is absent or not one this app could have made.

    Only the exact shape of :func:`new_session_token` passes: anything else (a cookie another app set, a forged
    path or markup) starts a new session rather than reaching the job list or the run store.
    """
    return value if isinstance(value, str) and _SESSION_TOKEN.fullmatch(value) else None


def cookie_script(token: str, name: str = SESSION_COOKIE) -> str:
    """The one line of JavaScript that stores the session token as a browser-session cookie.

    No ``Max-Age``: the cookie ends with the browser session, so the next person at a shared lab computer does not
    inherit the runs. ``SameSite=Strict``: no other site's page can send it. ``Secure`` when served over HTTPS.
    """
    if check_session_token(token) is None:
        raise ValueError("not a session token")  # never write anything else into a script
    return (f"<script>document.cookie = '{name}={token}; Path=/; SameSite=Strict'"
            " + (location.protocol === 'https:' ? '; Secure' : '');</script>")


def forget_label(text) -> str:
    """A forget spec as people read it: a hand-picked set is "hand-picked, N samples", never its index list."""
    text = str(text)
    kind, _, body = text.partition(":")
    if kind.strip().lower() != "indices":
        return text
    values = body.split(",")
    if not all(_INDEX_VALUE.fullmatch(v) for v in values if v.strip()):
        return "hand-picked, from a file"
    count = len({int(v) for v in values if v.strip()})
    return f"hand-picked, {count:,} sample{'' if count == 1 else 's'}"


def url_params(choice: dict) -> dict[str, str]:
    """What the address bar keeps of the shared choice: the checked values only, never the session token.

    A hand-picked set too long for a link is left out (the rest still opens the same data set and model).
    """
    params = {key: str(choice[key]) for key in URL_KEYS if choice.get(key) not in (None, "")}
    if len(params.get("forget", "")) > MAX_URL_FORGET_CHARS:
        del params["forget"]
    return params


class RunView:
    """The run store as one browser session may see it.

    Personal mode (``shared=False``): every run, CLI runs included. Shared
    mode: only the runs this session started (``config["owner"]``), so no
    visitor can list or download another's. In both modes a run of an uploaded
    original is shown only with that upload, and a row whose stored JSON cannot
    be read is skipped (listed in ``skipped``) instead of breaking the page.
    Everything else is passed through to the :class:`RunStore`.
    """

    FILTERS = ("dataset", "model", "forget", "method", "status", "tag")

    def __init__(self, store, owner: str, shared: bool, original: str = ""):
        self._store = store
        self.owner = owner
        self.shared = shared
        self.original = original
        self.skipped: list[int] = []

    def __getattr__(self, name):
        return getattr(self._store, name)

    def start(self, config: dict) -> int:
        return self._store.start({**config, "owner": self.owner})

    def _visible(self, run: dict) -> bool:
        config = run.get("config") or {}
        if self.shared and config.get("owner") != self.owner:
            return False
        return (config.get("original_upload") or "") == self.original

    def list(self, limit: int | None = None, **filters) -> list[dict]:
        self.skipped = []
        try:
            with warnings.catch_warnings():
                # The store warns about rows it cannot decode; this view lists them in ``skipped`` instead.
                warnings.simplefilter("ignore")
                runs = self._store.list(**filters)
        except (ValueError, TypeError, KeyError):
            runs = self._list_row_by_row(filters)
        visible = []
        for run in runs:
            if run.get("read_error"):
                self.skipped.append(int(run["id"]))  # the store could not decode this row (it says so, not raises)
            elif run.get("report") is not None and not isinstance(run["report"], dict):
                self.skipped.append(int(run["id"]))  # valid JSON, but not a report: the pages would crash on it
            elif self._visible(run):
                visible.append(run)
        return visible[:limit] if limit is not None else visible

    def _list_row_by_row(self, filters: dict) -> list[dict]:
        """The slow path when some row does not decode: read ids, then each run alone, skipping bad ones."""
        import sqlite3

        clauses = [(k, v) for k, v in filters.items() if k in self.FILTERS and v is not None]
        query = "SELECT id FROM runs" + (" WHERE " + " AND ".join(f"{k} = ?" for k, _ in clauses)
                                         if clauses else "") + " ORDER BY id DESC"
        from pathlib import Path

        conn = sqlite3.connect(Path(self._store.path).resolve().as_uri() + "?mode=ro", uri=True, timeout=60)
        try:
            ids = [int(row[0]) for row in conn.execute(query, [v for _, v in clauses]).fetchall()]
        finally:
            conn.close()
        runs = []
        for run_id in ids:
            try:
                runs.append(self._store.get(run_id))
            except (ValueError, TypeError, KeyError):
                self.skipped.append(run_id)
        return runs

    # Sweeps carry their owner in the stored spec, as runs do in their config, so a shared server lists to each
    # session only the sweeps it started (and run_sweep's RunView.start marks every run of it the same way).
    def save_sweep(self, tag: str, kind: str, spec: dict) -> None:
        self._store.save_sweep(tag, kind, {**spec, "owner": self.owner})

    def sweep_visible(self, sweep: dict | None) -> bool:
        return sweep is not None and (not self.shared or (sweep.get("spec") or {}).get("owner") == self.owner)

    def list_sweeps(self) -> list[dict]:
        return [s for s in self._store.list_sweeps() if self.sweep_visible(s)]

    def get_sweep(self, tag: str) -> dict | None:
        sweep = self._store.get_sweep(tag)
        return sweep if self.sweep_visible(sweep) else None

    def find_keys(self, keys: list[str]) -> dict[str, dict]:
        """Stored runs a sweep may reuse: on a shared server only this session's (another's stay invisible)."""
        found = self._store.find_keys(keys)
        if not self.shared:
            return found
        mine = {}
        for key, entry in found.items():
            try:
                run = self._store.get(entry["id"])
            except Exception:  # noqa: BLE001 - a row that cannot be read is not reused; the sweep runs it again
                continue
            if (run.get("config") or {}).get("owner") == self.owner:
                mine[key] = entry
        return mine

    def get(self, run_id: int) -> dict:
        from unlearn_core.store import RunNotFoundError

        run = self._store.get(run_id)
        if not self._visible(run):
            raise RunNotFoundError(f"no run with id {run_id}")  # the same answer as for a run that does not exist
        return run


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
