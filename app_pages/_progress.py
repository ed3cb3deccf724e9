"""A running job's progress as one bar per phase (retrain reference, method, evaluation), each with its time.

One bar for a whole job ran to 93 % while the reference trained, fell back to 16 % when the method started
and sat still during evaluation; a bar per phase says what is happening and how long each part took.
"""

from __future__ import annotations

import time

import streamlit as st

from unlearn_app.urlstate import escape_markdown as md  # job labels carry user text: never markup


def job_progress(snap, ahead: int = 0, eta: float | None = None) -> None:
    """Draw ``snap`` (a :class:`unlearn_app.jobs.JobSnapshot`): a waiting line (its place in the queue and when it
    should be done), or a bar per phase."""
    if not snap.phases:
        st.progress(min(max(snap.fraction, 0.0), 1.0), text=md(snap.describe(ahead, eta)))
        return
    now = time.time()
    st.markdown(f"**{md(snap.label)}**")
    for phase in snap.phases:
        name = snap.phase_label(phase)
        if phase.finished_at is not None:
            st.progress(1.0, text=md(f"✓ {name}: {phase.seconds(now):.1f} s"))
        else:
            detail = snap.describe().split(": ", 1)[-1] if phase is snap.phases[-1] else phase.text
            st.progress(min(max(phase.fraction, 0.0), 1.0), text=md(f"{name}: {detail} ({phase.seconds(now):.0f} s)"))
