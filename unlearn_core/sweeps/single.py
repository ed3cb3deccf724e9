"""One run of the dashboard as an engine task: the request that crosses to the worker, the task, and the channel
that carries its progress to the driver and a cancel back to it.

The dashboard's driver (the app process) hands a Ray task a plain :func:`run_request` dictionary; the task
(:func:`run_task`) prepares the setup on its node (the original and retrained models from that node's checkpoint
cache, trained there when absent), runs the method, builds the report and returns plain data: the stored config,
the report's dict, the unlearned weights and outputs, the method's artifacts and the node it ran on. The task records
nothing: the driver records the outcome with :func:`unlearn_core.record.record_outcome`, so a task retried after
its worker died is recorded once, by the one driver that received its result.

:class:`unlearn_core.raycluster.ProgressChannel` is the state of a small Ray actor shared by every task of one
driver: a task posts its :class:`~unlearn_core.progress.ProgressEvent` values under its key
(:class:`ChannelProgress`, at most every ``PROGRESS_INTERVAL_S`` seconds within a stage, and at once on a new
stage), the driver drains them into the job's snapshot; the driver marks a key cancelled and the task's :class:`ChannelCancel` (a ``threading.Event`` look-alike
the core's ``Reporter.check_cancel`` reads between steps) sees it within ``CANCEL_POLL_S`` seconds.
"""

from __future__ import annotations

import dataclasses
import os
import time

from unlearn_core.errors import Cancelled
from unlearn_core.progress import ProgressEvent
from unlearn_core.raycluster import node_id

#: Longest a finished task waits for the channel to take its last progress post.
FLUSH_WAIT_S = 5.0
#: Shortest time between two progress posts of one stage (a new stage is posted at once).
PROGRESS_INTERVAL_S = 0.2
#: Longest time between a cancel at the driver and the task's next look at it (between steps).
CANCEL_POLL_S = 0.5


def run_request(dataset: str, model: str, forget: str, seed: int, method: str, params: dict | None = None,
                evidence: str | None = None, extra_config: dict | None = None, device: str = "auto",
                tag: str | None = None, threads: int | None = None) -> dict:
    """What a task needs to run one method on one choice; plain data (it is pickled to the worker).

    ``forget`` is forget-set text as the app accepts it (parsed in the task with index files refused outside
    ``UNLEARN_INDEX_ROOT``, as :class:`unlearn_app.state.SetupCache` parses it).
    """
    return {"dataset": dataset, "model": model, "forget": forget, "seed": int(seed), "method": method,
            "params": dict(params or {}), "evidence": evidence or None, "extra_config": dict(extra_config or {}),
            "device": device, "tag": tag, "threads": threads}


class ChannelProgress:
    """A :data:`~unlearn_core.progress.ProgressFn` that posts events to a channel actor: fire and forget while
    the task runs; :meth:`flush` sends the last held event and waits (at most ``FLUSH_WAIT_S``) until the actor
    has taken the last post, so that every event is there when the driver drains the channel after the result
    (one caller's calls to an actor run in the order they were sent)."""

    def __init__(self, channel, key: str, interval: float = PROGRESS_INTERVAL_S):
        self.channel, self.key, self.interval = channel, key, interval
        self._stage, self._sent_at, self._pending, self._last = None, 0.0, None, None

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        if event.stage != self._stage or now - self._sent_at >= self.interval:
            self._send(event, now)
        else:
            self._pending = event

    def _send(self, event: ProgressEvent, now: float) -> None:
        data = dataclasses.asdict(event)
        data["point"] = None  # curve points stay in the report's evidence; the bar needs the numbers only
        try:
            self._last = self.channel.post.remote(self.key, data)
        except Exception:  # progress is best effort; the run goes on
            pass
        self._stage, self._sent_at, self._pending = event.stage, now, None

    def flush(self) -> None:
        if self._pending is not None:
            self._send(self._pending, time.monotonic())
        if self._last is not None:
            import ray

            try:
                ray.wait([self._last], timeout=FLUSH_WAIT_S)
            except Exception:  # the channel is restarting: the result still goes back, without these events
                pass
            self._last = None


class ChannelCancel:
    """``is_set()`` is true once the driver cancelled this task's key (asked of the actor at most every
    ``CANCEL_POLL_S`` s; once true it stays true)."""

    def __init__(self, channel, key: str, poll: float = CANCEL_POLL_S):
        self.channel, self.key, self.poll = channel, key, poll
        self._set, self._asked_at = False, float("-inf")

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._set and now - self._asked_at >= self.poll:
            import ray

            self._asked_at = now
            try:
                self._set = bool(ray.get(self.channel.cancelled.remote(self.key), timeout=5))
            except Exception:  # the channel is restarting; ask again at the next poll (the driver may ray.cancel)
                pass
        return self._set

    def set(self) -> None:
        self._set = True


