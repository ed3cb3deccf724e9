"""Helpers the AppTest files share: element texts, polling reruns, the original model made ready."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

TIMEOUT = 180


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def run_until(at: AppTest, done, timeout: float = TIMEOUT) -> AppTest:
    """Rerun until ``done(at)``: AppTest does not fire fragment timers, so poll by hand."""
    deadline = time.monotonic() + timeout
    while not done(at):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; errors {texts(at.error)}, successes {texts(at.success)}")
        time.sleep(0.25)
        at.run()
        assert not at.exception, at.exception
    return at


def ensure_original(at: AppTest) -> AppTest:
    """Train the original model when Setup offers it, then wait until the page says it is ready."""
    if any(b.label == "Train the original model" for b in at.button):
        next(b for b in at.button if b.label == "Train the original model").click().run()
    return run_until(at, lambda a: any("is ready" in s for s in texts(a.success)))
