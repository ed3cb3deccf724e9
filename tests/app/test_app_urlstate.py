"""Issue 14, part 2 (AppTest, digits + mlp): the user's place survives a reload.

The choice lives in the URL, the jobs belong to a session token that comes back with the browser's cookie (never
with a link), hand-picked forget sets show as counts, the Unlearn page keeps its choices across page visits, and
the jobs panel pages through every job of the session. A "reload" here is a new AppTest that gets the old one's
query parameters and, where a browser would send it, its cookie (AppTest cannot seed cookies, so
``_shared.session.browser_token`` is patched); tests/e2e/test_reload.py does the same in a real browser.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from _apptest import ensure_original, texts  # tests/app

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
TIMEOUT = 180
HAND_PICKED = list(range(0, 400, 10))  # 40 training indices of digits




def everything(at: AppTest) -> str:
    """Every text the page and its sidebar show, markdown escapes removed."""
    shown = (texts(at.markdown) + texts(at.caption) + texts(at.error) + texts(at.warning) + texts(at.info)
             + texts(at.success) + texts(at.sidebar.caption) + [p.proto.text for p in at.get("progress")])
    return re.sub(r"\\(.)", r"\1", " ".join(shown)).replace("`", "")




def open_app(page: str | None = None, query: dict | None = None, cookie: str | None = None,
             monkeypatch=None) -> AppTest:
    """A new browser session: the URL's query parameters and the cookie the browser would send."""
    from app_pages import _shared

    if monkeypatch is not None:
        monkeypatch.setattr(_shared.session, "browser_token", lambda: cookie)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at




def cookie_writer(at: AppTest) -> str:
    return " ".join(h.proto.body for h in at.get("html") if "document.cookie" in h.proto.body)


# -- pure helpers --------------------------------------------------------------------------------------------------
def test_session_tokens_are_random_and_checked_when_read_back():
    from unlearn_app.urlstate import check_session_token, cookie_script, new_session_token

    tokens = {new_session_token() for _ in range(200)}
    assert len(tokens) == 200 and all(check_session_token(t) == t for t in tokens)
    for bad in (None, "", "a" * 31, "a" * 33, "a" * 31 + "/", "a" * 31 + "'", "../../../../etc/passwd/xxxxxx",
                "<script>alert(1)</script>xxxxxxx", 12345, "a" * 31 + "\u0663"):
        assert check_session_token(bad) is None
    script = cookie_script(next(iter(tokens)))
    assert "SameSite=Strict" in script and "Max-Age" not in script  # ends with the browser session
    with pytest.raises(ValueError):
        cookie_script("x'; alert(1); '")


def test_forget_labels_never_list_indices():
    from unlearn_app.urlstate import forget_label, url_params

    assert forget_label("indices:3,3,5") == "hand-picked, 2 samples"
    assert forget_label("indices:7") == "hand-picked, 1 sample"
    assert forget_label("indices:" + ",".join(map(str, range(2000)))) == "hand-picked, 2,000 samples"
    assert forget_label("indices:picked.txt") == "hand-picked, from a file"
    assert forget_label("class:3") == "class:3" and forget_label("random:0.1") == "random:0.1"
    params = url_params({"dataset": "digits", "model": "mlp", "forget": "class:3", "seed": 0,
                         "session_token": "x" * 32})
    assert params == {"dataset": "digits", "model": "mlp", "forget": "class:3", "seed": "0"}
    huge = url_params({"dataset": "digits", "forget": "indices:" + ",".join(map(str, range(5000)))})
    assert "forget" not in huge  # too long for a link: the rest of the choice still travels


def test_seeds_from_the_url_are_checked():
    from unlearn_app.urlstate import choice_from_query

    defaults = {"dataset": "mnist5k", "model": "", "forget": "class:3", "seed": 0}
    assert choice_from_query({"seed": "7"}, defaults)[0]["seed"] == 7
    for bad in ("-1", "1e3", "\u0663", "1_0", "4294967296", "99999999999999999999", "7](https://evil.example)"):
        values, warnings = choice_from_query({"seed": bad}, defaults)
        assert values["seed"] == 0 and len(warnings) == 1 and "evil" not in warnings[0]


