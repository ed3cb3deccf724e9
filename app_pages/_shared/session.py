"""The browser session's state: the shared choice and its address bar, the session token and its cookie,
presentation mode, the sidebar at the end of a run, the page registry and remembered widget values."""

from __future__ import annotations

import streamlit as st

from app_pages._shared import text
from unlearn_core.settings import settings


# Plain session keys (not widget keys): they survive page switches, unlike the widgets that set them.
SHARED_KEYS = ("dataset", "model", "forget", "seed")


def init_state() -> None:
    """Defaults for the shared choice: query params, then environment, then the embedded default.

    Runs before any page body. Query parameters are checked against the
    registries first (a URL is anyone's to write): a bad one is dropped with a
    warning that does not repeat it, so no page ever sees an unknown data set
    (``/results?dataset=nope`` was a traceback), a file path or markup.
    Also picks this browser's session token (see :func:`session_owner`).
    """
    from unlearn_app.urlstate import URL_KEYS, VIEW_KEYS, initial_choice, view_from_query

    if "dataset" not in st.session_state:
        from unlearn_app.urlstate import PRESENT_KEY, present_from_query

        values, warnings = initial_choice({k: st.query_params.get(k) for k in URL_KEYS}, settings())
        view, view_warnings = view_from_query({k: st.query_params.get(k) for k in VIEW_KEYS})
        st.session_state.update(values)
        st.session_state["url_view"] = view  # each page takes its values once (url_view), checked again there
        st.session_state["present"], present_warning = present_from_query(st.query_params.get(PRESENT_KEY))
        st.session_state["url_warnings"] = warnings + view_warnings + ([present_warning] if present_warning else [])
    st.session_state.setdefault("seed", 0)
    st.session_state.setdefault("original", "")  # "" = the trained original; else an upload's SHA-256
    st.session_state.setdefault("seen_finished", set())
    _init_session_token()
    # The page sets its view values again during this run (set_view); until it does, the address bar keeps the
    # last run's (or, on a link's first run, the link's checked ones), so the URL is not rewritten twice per run.
    shown = st.session_state.get("_view") or dict(st.session_state.get("url_view") or {})
    st.session_state["_view"] = {}
    sync_url(shown)  # at once too: a page switch may have cleared the query string, and a page may stop early
    for warning in st.session_state.pop("url_warnings", []):  # once, on the page the link opened
        st.warning(text.md(warning), icon=":material/link_off:")


def browser_token() -> str | None:
    """The session cookie the browser sent when it connected (a reload sends the one set on the earlier visit)."""
    from unlearn_app.urlstate import SESSION_COOKIE

    return st.context.cookies.get(SESSION_COOKIE)


def _init_session_token() -> None:
    """Adopt the browser's session token, or make a new one and have the browser keep it as a cookie.

    A cookie, not a URL parameter: the address bar is what people copy and share, and on a shared server a link
    must never hand its recipient the sender's jobs and runs. The cookie can only be read back on the next
    connection (Streamlit sees the cookies of the opening request), so the writer is sent on every run of a
    session that did not arrive with a valid one: a rerun that replaces the page early cannot lose it.
    """
    from unlearn_app.urlstate import check_session_token, cookie_script, new_session_token

    if "session_token" not in st.session_state:
        token = check_session_token(browser_token())
        st.session_state["session_token"] = token or new_session_token()
        st.session_state["token_from_cookie"] = token is not None
    if not st.session_state["token_from_cookie"]:
        with st.sidebar:
            st.html(cookie_script(st.session_state["session_token"]), unsafe_allow_javascript=True)


def sync_url(view: dict | None = None) -> None:
    """Mirror the shared choice and the page's view (:func:`set_view`; ``view`` instead when given) into the
    address bar, so a reload or a copied link opens the same view.

    Only checked values are written (never the session token), and only when they differ from what the URL
    holds: every write is a message to the browser and a history entry. Any other parameter is dropped.
    """
    from unlearn_app.urlstate import URL_KEYS, url_params

    view = st.session_state.get("_view", {}) if view is None else view
    wanted = url_params({key: st.session_state.get(key) for key in URL_KEYS}, view)
    if st.session_state.get("present"):
        wanted["present"] = "1"
    if {key: st.query_params.get(key) for key in st.query_params} != wanted:
        st.query_params.from_dict(wanted)


def set_view(key: str, value) -> None:
    """What the page shows for a view key (``eps``, ``run``...: :data:`unlearn_app.urlstate.VIEW_KEYS`), for the
    address bar at the end of this run; a fragment's rerun calls :func:`sync_url` itself."""
    st.session_state.setdefault("_view", {})[key] = value


def url_view(key: str):
    """The link's checked value for a view key, handed out once (the page applies it on its first visit)."""
    return (st.session_state.get("url_view") or {}).pop(key, None)


def apply_url_choice(key: str, widget_key: str, allowed, reason: str) -> None:
    """Put the link's checked ``key`` value into ``widget_key`` when the page lists it (``allowed``: on a shared
    server only the session's own runs and sweeps, :class:`~unlearn_app.access.RunView`), else drop it with
    ``reason``; then forget a widget value the page no longer lists."""
    linked = url_view(key)
    if linked is not None:
        if linked in allowed:
            st.session_state[widget_key] = linked
        else:
            drop_url_value(key, reason)
    if st.session_state.get(widget_key) not in allowed:
        st.session_state.pop(widget_key, None)


