"""What a background job is and what a page shows of it: its states, its phases (original model, retrain
reference, method, evaluation, map) with their progress and times, the :class:`JobSnapshot` a UI polls and the
thread-safe :class:`Job` that publishes it. Nothing here runs or queues a job (:mod:`unlearn_app.jobs.runner`).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from unlearn_core.progress import ProgressEvent, StepClock

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

JobFn = Callable[[Callable[[ProgressEvent], None], threading.Event], Any]

# A job's progress stages grouped into phases a person can tell apart: the first run of a forget set trains
# the retrained reference (minutes) before the method (seconds), then evaluates. Any other stage is the method.
PHASE_OF_STAGE = {"preparing": "preparing", "train original": "original model", "retrain": "retrain reference",
                  "evaluate": "evaluation", "umap": "map", "map": "map"}


def phase_of(stage: str) -> str:
    return PHASE_OF_STAGE.get(stage, "method")


@dataclass
class Phase:
    """One phase of a job, with its own progress and times (a finished phase has ``finished_at``)."""

    name: str
    started_at: float
    finished_at: float | None = None
    fraction: float = 0.0
    text: str = ""

    def seconds(self, now: float | None = None) -> float:
        return (self.finished_at or now or time.time()) - self.started_at


def about_left(seconds: float) -> str:
    """``about 40 s left`` (rounded to 5 s above 20 s: the estimate is not finer), ``about 4 min 30 s left``."""
    seconds = max(0, int(round(seconds)))
    if seconds > 20:
        seconds = 5 * round(seconds / 5)
    if seconds < 120:
        return f"about {seconds} s left"
    return f"about {seconds // 60} min {seconds % 60} s left" if seconds % 60 else f"about {seconds // 60} min left"


@dataclass
class JobSnapshot:
    """What a UI shows about a job: status, the latest progress event, the outcome."""

    job_id: int
    label: str
    kind: str
    status: str = QUEUED
    stage: str = ""
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float | None = None
    fraction: float = 0.0
    message: str = ""
    error: str = ""
    run_id: int | None = None
    meta: dict = field(default_factory=dict)
    phases: list = field(default_factory=list)
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    # Seconds left in the current stage at its measured cost per step (unlearn_core.progress.StepClock); None
    # until a few steps are measured, and for stages without a known number of steps.
    seconds_left: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def describe(self, ahead: int = 0, eta: float | None = None) -> str:
        """One line such as ``unsc: fine-tune epoch 2/5, loss 0.3121``; ``ahead`` counts jobs queued before it,
        ``eta`` the seconds it is expected to wait and run (:meth:`JobRunner.wait_estimate`)."""
        if self.status == QUEUED:
            waits = [f"{ahead} job(s) ahead"] if ahead else []
            if eta is not None:
                waits.append(f"done in about {_duration(eta)}")
            return f"{self.label}: waiting for the worker" + (f" ({', '.join(waits)})" if waits else "")
        if self.status == RUNNING:
            parts = [self.stage or "working"]
            if self.epochs:
                parts.append(f"epoch {self.epoch}/{self.epochs}")
            elif self.steps:
                parts.append(f"step {self.step}/{self.steps}")
            if self.loss is not None:
                parts.append(f"loss {self.loss:.4f}")
            if self.message:
                parts.append(self.message)
            if self.seconds_left is not None and " left" not in self.message:  # a sweep's message states its own
                parts.append(about_left(self.seconds_left))
            return f"{self.label}: " + ", ".join(parts)
        if self.status == DONE:
            took = (self.finished_at or 0) - (self.started_at or 0)
            split = ""
            shown = [p for p in self.phases if p.seconds(self.finished_at) >= 0.05]
            if len(shown) > 1:  # "done in 241 s" alone hid that 228 s of it were the retrained reference
                split = " (" + ", ".join(f"{self.phase_label(p)} {p.seconds(self.finished_at):.1f} s"
                                         for p in shown) + ")"
            return f"{self.label}: done in {took:.1f} s{split}"
        return f"{self.label}: {self.status}" + (f" ({self.error})" if self.error else "")

    def phase_label(self, phase: Phase) -> str:
        """A phase's name for people: the method phase is named after the method."""
        return (self.meta.get("method") or "method") if phase.name == "method" else phase.name


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


class Job:
    """A submitted job: its cancel event, its future and a thread-safe snapshot."""

    def __init__(self, job_id: int, label: str, kind: str, meta: dict | None = None):
        self.cancel_event = threading.Event()
        self.future: Future | None = None
        self.result: Any = None
        self._lock = threading.Lock()
        self._state = JobSnapshot(job_id, label, kind, meta=dict(meta or {}))
        self._clock = StepClock()

    @property
    def job_id(self) -> int:
        return self._state.job_id

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return replace(self._state, meta=dict(self._state.meta),
                           phases=[replace(p) for p in self._state.phases])

    def update(self, **fields) -> None:
        with self._lock:
            for key, value in fields.items():
                setattr(self._state, key, value)

    def on_progress(self, event: ProgressEvent) -> None:
        """The progress callback handed to the core; it also keeps one :class:`Phase` per phase of the job."""
        now = time.time()
        with self._lock:
            phases = self._state.phases
            name = phase_of(event.stage)
            if not phases or phases[-1].name != name:
                if phases and phases[-1].finished_at is None:
                    phases[-1].finished_at, phases[-1].fraction = now, 1.0
                phases.append(Phase(name, now))
            phases[-1].fraction = event.fraction
            phases[-1].text = event.stage + (f": {event.message}" if event.message else "")
            left = self._clock.update(event)
        self.update(stage=event.stage, epoch=event.epoch, epochs=event.epochs, step=event.step, steps=event.steps,
                    loss=event.loss, fraction=event.fraction, message=event.message, seconds_left=left)

    def close_phase(self, done: bool) -> None:
        with self._lock:
            if self._state.phases and self._state.phases[-1].finished_at is None:
                self._state.phases[-1].finished_at = time.time()
                if done:
                    self._state.phases[-1].fraction = 1.0

    def cancel(self) -> None:
        self.cancel_event.set()
        if self.future is not None and self.future.cancel():
            self.update(status=CANCELLED, error="cancelled before it started", finished_at=time.time())
