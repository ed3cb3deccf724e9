"""AppTest: the Tour page runs its comparison in the worker and walks its four screens; presentation mode's flag
comes from the URL and its toggle keeps the choice."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from _apptest import TIMEOUT, run_until, texts  # tests/app

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def subheaders(at) -> list[str]:
    return texts(at.subheader)


def test_tour_runs_and_walks_four_screens(app_env, digits_class3):
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"dataset": "digits", "model": "mlp", "forget": "random:0.1"})
    at.run()
    at.switch_page("app_pages/tour.py").run()
    assert not at.exception, at.exception
    # A forget set that is not one class: the tour takes class 3 and says so.
    assert any("takes `class:3`" in c for c in texts(at.caption))
    start = next(b for b in at.button if b.label == "Start the tour")
    start.click().run()
    run_until(at, lambda a: "What was forgotten" in subheaders(a))
    assert at.session_state["forget"] == "class:3"  # the linked pages show the tour's runs
    assert any("retrained model, which never saw it" in c for c in texts(at.caption))
    for title in ("What else was lost", "Where the samples went", "Hidden or gone?"):
        next(b for b in at.button if b.label == "Next").click().run()
        assert not at.exception, at.exception
        assert title in subheaders(at), subheaders(at)
    assert len(at.get("plotly_chart")) == 1  # the relearn chart


def test_present_flag_and_toggle(app_env):
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"dataset": "digits", "model": "mlp", "forget": "class:5", "present": "1"})
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["present"] is True
    assert any("stSidebar" in h.proto.body for h in at.get("html"))
    toggle = at.toggle(key="w_present")
    assert toggle.value is True
    toggle.set_value(False).run()
    assert at.session_state["present"] is False and at.session_state["forget"] == "class:5"
    assert "present" not in at.query_params
    assert not any("stSidebar" in h.proto.body for h in at.get("html"))

    bad = AppTest.from_file(APP, default_timeout=TIMEOUT)
    bad.query_params.update({"present": "yes"})
    bad.run()
    assert bad.session_state["present"] is False
    assert any("link's present was ignored" in w for w in texts(bad.warning))
