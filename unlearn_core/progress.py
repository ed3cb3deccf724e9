"""Progress reporting and cancellation shared by every long-running job.

The core never draws anything: it calls a plain callback with a
:class:`ProgressEvent`. The CLI turns events into a tqdm bar, the app into an
``st.progress``. Cancellation is a ``threading.Event`` checked between steps.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
import sys
from typing import TYPE_CHECKING, Callable, Optional

from unlearn_core.errors import Cancelled, DivergenceError, UnlearnError

if TYPE_CHECKING:
    import torch


class OutOfMemory(UnlearnError):
    """The device ran out of memory; a smaller batch size may fit."""


@dataclass
class ProgressEvent:
    """One progress report.

    ``fraction`` is the share of the current stage done, in [0, 1].
    """

    stage: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: Optional[float] = None
    accuracy: Optional[float] = None
    message: str = ""
    point: Optional[dict] = None  # an unlearning-curve point (Acc_f, FA, Acc_r, loss), when one was recorded

    @property
    def done_steps(self) -> int:
        """Steps of the current stage done: ``(epoch - 1) * steps + step`` when epochs are known, else ``step``."""
        if self.epochs and self.steps:
            return max(0, (self.epoch - 1) * self.steps + self.step)
        return max(0, self.step)

    @property
    def total_steps(self) -> int:
        """Steps the current stage takes in all (``epochs * steps``, or ``steps``); 0 when unknown."""
        if self.epochs and self.steps:
            return self.epochs * self.steps
        return max(0, self.steps)

    @property
    def fraction(self) -> float:
        if self.epochs and self.steps:
            done = (self.epoch - 1) * self.steps + self.step
            return max(0.0, min(1.0, done / (self.epochs * self.steps)))
        if self.steps:
            return max(0.0, min(1.0, self.step / self.steps))
        if self.epochs:
            return max(0.0, min(1.0, self.epoch / self.epochs))
        return 0.0


ProgressFn = Callable[[ProgressEvent], None]


def seconds_left(elapsed: float, done: float, total: float) -> float | None:
    """Time left at the measured cost per unit of work: ``elapsed / done * (total - done)``.

    ``done`` and ``total`` count the same units (optimiser steps of a
    training, runs of a sweep); ``elapsed`` is the time those ``done`` units
    took. ``None`` while nothing is done (no cost measured yet) or when the
    total is unknown; 0 once everything is done.
    """
    if done <= 0 or total <= 0 or not math.isfinite(elapsed) or elapsed < 0:
        return None
    return max(0.0, elapsed / done * (total - done))


def format_seconds(seconds: float | None) -> str:
    """``42s``, ``3m05s``; ``?`` for an unknown or infinite time."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class StepClock:
    """Seconds left in the current stage of a job, from the measured cost of its steps.

    Fed every :class:`ProgressEvent` of a job. The clock of a stage starts at
    its first event that counts steps (so loading data and models before the
    first step is not charged to the steps); after ``min_steps`` more steps
    the estimate is :func:`seconds_left` of the time since that first event,
    the steps done since, and the steps still to do
    (``total_steps - done_steps``). A new stage, a new total, or a step count
    that goes back (a second training in the same stage) restarts the clock.
    Events without a step total (an evaluation, a UMAP fit) give ``None``; an
    event that carries its own ``seconds_left`` (a sweep's ``SweepEvent``) is
    taken as it is.
    """

    def __init__(self, min_steps: int = 3, clock: Callable[[], float] = time.monotonic):
        self.min_steps = max(1, int(min_steps))
        self.clock = clock
        self._key: tuple | None = None
        self._start: tuple[float, int] | None = None
        self._last_done = 0

    def update(self, event: ProgressEvent, now: float | None = None) -> float | None:
        """Account ``event``; returns the seconds left in its stage, or ``None`` while not yet measurable."""
        now = self.clock() if now is None else now
        own = getattr(event, "seconds_left", None)
        if own is not None:  # a sweep measures its own, per run, with the same seconds_left
            return float(own)
        total, done = event.total_steps, event.done_steps
        if total <= 0:
            if event.stage != (self._key or ("",))[0]:
                self._key, self._start = None, None
            return None
        key = (event.stage, total)
        if key != self._key or self._start is None or done < self._last_done:
            self._key, self._start = key, (now, done)
        self._last_done = done
        start_time, start_done = self._start
        if done - start_done < self.min_steps:
            return None
        return seconds_left(now - start_time, done - start_done, total - start_done)
# (model, stage, fields) -> a recorded point or None; see unlearn_core.evidence.CurveRecorder.
Observer = Callable[[object, str, dict], Optional[dict]]


def no_progress(_: ProgressEvent) -> None:
    """A callback that ignores every event."""


class Reporter:
    """Wraps an optional callback and cancel event for one stage of work."""

    def __init__(self, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                 stage: str = "work", observer: Observer | None = None):
        self.progress = progress or no_progress
        self.cancel = cancel
        self.stage = stage
        # Optional: offered the model after each optimiser step (unlearning curves, unlearn_core.evidence).
        self.observer = observer

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"{self.stage} cancelled")

    def __call__(self, **fields) -> None:
        self.check_cancel()
        self.progress(ProgressEvent(stage=self.stage, **fields))

    def child(self, stage: str) -> "Reporter":
        return Reporter(self.progress, self.cancel, stage, self.observer)

    def observe(self, model, **fields) -> None:
        """Offer the model being trained to the observer after an optimiser step; a no-op without one.

        ``fields`` are the ones of the step's progress report (epoch, epochs,
        step, steps, loss). When the observer records a point (a dict), it is
        also sent to the progress callback as an event with that ``point``.
        """
        if self.observer is None:
            return
        point = self.observer(model, self.stage, fields)
        if point is not None:
            self.progress(ProgressEvent(stage=self.stage, point=point, message="curve point", **fields))


def check_finite(loss_value: float, where: str) -> float:
    """Raise :class:`DivergenceError` if a loss is NaN or infinite."""
    if not math.isfinite(loss_value):
        raise DivergenceError(
            f"{where}: loss became {loss_value} (diverged); lower the learning rate and try again")
    return loss_value


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocator failures (torch raises several types for them)."""
    # No torch imported (or another thread still importing it): no torch error to recognise.
    torch_oom = getattr(sys.modules.get("torch"), "OutOfMemoryError", None)
    if torch_oom is not None and isinstance(error, torch_oom):
        return True
    return isinstance(error, RuntimeError) and ("out of memory" in str(error).lower()
                                                or "not enough memory" in str(error).lower())


def release_cached_memory(device: torch.device | str | None) -> None:
    """Give cached blocks back after an out-of-memory error so the next attempt can fit."""
    import torch

    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif kind == "mps" and hasattr(torch, "mps") and hasattr(torch.mps, "empty_cache"):
        torch.mps.empty_cache()


@contextlib.contextmanager
def oom_guard(where: str, batch_size: int, device: torch.device | str | None):
    """Turn an out-of-memory error inside the block into one clear :class:`OutOfMemory`."""
    try:
        yield
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        release_cached_memory(device)
        import torch

        name = torch.device(device).type if device is not None else "device"
        advice = (f"choose a smaller batch size (e.g. {batch_size // 2}) and try again" if batch_size > 1
                  else "even one sample does not fit; use a smaller model or run on the CPU")
        raise OutOfMemory(f"{where}: the {name} ran out of memory at batch size {batch_size}; {advice}") from None
