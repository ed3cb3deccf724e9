"""What pages write: markdown that user or URL text cannot break out of, error boxes, explainers, notes."""

from __future__ import annotations

import time

import streamlit as st

from unlearn_core.settings import settings


def md(text) -> str:
    """Escape user- or URL-controlled text for any markdown-rendering call (st.markdown, st.error, captions)."""
    from unlearn_app.urlstate import escape_markdown

    return escape_markdown(text)


def code(text) -> str:
    """User-controlled text as a literal inline code span (a backtick can no longer break out of it)."""
    from unlearn_app.urlstate import markdown_code

    return markdown_code(text)


def show_error(error) -> None:
    """An error box whose text cannot turn into a link, an image or other markup."""
    st.error(md(error))


def forget_md(spec) -> str:
    """A forget spec for markdown: a literal code span, or "hand-picked, N samples" instead of an index list."""
    from unlearn_app.urlstate import forget_label

    label = forget_label(spec)
    return code(label) if label == str(spec) else md(label)


def explainer(text: str) -> None:
    with st.expander("What am I looking at?", expanded=False):
        st.markdown(text)


def wait_note() -> None:
    st.caption("Work runs in one background worker: you can switch pages while it runs; nothing is lost on reload.")


def timed(label: str):
    """A tiny context manager for dev timing in the page footer (shown only with UNLEARN_APP_TIMINGS=1)."""
    class _Timer:
        def __enter__(self):
            self.started = time.perf_counter()
            return self

        def __exit__(self, *exc):
            if settings().app_timings:
                st.caption(f"{label}: {time.perf_counter() - self.started:.3f} s")
    return _Timer()