# -- the choice in the URL -----------------------------------------------------------------------------------------
def test_the_url_keeps_the_choice_and_a_reload_opens_it(app_env, monkeypatch):
    at = ensure_original(open_app(monkeypatch=monkeypatch))
    assert dict(at.query_params) == {"dataset": "digits", "model": "mlp", "forget": "class:3", "seed": "0"}
    at.switch_page("app_pages/forget.py").run()
    at.multiselect(key="w_forget_classes").set_value(["5", "7"]).run()
    assert not at.exception, at.exception
    assert at.query_params["forget"] == "class:5,7"

    # The page switch does not lose it, and a reload (a new session with the same URL) opens the same choice.
    at.switch_page("app_pages/unlearn.py").run()
    assert at.query_params["forget"] == "class:5,7"
    again = open_app("forget", query=dict(at.query_params), monkeypatch=monkeypatch)
    assert again.session_state["forget"] == "class:5,7"
    assert again.multiselect(key="w_forget_classes").value == ["5", "7"]
    assert "forget class:5,7" in everything(again)


def test_a_seed_from_the_url_is_used_and_a_bad_one_ignored(app_env, monkeypatch):
    at = open_app(query={"dataset": "digits", "seed": "7"}, monkeypatch=monkeypatch)
    assert at.session_state["seed"] == 7 and at.number_input(key="w_seed").value == 7
    assert at.query_params["seed"] == "7"
    bad = open_app(query={"dataset": "digits", "seed": "-3](https://evil.example)"}, monkeypatch=monkeypatch)
    assert bad.session_state["seed"] == 0
    assert any("seed was ignored" in w for w in texts(bad.warning))
    assert "evil" not in everything(bad)


# -- the session's jobs after a reload -----------------------------------------------------------------------------
@pytest.fixture()
def held_runs(monkeypatch):
    """Runs that stay running until the test lets them go (the worker's real path, minus the training)."""
    from unlearn_core import record

    gate = threading.Event()

    def held(setup, method, params=None, progress=None, cancel=None, **kwargs):
        while not gate.wait(0.05):
            if cancel is not None and cancel.is_set():
                from unlearn_core.errors import Cancelled

                raise Cancelled("cancelled")
        return None

    monkeypatch.setattr(record, "run_and_record", held)
    # The provider would train the retrained reference first; the original is enough to hold a run.
    from app_pages import _shared

    real_setups = _shared.resources.setups
    # Where it is defined, which the queued run's provider calls; and the pages' name for it.
    for where in (_shared.resources, _shared):
        monkeypatch.setattr(where, "setups", lambda: _Setups(real_setups()))
    yield gate
    gate.set()


class _Setups:
    def __init__(self, cache):
        self._cache = cache

    def get(self, choice, progress=None, cancel=None, with_retrain=True):
        return self._cache.get(choice, progress, cancel, with_retrain=False)

    def __getattr__(self, name):
        return getattr(self._cache, name)


def test_a_reload_shows_the_sessions_jobs_and_a_link_does_not(app_env, monkeypatch, held_runs):
    query = {"dataset": "digits", "model": "mlp", "forget": "indices:" + ",".join(map(str, HAND_PICKED))}
    first = ensure_original(open_app(query=query, monkeypatch=monkeypatch))
    token = first.session_state["session_token"]
    assert token in cookie_writer(first)  # a browser without the cookie is told to keep it
    first.switch_page("app_pages/unlearn.py").run()
    first.multiselect(key="w_methods").set_value(["finetune"]).run()
    next(b for b in first.button if b.label.startswith("Run ")).click().run()
    assert not first.exception, first.exception
    assert "session_token" not in first.query_params and token not in str(dict(first.query_params))

    # Reload: the same URL, and the browser sends the cookie back.
    reloaded = open_app("unlearn", query=dict(first.query_params), cookie=token, monkeypatch=monkeypatch)
    assert reloaded.session_state["session_token"] == token
    assert not cookie_writer(reloaded)  # it came with the cookie: nothing to write
    shown = everything(reloaded)
    assert "finetune on digits/hand-picked, 40 samples" in shown
    assert "Cancel" in [b.label for b in reloaded.button]
    assert "0,10,20" not in shown  # the index list is never shown, only the count

    # The same link opened by someone else (no cookie): the choice, but not the jobs.
    other = open_app("unlearn", query=dict(first.query_params), cookie=None, monkeypatch=monkeypatch)
    assert other.session_state["session_token"] != token
    assert other.session_state["forget"] == query["forget"]
    assert "finetune on digits" not in everything(other)
    assert "Cancel" not in [b.label for b in other.button]

    # A token pasted into the URL is not adopted (the URL is anyone's to write), and is dropped from it.
    pasted = open_app("unlearn", query={**dict(first.query_params), "session_token": token, "owner": token},
                      monkeypatch=monkeypatch)
    assert pasted.session_state["session_token"] != token
    assert "Cancel" not in [b.label for b in pasted.button]
    assert set(pasted.query_params) == {"dataset", "model", "forget", "seed"}