def drop_url_value(key: str, reason: str) -> None:
    """A link's view value the page cannot use (a run this visitor may not see, a sweep that is not there):
    dropped with a warning that does not repeat it."""
    st.warning(f"The link's {key} was ignored: {reason}.", icon=":material/link_off:")


def presentation() -> bool:
    """Presentation mode (:mod:`unlearn_app.present`): its toggle, and its stylesheet while it is on.

    Off, the toggle sits in the sidebar; on, the sidebar is hidden and the toggle sits at the top right of the
    page, in a ``keep_`` container the stylesheet leaves visible. One widget key in both places, mirrored into
    the plain ``present`` key that the address bar keeps (``?present=1``). Returns whether the mode is on.
    """
    from unlearn_app.present import PRESENT_CSS

    st.session_state["w_present"] = bool(st.session_state.get("present"))

    def flip() -> None:
        st.session_state["present"] = bool(st.session_state["w_present"])

    label, tip = "Presentation mode", ("Hide the sidebar and the controls and enlarge text and charts for a "
                                       "projector (1280 x 720); every choice and run stays as it is. The address "
                                       "bar keeps it as ?present=1.")
    if st.session_state["present"]:
        st.html(f"<style>{PRESENT_CSS}</style>")
        with st.container(key="keep_present_toggle", horizontal=True, horizontal_alignment="right"):
            st.toggle(label, key="w_present", on_change=flip, help=tip)
    else:
        with st.sidebar:
            st.toggle(label, key="w_present", on_change=flip, help=tip)
    return bool(st.session_state["present"])


def finish_run() -> None:
    """End of a script run: the address bar and the sidebar show the choice now in force."""
    sync_url()
    with st.sidebar:
        original = " · uploaded original" if st.session_state.get("original") else ""
        st.caption(f"**Current choice**  \n{text.md(st.session_state['dataset'])} · "
                   f"{text.md(st.session_state['model'] or 'default model')} · seed {int(st.session_state['seed'])}"
                   f" · forget {text.forget_md(st.session_state['forget'])}{original}")
        if st.session_state.get("forget_pending"):
            st.caption(":orange[The Forget set page has no samples picked yet; the forget set above stays in force.]")
        st.caption("The address bar keeps this choice: reload, bookmark or share it. Your jobs come back on reload "
                   "in this browser; a shared link opens the choice, never your jobs or runs.")
        if shared():
            st.caption("Shared server: you see and download only the runs of this browser session.")
        st.radio("Chart downloads (camera button)", list(CHART_FORMATS), horizontal=True, key="w_chart_format",
                 help="What the camera button of every chart saves: a PNG at twice the drawn size, or an SVG that "
                      "scales without loss (for slides). The file is named after the chart, method, data set and "
                      "forget set.")


def stop() -> None:
    """``st.stop()`` that still updates the address bar and the sidebar (nothing can be drawn after a stop)."""
    finish_run()
    st.stop()


def shared() -> bool:
    """``UNLEARN_SHARED``: a server many people open; each session sees only its own runs and uploads."""
    return settings().shared


def upload_owner() -> str:
    """Whose uploads these are: the browser session on a shared server; everyone on a personal one."""
    return session_owner() if shared() else ""


CHART_FORMATS = {"PNG 2x": "png", "SVG": "svg"}


PAGES: dict = {}


def page(name: str):
    return PAGES[name]


def session_owner() -> str:
    """This browser's session token: jobs (and on a shared server runs and uploads) belong to it.

    Streamlit's own session id changes on every reload, which emptied the jobs panel; the token comes back with
    the browser's cookie (``init_state``). Outside a script run (never in the app) it is "local".
    """
    token = st.session_state.get("session_token") if _in_script_run() else None
    return token or "local"


def _in_script_run() -> bool:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    return get_script_run_ctx() is not None


def keep_widgets(name: str, keys) -> None:
    """Remember widget values in a plain key: Streamlit drops a widget's key when a page without it runs."""
    kept = st.session_state.setdefault(f"kept_{name}", {})
    kept.update({key: st.session_state[key] for key in keys if key in st.session_state})


def restore_widgets(name: str) -> None:
    """Put remembered widget values back before the page draws its widgets again."""
    for key, value in st.session_state.get(f"kept_{name}", {}).items():
        if key not in st.session_state:
            st.session_state[key] = value


VIEWED_RUN = "viewed_run"  # session key: the run the user looked at last (Results' detail, the Embeddings map)


def note_viewed_run(run_id) -> None:
    """Remember ``run_id`` as the run the user looked at last."""
    if run_id is not None:
        st.session_state[VIEWED_RUN] = int(run_id)


def viewed_run(run_ids) -> int | None:
    """The run the user looked at last if it is among ``run_ids``, else None."""
    viewed = st.session_state.get(VIEWED_RUN)
    return viewed if viewed in list(run_ids) else None
