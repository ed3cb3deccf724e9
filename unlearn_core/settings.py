"""Every ``UNLEARN_*`` setting, read and checked in one place.

:func:`settings` parses the environment into a frozen :class:`Settings`.
It parses once per distinct set of ``UNLEARN_*`` values (and ``HOME``), so
a process that never changes its environment parses it once, while a test
that sets a variable sees its value at the next call. A bad value raises
:class:`SettingsError` with one line that names the variable, what it must
be and what it got.

| variable | field | default |
|---|---|---|
| ``UNLEARN_DATA_DIR`` | ``data_dir`` | ``~/.cache/unlearning-lab`` |
| ``UNLEARN_IMAGE_ROOT`` | ``image_root`` | ``<data_dir>/imagefolders`` |
| ``UNLEARN_INDEX_ROOT`` | ``index_root`` | unset (``None``: no index files from the app) |
| ``UNLEARN_MAX_UPLOAD_MB`` | ``max_upload_mb`` | 200 (more than 0) |
| ``UNLEARN_MAX_UNPACKED_MB`` | ``max_unpacked_mb`` | 1024 (more than 0) |
| ``UNLEARN_RUN_CHECKPOINT_QUOTA_MB`` | ``run_checkpoint_quota_mb`` | 2048 (0 keeps only pinned runs') |
| ``UNLEARN_CHECKPOINT_CACHE_MB`` | ``checkpoint_cache_mb`` | 4096 (trained originals and references; LRU, pins kept) |
| ``UNLEARN_SETUP_CACHE_MB`` | ``setup_cache_mb`` | 512 (0: no bound) |
| ``UNLEARN_JOB_RESULTS_MB`` | ``job_results_mb`` | 256 (0: no bound) |
| ``UNLEARN_MAX_JOBS_PER_SESSION`` | ``max_jobs_per_session`` | 8 (0: no limit) |
| ``UNLEARN_MAX_SWEEP_RUNS`` | ``max_sweep_runs`` | 200 model trainings per submission from the app (0: no limit) |
| ``UNLEARN_MAX_TRAININGS_PER_SESSION`` | ``max_trainings_per_session`` | 200 queued or running per browser session (0: no limit) |
| ``UNLEARN_SERVER_MAX_QUEUED_TRAININGS`` | ``server_max_queued_trainings`` | 400 queued or running in all (0: no limit) |
| ``UNLEARN_DEFAULT_DATASET`` | ``default_dataset`` | ``mnist5k`` |
| ``UNLEARN_DEFAULT_MODEL`` | ``default_model`` | ``""`` (the data set's default model) |
| ``UNLEARN_DEFAULT_FORGET`` | ``default_forget`` | ``class:3`` |
| ``UNLEARN_SHARED`` | ``shared`` | off (``1``, ``true``, ``yes``, ``on``: shared-server mode) |
| ``UNLEARN_APP_AUTO_UMAP`` | ``app_auto_umap`` | on (``0``: the app computes UMAP only on request) |
| ``UNLEARN_APP_TIMINGS`` | ``app_timings`` | off (``1``: the app logs its render times) |
| ``UNLEARN_ENGINE`` | ``engine`` | ``inline`` (the app's jobs in this process) or ``ray`` |
| ``UNLEARN_RAY_ADDRESS`` | ``ray_address`` | ``""`` (local Ray on 127.0.0.1), ``HOST:PORT``, ``ray://HOST:PORT``, ``auto`` |
| ``UNLEARN_MAX_RUNNING`` | ``max_running`` | 0 (as many jobs at once as the engine has slots: 1 inline) |
| ``UNLEARN_MAX_RUNNING_PER_VISITOR`` | ``max_running_per_visitor`` | 1 job running at once per browser session (0: no limit) |

Numbers are ASCII decimals (``float`` alone would also read Arabic-Indic or
full-width digits); megabytes are MiB.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

from unlearn_core.errors import UnlearnError

PREFIX = "UNLEARN_"
ENGINES = ("inline", "ray")
TRUE_WORDS = ("1", "true", "yes", "on")


class SettingsError(UnlearnError):
    """An ``UNLEARN_*`` environment variable has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """The library's and the app's configuration, as parsed from the environment (see the module table)."""

    data_dir: Path
    image_root: Path
    index_root: Path | None
    max_upload_mb: float = 200.0
    max_unpacked_mb: float = 1024.0
    run_checkpoint_quota_mb: float = 2048.0
    checkpoint_cache_mb: float = 4096.0
    setup_cache_mb: float = 512.0
    job_results_mb: float = 256.0
    max_jobs_per_session: int = 8
    max_sweep_runs: int = 200
    max_trainings_per_session: int = 200
    server_max_queued_trainings: int = 400
    default_dataset: str = "mnist5k"
    default_model: str = ""
    default_forget: str = "class:3"
    shared: bool = False
    app_auto_umap: bool = True
    app_timings: bool = False
    engine: str = "inline"
    ray_address: str = ""
    max_running: int = 0
    max_running_per_visitor: int = 1

    @staticmethod
    def mib_to_bytes(megabytes: float) -> int:
        """MiB as a whole number of bytes."""
        return int(megabytes * 2**20)

    @property
    def max_upload_bytes(self) -> int:
        return self.mib_to_bytes(self.max_upload_mb)

    @property
    def max_unpacked_bytes(self) -> int:
        return self.mib_to_bytes(self.max_unpacked_mb)

    @property
    def run_checkpoint_quota_bytes(self) -> int:
        return self.mib_to_bytes(self.run_checkpoint_quota_mb)

    @property
    def checkpoint_cache_bytes(self) -> int:
        return self.mib_to_bytes(self.checkpoint_cache_mb)

    @property
    def setup_cache_bytes(self) -> int:
        return self.mib_to_bytes(self.setup_cache_mb)

    @property
    def job_results_bytes(self) -> int:
        return self.mib_to_bytes(self.job_results_mb)