@pytest.mark.parametrize("cookie", ["a" * 31, "../../../etc/passwd/aaaaaaaaaaa", "<img src=x>aaaaaaaaaaaaaaaaaaaaaaa"])
def test_a_malformed_cookie_starts_a_new_session(app_env, monkeypatch, cookie):
    from unlearn_app.urlstate import check_session_token

    at = open_app(cookie=cookie, monkeypatch=monkeypatch)
    token = at.session_state["session_token"]
    assert token != cookie and check_session_token(token) == token
    assert token in cookie_writer(at)


def test_shared_server_a_link_never_hands_over_the_senders_runs(app_env, monkeypatch, digits_class3):
    """On a shared server runs belong to the token: the sender sees them after a reload, the link's recipient not."""
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore

    monkeypatch.setenv("UNLEARN_SHARED", "1")
    sender = open_app(monkeypatch=monkeypatch)
    token = sender.session_state["session_token"]
    run_and_record(digits_class3, "finetune", {"epochs": 1}, store=RunStore(app_env / "runs.sqlite"),
                   extra_config={"owner": token})
    link = dict(sender.query_params)
    assert set(link) == {"dataset", "model", "forget", "seed"}

    again = open_app("results", query=link, cookie=token, monkeypatch=monkeypatch)
    assert any("1 finished run(s)" in m for m in texts(again.markdown))
    recipient = open_app("results", query=link, cookie=None, monkeypatch=monkeypatch)
    assert any("No finished runs" in i for i in texts(recipient.info))
    assert not recipient.get("download_button")


def test_shared_server_a_linked_run_the_visitor_may_not_see_is_dropped(app_env, monkeypatch, digits_class3):
    """``?run=`` reopens the sender's chosen run for the sender; for anyone else it is dropped with a warning (the
    run store's session view denies by default), and the page shows the visitor's own run."""
    from unlearn_core.record import run_and_record
    from unlearn_core.store import RunStore

    monkeypatch.setenv("UNLEARN_SHARED", "1")
    store = RunStore(app_env / "runs.sqlite")
    sender = open_app(monkeypatch=monkeypatch)
    token = sender.session_state["session_token"]
    first, second = (run_and_record(digits_class3, "finetune", {"epochs": e}, store=store,
                                    extra_config={"owner": token})[0] for e in (1, 2))
    link = {**dict(sender.query_params), "run": str(first)}

    again = open_app("results", query=link, cookie=token, monkeypatch=monkeypatch)
    assert again.selectbox(key="w_results_run").value == first  # not the newest (#second): the link's choice
    assert again.query_params["run"] == str(first)
    assert not any("ignored" in w for w in texts(again.warning))

    visitor = open_app(monkeypatch=monkeypatch)
    own = run_and_record(digits_class3, "finetune", {"epochs": 1}, store=store,
                         extra_config={"owner": visitor.session_state["session_token"]})[0]
    theirs = open_app("results", query=link, cookie=visitor.session_state["session_token"], monkeypatch=monkeypatch)
    assert any("The link's run was ignored: it is not a finished run you can see" in w for w in texts(theirs.warning))
    assert theirs.selectbox(key="w_results_run").value == own
    assert theirs.query_params["run"] == str(own) and second != own