def train_original_task(dataset: str, model: str, seed: int, device: str = "auto", threads: int | None = None,
                        channel=None, key: str = "") -> dict:
    """Train (or load from this node's cache) the original model of a choice, for a setup job run elsewhere.

    Returns ``{"key", "meta", "state", "node_id"}`` (the weights as a CPU state dict, for the driver's own
    checkpoint cache: a cluster node's disk is not the app's), or ``{"error"}`` / ``{"cancelled": True}``.
    """
    from unlearn_core.data import load_dataset
    from unlearn_core.jsonsafe import error_text
    from unlearn_core.sweeps.work import _one_thread
    from unlearn_core.training import default_recipe, get_original

    _one_thread(threads)
    progress = ChannelProgress(channel, key) if channel is not None else None
    cancel = ChannelCancel(channel, key) if channel is not None else None
    try:
        bundle = load_dataset(dataset)
        trained = get_original(bundle, model or None, int(seed), default_recipe(bundle.name), device, progress,
                               cancel)
        return {"key": trained.key, "meta": dict(trained.meta), "node_id": node_id(),
                "state": {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}}
    except Cancelled as error:
        return {"cancelled": True, "error": error_text(error)}
    except Exception as error:
        return {"error": error_text(error)}
    finally:
        if progress is not None:
            progress.flush()


def warm_worker() -> int:
    """Import what a run needs (torch, the pipeline, every method), so a Ray worker's first run does not pay it."""
    import importlib

    from unlearn_core import methods

    importlib.import_module("unlearn_core.pipeline")
    methods.load_all()
    return os.getpid()


def run_task(request: dict, channel=None, key: str = "") -> dict:
    """Prepare, run and evaluate one :func:`run_request` on this node; returns plain data, records nothing.

    Returns ``{"config", "report", "state", "artifacts", "seconds", "timing", "evidence", "node_id", "pid",
    "error", "cancelled"}``: ``error`` is the one line of a method's own failure (which Ray must not retry),
    ``config`` is None when the failure came before the setup was prepared (as :func:`run_and_record` records
    nothing then), ``cancelled`` is true when the driver's cancel stopped it.
    """
    from unlearn_core.evidence import EvidenceRequest
    from unlearn_core.forget import ForgetSpec, index_root
    from unlearn_core.jsonsafe import error_text
    from unlearn_core.methods import get_method
    from unlearn_core.pipeline import build_report, prepare, run_method
    from unlearn_core.record import run_config
    from unlearn_core.sweeps.work import _one_thread

    _one_thread(request.get("threads"))
    progress = ChannelProgress(channel, key) if channel is not None else None
    cancel = ChannelCancel(channel, key) if channel is not None else None
    out = {"config": None, "report": None, "state": None, "artifacts": {}, "seconds": None, "timing": {},
           "evidence": {}, "node_id": node_id(), "pid": os.getpid(), "error": None, "cancelled": False}
    try:
        method_cls = get_method(request["method"])
        resolved = method_cls.resolve_params(request["params"])
        evidence = EvidenceRequest.parse(request["evidence"])
        spec = ForgetSpec.parse(request["forget"], allow_files=False, files_root=index_root())
        setup = prepare(request["dataset"], request["model"], spec, request["seed"], request["device"],
                        progress=progress, cancel=cancel, with_retrain=True)
        extra = {**request["extra_config"], "engine": "ray", "node_id": out["node_id"]}
        out["config"] = run_config(setup, method_cls.name, resolved, request["tag"], extra, evidence)
        if progress is not None:  # the method's phase starts here (UNSC builds its subspaces first)
            progress(ProgressEvent(stage="method", message=f"starting {method_cls.name}"))
        run = run_method(setup, method_cls.name, resolved, progress, cancel, evidence=evidence)
        if progress is not None:
            progress(ProgressEvent(stage="evaluate", message="metrics of the unlearned model"))
        out["report"] = build_report(setup, run, evidence=evidence).to_dict()
        out["state"] = {k: v.detach().cpu() for k, v in run.model.state_dict().items()}
        out.update(artifacts=run.artifacts, seconds=run.seconds, timing=run.timing, evidence=run.evidence,
                   params=run.params, outputs=run.outputs)
    except Cancelled as error:
        out["cancelled"], out["error"] = True, error_text(error)
    except Exception as error:  # a method's own failure: a value, so Ray never retries it
        out["error"] = error_text(error)
    finally:
        if progress is not None:
            progress.flush()
    return out
