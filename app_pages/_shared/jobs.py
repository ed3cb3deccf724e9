"""The jobs panel (live progress, cancel, outcomes) and queueing a batch of runs."""

from __future__ import annotations

import streamlit as st

from app_pages._progress import job_progress
from app_pages._shared import resources, runs, session, text


POLL_SECONDS = 0.5


JOBS_PER_PAGE = 8


def _job_row(job, snap) -> None:
    """One job: a progress bar with Cancel while it runs, then its outcome."""
    from unlearn_app.jobs import DONE, FAILED

    if not snap.finished:
        cols = st.columns([5, 1])
        with cols[0]:
            job_progress(snap, *resources.runner().wait_estimate(job))  # one bar per phase, each with its time
        if cols[1].button("Cancel", key=f"cancel_{snap.job_id}", icon=":material/stop_circle:"):
            job.cancel()
            st.toast(f"Cancelling {snap.label} ...")
    elif snap.status == DONE:
        st.success(text.md(snap.describe() + (f" (run #{snap.run_id})" if snap.run_id else "")),
                   icon=":material/check_circle:")
    elif snap.status == FAILED:
        st.error(text.md(f"{snap.label} failed: {snap.error}"))
    else:
        st.warning(text.md(snap.describe()), icon=":material/cancel:")


def jobs_panel(kind: str | None = None, title: str = "Jobs") -> None:
    """Live progress of this session's jobs with cancel buttons; reruns the page when a job ends.

    Every job of the session is listed: the running and queued ones always (the queue limit keeps them few),
    the finished ones newest first, a page of ``JOBS_PER_PAGE`` at a time (the panel used to show the last 8 and
    silently hide the rest).
    """
    owner = session.session_owner()
    active = resources.runner().active(kind, owner)

    @st.fragment(run_every=POLL_SECONDS if active else None)
    def panel():
        jobs = resources.runner().jobs(kind, owner)
        if not jobs:
            return
        st.markdown(f"**{title}**")
        mine = resources.runner().active(owner=owner)
        others = len(resources.runner().active()) - len(mine)
        if mine and others > 0:
            st.caption(f"{others} job(s) of other sessions share the worker; yours run in turn.")
        snaps = {job.job_id: job.snapshot() for job in jobs}
        unfinished = [job for job in reversed(jobs) if not snaps[job.job_id].finished]
        finished = [job for job in reversed(jobs) if snaps[job.job_id].finished]
        for job in unfinished:
            _job_row(job, snaps[job.job_id])
        if finished:
            pages = -(-len(finished) // JOBS_PER_PAGE)
            page_no = 1
            if pages > 1:
                def span(p: int) -> str:
                    last = min(p * JOBS_PER_PAGE, len(finished))
                    return f"{(p - 1) * JOBS_PER_PAGE + 1}-{last} of {len(finished)} finished"

                page_no = st.selectbox("Finished jobs, newest first", range(1, pages + 1), format_func=span,
                                       key=f"jobs_page_{kind or 'all'}")
            for job in finished[(page_no - 1) * JOBS_PER_PAGE:page_no * JOBS_PER_PAGE]:
                _job_row(job, snaps[job.job_id])
        # Rerun the whole page once when a job that was running as the page drew has ended, so its results show.
        seen = st.session_state.setdefault("seen_finished", set())
        ended = {job.job_id for job in finished} & {job.job_id for job in active} - seen
        seen.update(ended)
        if ended:
            st.rerun(scope="app")

    panel()


def queue_runs(items: list, evidence=()) -> int:
    """Queue ``items`` (``(choice, method, resolved params)``) in the worker, all or none; returns how many.

    Checked as one batch first (:meth:`unlearn_app.jobs.JobRunner.check`): the session's limits, counting the
    original and retrained models each setting still has to train, and no run identical to one of the session's
    queued or running runs (:func:`unlearn_app.jobs.run_fingerprint`). Raises ``UnlearnError`` with one line.
    """
    from unlearn_app.jobs import run_fingerprint
    from unlearn_app.urlstate import forget_label
    from unlearn_core.cost import run_cost
    from unlearn_core.forget import ForgetSpec, index_root
    from unlearn_core.sweeps.single import run_request

    trainings = {}
    for request, _, _ in items:
        if request.key() not in trainings:
            # What the batch trains: its runs, and the original and retrained model while they are not cached.
            spec = ForgetSpec.parse(request.forget, allow_files=False, files_root=index_root())
            models = run_cost(request.dataset, request.model, spec, request.seed, method_runs=0)
            trainings[request.key()] = models.references if request.original else models.trainings
    fingerprints = [run_fingerprint(request.dataset, request.model, request.forget, request.seed, method, params,
                                    request.original) for request, method, params in items]
    # All or nothing: a half-queued batch would leave the user guessing which runs run. A run identical to one
    # still queued or running (a double click, a second submission) is refused.
    resources.runner().check(session.session_owner(), len(items) + sum(trainings.values()), jobs=len(items),
                   fingerprints=tuple(fingerprints))
    maps = runs.run_maps_hook()  # each run's map for Embeddings, computed in its job
    for (request, method, params), fingerprint in zip(items, fingerprints):
        def provider(progress, cancel, request=request):
            return resources.setups().get(request, progress, cancel, with_retrain=True)

        resources.runner().submit_run(
            provider, method, params, store=resources.store(),
            label=f"{method} on {request.dataset}/{forget_label(request.forget)}"
                  + (f" · seed {request.seed}" if request.seed else ""),
            meta={"forget": request.forget, "dataset": request.dataset, "owner": session.session_owner(),
                  "fingerprint": fingerprint, "trainings": 1 + trainings.pop(request.key(), 0)},
            # Runs of an uploaded original are shown only next to that upload, never as the trained one's.
            extra_config={"original_upload": request.original} if request.original else None,
            evidence=",".join(evidence or ()) or None,
            # The same choice as plain data, for an engine that runs it elsewhere (UNLEARN_ENGINE=ray); an
            # uploaded original lives in this process only, so its runs execute here.
            request=None if request.original else run_request(request.dataset, request.model, request.forget,
                                                              request.seed, method, device=request.device),
            after=maps)
    runs.warm_in_background()  # umap loads while the runs train, so the map is quick later
    return len(items)