# -- hand-picked forget sets ---------------------------------------------------------------------------------------
def test_hand_picked_sets_show_as_a_count_everywhere(app_env, monkeypatch):
    query = {"dataset": "digits", "model": "mlp", "forget": "indices:" + ",".join(map(str, HAND_PICKED))}
    at = ensure_original(open_app(query=query, monkeypatch=monkeypatch))
    for page in ("forget", "unlearn", "results"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
        shown = everything(at)
        assert "hand-picked, 40 samples" in shown, (page, shown)
        assert "indices:" not in shown and "0,10,20" not in shown, page
    at.switch_page("app_pages/forget.py").run()
    assert at.radio(key="w_forget_mode").value == "indices"  # the reload brought the picked samples back
    assert any("40 sample(s) picked" in c for c in texts(at.caption))


def test_choosing_hand_picked_gives_guidance_and_says_what_stays(app_env, monkeypatch):
    at = ensure_original(open_app(monkeypatch=monkeypatch))
    at.switch_page("app_pages/forget.py").run()
    at.radio(key="w_forget_mode").set_value("indices").run()
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    assert any("Pick the samples to forget" in i for i in texts(at.info))
    assert any("stays class:3" in w.replace("`", "") for w in texts(at.warning))
    assert any("no samples picked yet" in c for c in texts(at.sidebar.caption))
    at.switch_page("app_pages/unlearn.py").run()
    assert any("none picked yet" in w for w in texts(at.warning))  # runs started here say which set they use
    at.switch_page("app_pages/forget.py").run()
    assert at.radio(key="w_forget_mode").value == "indices"  # back where the user left it
    at.text_input(key="w_forget_typed").set_value("5, 9").run()
    assert at.session_state["forget"] == "indices:5,9"
    assert any("hand-picked, 2 samples" in s for s in texts(at.success))
    assert not any("no samples picked yet" in c for c in texts(at.sidebar.caption))


# -- the Unlearn page keeps its choices, the panel lists every job -------------------------------------------------
def test_method_choice_and_parameters_survive_page_visits(app_env, monkeypatch):
    monkeypatch.setenv("UNLEARN_MAX_JOBS_PER_SESSION", "1")  # the Run click is refused: nothing trains
    at = ensure_original(open_app(monkeypatch=monkeypatch))
    at.switch_page("app_pages/unlearn.py").run()
    at.multiselect(key="w_methods").set_value(["finetune", "ga"]).run()
    at.text_input(key="p_ga_lr").input("0.0005")
    at.text_input(key="p_finetune_epochs").input("3")
    at.selectbox(key="p_ga_optimizer").set_value("adam")
    next(b for b in at.button if b.label.startswith("Run ")).click().run()
    assert any("may have 1 runs queued" in e for e in texts(at.error))
    for page in ("setup", "results", "forget", "unlearn"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    assert at.multiselect(key="w_methods").value == ["finetune", "ga"]
    assert float(at.text_input(key="p_ga_lr").value) == pytest.approx(0.0005)
    assert at.text_input(key="p_finetune_epochs").value == "3"
    assert at.selectbox(key="p_ga_optimizer").value == "adam"
    assert at.text_input(key="p_ga_epochs").value == "5"  # untouched ones keep their declared default


def test_the_jobs_panel_pages_through_every_job(app_env, monkeypatch):
    from app_pages import _shared
    from unlearn_app.urlstate import new_session_token

    at = ensure_original(open_app(monkeypatch=monkeypatch))
    token = new_session_token()
    runner = _shared._runner(str(app_env))
    for i in range(1, 20):  # one after another: the per-session queue limit (8) applies to unfinished jobs
        runner.wait(runner.submit(f"job {i:02d}", lambda progress, cancel: None, kind="run", meta={"owner": token}),
                    timeout=30)
    runner.wait(runner.submit("someone else's job", lambda progress, cancel: None, kind="run",
                              meta={"owner": "x" * 32}), timeout=30)

    at = open_app("unlearn", cookie=token, monkeypatch=monkeypatch)
    shown = [s for s in texts(at.success) if s.startswith("job ")]
    assert [s.split(":")[0] for s in shown] == [f"job {i:02d}" for i in range(19, 11, -1)]  # newest first
    pager = at.selectbox(key="jobs_page_run")
    assert pager.options == [
        "1-8 of 19 finished", "9-16 of 19 finished", "17-19 of 19 finished"]
    pager.set_value(3).run()
    shown = [s.split(":")[0] for s in texts(at.success) if s.startswith("job ")]
    assert shown == ["job 03", "job 02", "job 01"]
    assert "someone else" not in everything(at)


# -- part 3: an uploaded text file ---------------------------------------------------------------------------------
def test_a_text_file_upload_gets_a_plain_message(app_env, monkeypatch):
    at = ensure_original(open_app(monkeypatch=monkeypatch))
    at.file_uploader(key="w_upload").set_value(("notes.pt", b"epoch,loss\n1,0.31\n2,0.12\n", "text/plain")).run()
    assert not at.exception, at.exception
    errors = " ".join(texts(at.error))
    assert "this is a text file" in errors and "KeyError" not in errors


def test_a_busy_session_does_not_push_other_sessions_jobs_out():
    """The worker keeps ``history`` finished jobs per owner (was: 200 for the whole server), and a total bound."""
    from unlearn_app.jobs import JobRunner

    runner = JobRunner(history=5, history_total=12)
    try:
        def finish(owner, label):
            return runner.wait(runner.submit(label, lambda progress, cancel: None, meta={"owner": owner}), 10)

        finish("quiet", "quiet 1")
        finish("quiet", "quiet 2")
        for i in range(9):
            finish("busy", f"busy {i}")
        assert [j.snapshot().label for j in runner.jobs(owner="quiet")] == ["quiet 1", "quiet 2"]
        assert [j.snapshot().label for j in runner.jobs(owner="busy")] == [f"busy {i}" for i in range(4, 9)]
        for owner in "abc":
            for i in range(3):
                finish(owner, f"{owner} {i}")
        assert len(runner.jobs()) == 12  # the server-wide bound: the oldest let go first
        assert [j.snapshot().label for j in runner.jobs()][:3] == ["busy 6", "busy 7", "busy 8"]
    finally:
        runner.shutdown()