def _shown(raw: str) -> str:
    return repr(raw[:40])


def _number(env: dict[str, str], name: str, default: float, *, positive: bool = False,
            whole: bool = False) -> float:
    """``env[name]`` as a finite ASCII number (>= 0, or > 0 with ``positive``; an integer with ``whole``)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = float("nan")
    if raw.isascii():
        try:
            value = float(raw)
        except ValueError:
            pass
    bad = not math.isfinite(value) or value < 0 or (positive and value == 0) or (whole and value != int(value))
    if bad:
        kind = "whole number" if whole else "number"
        bound = "more than 0" if positive else "0 or more"
        unit = " of MiB" if name.endswith("_MB") else ""
        raise SettingsError(f"{name} must be a {kind}{unit}, {bound}, got {_shown(raw)}")
    return int(value) if whole else value


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in TRUE_WORDS


def _engine(env: dict[str, str]) -> str:
    raw = env.get("UNLEARN_ENGINE", "").strip()
    if not raw:
        return "inline"
    if raw.lower() not in ENGINES:
        raise SettingsError(f"UNLEARN_ENGINE must be one of {', '.join(ENGINES)}, got {_shown(raw)}")
    return raw.lower()


def _ray_address(env: dict[str, str]) -> str:
    """``UNLEARN_RAY_ADDRESS`` checked for form only (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``; no network)."""
    raw = env.get("UNLEARN_RAY_ADDRESS", "").strip()
    if not raw:
        return ""
    text = raw[len("ray://"):] if raw.startswith("ray://") else raw
    host, sep, port = text.rpartition(":")
    if raw != "auto" and (not sep or not host.strip("[]") or not port.isascii() or not port.isdigit()
                          or not 0 < int(port) < 65536 or not raw.isascii() or any(c.isspace() for c in raw)):
        raise SettingsError(f"UNLEARN_RAY_ADDRESS must be HOST:PORT, ray://HOST:PORT or auto, got {_shown(raw)}")
    return raw


def _parse(env: dict[str, str], home: str) -> Settings:
    data_dir = Path(env.get("UNLEARN_DATA_DIR") or os.path.join(home, ".cache", "unlearning-lab"))
    image_root = Path(env.get("UNLEARN_IMAGE_ROOT") or data_dir / "imagefolders")
    index_raw = env.get("UNLEARN_INDEX_ROOT", "").strip()
    return Settings(
        data_dir=data_dir,
        image_root=image_root,
        index_root=Path(index_raw).expanduser() if index_raw else None,
        max_upload_mb=_number(env, "UNLEARN_MAX_UPLOAD_MB", 200.0, positive=True),
        max_unpacked_mb=_number(env, "UNLEARN_MAX_UNPACKED_MB", 1024.0, positive=True),
        run_checkpoint_quota_mb=_number(env, "UNLEARN_RUN_CHECKPOINT_QUOTA_MB", 2048.0),
        checkpoint_cache_mb=_number(env, "UNLEARN_CHECKPOINT_CACHE_MB", 4096.0),
        setup_cache_mb=_number(env, "UNLEARN_SETUP_CACHE_MB", 512.0),
        job_results_mb=_number(env, "UNLEARN_JOB_RESULTS_MB", 256.0),
        max_jobs_per_session=int(_number(env, "UNLEARN_MAX_JOBS_PER_SESSION", 8, whole=True)),
        max_sweep_runs=int(_number(env, "UNLEARN_MAX_SWEEP_RUNS", 200, whole=True)),
        max_trainings_per_session=int(_number(env, "UNLEARN_MAX_TRAININGS_PER_SESSION", 200, whole=True)),
        server_max_queued_trainings=int(_number(env, "UNLEARN_SERVER_MAX_QUEUED_TRAININGS", 400, whole=True)),
        default_dataset=env.get("UNLEARN_DEFAULT_DATASET", "").strip() or "mnist5k",
        default_model=env.get("UNLEARN_DEFAULT_MODEL", "").strip(),
        default_forget=env.get("UNLEARN_DEFAULT_FORGET", "").strip() or "class:3",
        shared=_flag(env, "UNLEARN_SHARED", False),
        app_auto_umap=env.get("UNLEARN_APP_AUTO_UMAP", "1").strip() != "0",
        app_timings=env.get("UNLEARN_APP_TIMINGS", "").strip() == "1",
        engine=_engine(env),
        ray_address=_ray_address(env),
        max_running=int(_number(env, "UNLEARN_MAX_RUNNING", 0, whole=True)),
        max_running_per_visitor=int(_number(env, "UNLEARN_MAX_RUNNING_PER_VISITOR", 1, whole=True)),
    )


@functools.lru_cache(maxsize=16)
def _cached(items: tuple[tuple[str, str], ...], home: str) -> Settings:
    return _parse(dict(items), home)


def settings() -> Settings:
    """The current settings: parsed once per distinct ``UNLEARN_*`` environment; :class:`SettingsError` if bad."""
    items = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX)))
    return _cached(items, os.path.expanduser("~"))
