"""What a browser may send and keep: URL parameters, the session cookie, and markdown-safe text.

Every value a link or a browser controls passes through here before a page
uses it: the shared choice in the query string is checked against the
registries (:func:`choice_from_query`), the session token in the cookie has
one exact shape (:func:`check_session_token`), and any user- or URL-controlled
string shown as markdown is escaped (:func:`escape_markdown`,
:func:`markdown_code`).
"""

from __future__ import annotations

import re

from unlearn_core.errors import ForgetSpecError, ParameterError, UnlearnError

# What can make markup in Streamlit's markdown: emphasis, code, links and images ([ ] !), autolinks (< >), HTML,
# tables, strikethrough, math ($) and colour directives (":red[...]" needs the "[").
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$!{}])")
# GFM turns bare "http://..." and "www...." into live links: a backslash inside each breaks the pattern.
_MD_AUTOLINK = re.compile(r"(?i)(://|www\.)")
# An image-folder name from a URL: plain relative names only (the loader keeps it inside UNLEARN_IMAGE_ROOT).
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _./-]{0,199}")
# Class and fine-class names as the registries spell them (cifar100: "aquarium_fish", "maple_tree").
_SPEC_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}")


def escape_markdown(text) -> str:
    """``text`` with every character that makes markup in Streamlit's markdown escaped.

    For anything a user or a URL controls that ends up in ``st.markdown``,
    ``st.error`` and friends: a ``[text](url)`` link or ``![](url)`` beacon
    becomes plain text. Newlines become spaces so a value stays on its line.
    """
    flat = " ".join(str(text).split())
    escaped = _MD_SPECIAL.sub(r"\\\1", flat)
    escaped = _MD_AUTOLINK.sub(lambda m: ":\\/\\/" if m.group(1) == "://" else m.group(1)[:3] + "\\.", escaped)
    # A leading list, heading-underline or quote marker stays text.
    escaped = re.sub(r"^(\d+)([.)])", r"\1\\\2", escaped)
    if re.match(r"[-+=>]", escaped):
        escaped = "\\" + escaped
    return escaped


def markdown_code(text) -> str:
    """``text`` as an inline code span: shown literally (no links, images or colour directives inside one);
    backticks, the only way out of a span, become quotes."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def check_dataset_name(name: str) -> str:
    """A registered data set or ``imagefolder:<plain relative name>``; raises ``DatasetError`` otherwise."""
    from unlearn_core.data import DATASETS, IMAGEFOLDER_PREFIX
    from unlearn_core.errors import DatasetError

    name = str(name).strip()
    if name in DATASETS:
        return name
    if name.startswith(IMAGEFOLDER_PREFIX) and _FOLDER_NAME.fullmatch(name[len(IMAGEFOLDER_PREFIX):]) \
            and ".." not in name:
        return name
    raise DatasetError(f"unknown data set (choose one of {', '.join(DATASETS)}, or imagefolder:<folder>)")


def check_model_name(name: str) -> str:
    from unlearn_core.errors import ModelError
    from unlearn_core.models import MODELS

    if name not in MODELS:
        raise ModelError(f"unknown model (choose one of {', '.join(MODELS)})")
    return name


def check_forget_text(text: str) -> str:
    """A forget spec a browser may send, in canonical form: inline values only, no files, plain names."""
    from unlearn_core.forget import ForgetSpec, index_root

    spec = ForgetSpec.parse(str(text), allow_files=False, files_root=index_root())
    if spec.kind in ("class", "subclass") and not all(_SPEC_VALUE.fullmatch(v) for v in spec.values):
        raise ForgetSpecError("class names may hold only letters, digits, spaces, '_', '.' and '-'")
    return str(spec)


def check_seed_text(text) -> int:
    """A seed from a URL: ASCII digits only (``int`` also reads Arabic-Indic digits and "1_0"), in torch's range."""
    from unlearn_core.forget import validate_seed

    text = str(text).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        raise ParameterError("the seed must be a whole number")
    return validate_seed(int(text))


def choice_from_query(params: dict, defaults: dict) -> tuple[dict, list[str]]:
    """Validate ``?dataset=``, ``?model=``, ``?forget=`` (and ``?seed=``) before any page uses them.

    Returns the values to use and one plain-text warning per value ignored
    (the bad value itself is never repeated: it is what an attacker wrote).
    The seed is checked only when ``defaults`` or ``params`` name it.
    """
    checks = {"dataset": check_dataset_name, "model": check_model_name, "forget": check_forget_text,
              "seed": check_seed_text}
    values, warnings = {}, []
    for name, check in checks.items():
        if name not in defaults and name not in params:
            continue
        raw = params.get(name)
        if raw in (None, ""):
            values[name] = defaults.get(name, "")
            continue
        try:
            values[name] = check(str(raw))
        except UnlearnError as error:
            warnings.append(f"The link's {name} was ignored: {str(error).split(';')[0]}.")
            values[name] = defaults.get(name, "")
    if params.get("forget") not in (None, "") and values.get("forget") not in (None, "", defaults.get("forget")):
        problem = _forget_misfit(values["forget"], values.get("dataset"))
        if problem:
            warnings.append(f"The link's forget set was ignored: {problem}.")
            values["forget"] = defaults.get("forget", "")
    return values, warnings


def _forget_misfit(forget: str, dataset: str | None) -> str | None:
    """Why a class or sub-class forget set does not fit the data set (``None`` when it fits or cannot be told).

    ``class:33`` parses, but digits has ten classes: kept, it left every page on "unknown class 33" with no
    control to fix it. The reason never repeats the link's value. A data set that cannot be loaded here is not
    judged (the pages say why it cannot be loaded).
    """
    from unlearn_core.data import load_dataset
    from unlearn_core.forget import ForgetSpec

    spec = ForgetSpec.parse(forget)
    if spec.kind not in ("class", "subclass") or not dataset:
        return None
    try:
        bundle = load_dataset(dataset)
    except (UnlearnError, OSError):
        return None
    try:
        spec.resolve(bundle, 0)
    except UnlearnError:
        kind = "class" if spec.kind == "class" else "fine class"
        return f"it names a {kind} that {dataset} does not have, or leaves no class to keep"
    return None


def initial_choice(query: dict, current) -> tuple[dict, list[str]]:
    """A new session's shared choice: the link's checked values over the server's defaults.

    ``query`` holds the URL's ``dataset``, ``model``, ``forget`` and ``seed``
    (``None`` where absent); ``current`` is :func:`unlearn_core.settings.settings`.
    The default model belongs to the default data set: a link that names
    another data set without a model gets that data set's default (``""``).
    Returns the values and the warnings of :func:`choice_from_query`.
    """
    defaults = {"dataset": current.default_dataset, "model": current.default_model,
                "forget": current.default_forget, "seed": 0}
    values, warnings = choice_from_query(query, defaults)
    if values["model"] and values["dataset"] != defaults["dataset"] and not query.get("model"):
        values["model"] = ""  # the default model is per data set
    return values, warnings


# -- what survives a reload ----------------------------------------------------------------------------------------
# The choice lives in the URL (a reload or a shared link opens the same view); the session token that owns jobs and
# runs lives in a cookie, never in the URL, so a shared link cannot hand its recipient the sender's runs.
URL_KEYS = ("dataset", "model", "forget", "seed")
SESSION_COOKIE = "unlearn_session"
SESSION_TOKEN_BYTES = 24  # secrets.token_urlsafe(24): 192 random bits in 32 URL-safe characters
_SESSION_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
# A hand-picked set of a few thousand samples fits a link; beyond this the URL keeps the rest of the choice only
# (proxies and servers refuse request lines of some tens of KB: Tornado's default limit is 64 KB).
MAX_URL_FORGET_CHARS = 16_000
_INDEX_VALUE = re.compile(r"\s*-?\d+\s*")


def new_session_token() -> str:
    import secrets

    return secrets.token_urlsafe(SESSION_TOKEN_BYTES)


def check_session_token(value) -> str | None:
    """A token read back from the browser, or ``None`` when it is absent or not one this app could have made.

    Only the exact shape of :func:`new_session_token` passes: anything else (a cookie another app set, a forged
    path or markup) starts a new session rather than reaching the job list or the run store.
    """
    return value if isinstance(value, str) and _SESSION_TOKEN.fullmatch(value) else None


def cookie_script(token: str, name: str = SESSION_COOKIE) -> str:
    """The one line of JavaScript that stores the session token as a browser-session cookie.

    No ``Max-Age``: the cookie ends with the browser session, so the next person at a shared lab computer does not
    inherit the runs. ``SameSite=Strict``: no other site's page can send it. ``Secure`` when served over HTTPS.
    """
    if check_session_token(token) is None:
        raise ValueError("not a session token")  # never write anything else into a script
    return (f"<script>document.cookie = '{name}={token}; Path=/; SameSite=Strict'"
            " + (location.protocol === 'https:' ? '; Secure' : '');</script>")


def forget_label(text) -> str:
    """A forget spec as people read it: a hand-picked set is "hand-picked, N samples", never its index list."""
    text = str(text)
    kind, _, body = text.partition(":")
    if kind.strip().lower() != "indices":
        return text
    values = body.split(",")
    if not all(_INDEX_VALUE.fullmatch(v) for v in values if v.strip()):
        return "hand-picked, from a file"
    count = len({int(v) for v in values if v.strip()})
    return f"hand-picked, {count:,} sample{'' if count == 1 else 's'}"


def url_params(choice: dict, view: dict | None = None) -> dict[str, str]:
    """What the address bar keeps: the shared choice and the page's view (:data:`VIEW_KEYS`), checked values
    only, never the session token.

    A hand-picked set too long for a link is left out (the rest still opens the same data set and model).
    """
    params = {key: str(choice[key]) for key in URL_KEYS if choice.get(key) not in (None, "")}
    if len(params.get("forget", "")) > MAX_URL_FORGET_CHARS:
        del params["forget"]
    for key, value in (view or {}).items():
        if key in VIEW_KEYS and value not in (None, "", ()):
            params[key] = view_text(key, value)
    return params


# -- what a link reopens of a page's view --------------------------------------------------------------------------
# Beside the shared choice, a link keeps what the page it was copied on shows: the Null space page's eps, the NatMU
# hybrids page's delta, the run chosen on Results and Embeddings, the sweep and its cell on Sweeps, and the
# evidence asked for on Unlearn. Each value is checked here, like the choice: a bad one is dropped with a warning.
VIEW_KEYS = ("eps", "delta", "run", "sweep", "cell", "evidence")
EPS_RANGE = (0.80, 1.0)  # the Null space page's eps slider
_CELL_ID = re.compile(r"[0-9a-f]{12}")  # sweeps.plan.Cell.cell_id: 12 hex digits
_SWEEP_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:+=-]{0,119}")


def _ascii_number(text: str, what: str) -> float:
    from unlearn_core.parsing import ascii_float

    try:
        number = ascii_float(str(text).strip())
    except (TypeError, ValueError, OverflowError):
        raise ParameterError(f"the {what} must be a number") from None
    return number


def check_eps(text) -> float:
    """UNSC's eps from a link: a number in :data:`EPS_RANGE`."""
    number = _ascii_number(text, "eps")
    if not EPS_RANGE[0] <= number <= EPS_RANGE[1]:
        raise ParameterError(f"eps must be between {EPS_RANGE[0]:g} and {EPS_RANGE[1]:g}")
    return number


def delta_range() -> tuple[float, float]:
    """The NatMU hybrids page's delta slider range: the declared ``delta`` Param's bounds (else -0.5 to 1)."""
    from unlearn_core.methods import get_method

    param = get_method("natmu").param("delta")
    return (param.low if param.low is not None else -0.5, param.high if param.high is not None else 1.0)


def check_delta(text) -> float:
    """NatMU's delta from a link: a number in :func:`delta_range`."""
    number = _ascii_number(text, "delta")
    low, high = delta_range()
    if not low <= number <= high:
        raise ParameterError(f"delta must be between {low:g} and {high:g}")
    return number


def check_run_text(text) -> int:
    """A run id from a link: ASCII digits, positive. Whether the visitor may see that run is the page's check."""
    text = str(text).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 12 and int(text) > 0):
        raise ParameterError("a run is a positive whole number")
    return int(text)


def check_sweep_tag(text) -> str:
    text = str(text).strip()
    if not _SWEEP_TAG.fullmatch(text):
        raise ParameterError("a sweep tag holds only letters, digits, spaces and _ . : + = -")
    return text


def check_cell_text(text) -> str:
    text = str(text).strip()
    if not _CELL_ID.fullmatch(text):
        raise ParameterError("a sweep cell is 12 hexadecimal digits")
    return text


def check_evidence_text(text) -> tuple[str, ...]:
    """Evidence kinds from a link: comma separated, each one of :data:`unlearn_core.evidence.KINDS`."""
    from unlearn_core.evidence import KINDS

    kinds = tuple(dict.fromkeys(k.strip() for k in str(text).split(",") if k.strip()))
    if not kinds or any(k not in KINDS for k in kinds):
        raise ParameterError(f"evidence is a comma-separated list of {', '.join(KINDS)}")
    return kinds


VIEW_CHECKS = {"eps": check_eps, "delta": check_delta, "run": check_run_text, "sweep": check_sweep_tag,
               "cell": check_cell_text, "evidence": check_evidence_text}


def view_text(key: str, value) -> str:
    """A view value as the address bar keeps it (``repr`` of floats, comma-joined evidence kinds)."""
    if key == "evidence" and not isinstance(value, str):
        return ",".join(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def view_from_query(params: dict) -> tuple[dict, list[str]]:
    """The link's view values (:data:`VIEW_KEYS`) that pass their check, and one warning per value dropped
    (the bad value itself is never repeated)."""
    values, warnings = {}, []
    for key, check in VIEW_CHECKS.items():
        raw = params.get(key)
        if raw in (None, ""):
            continue
        try:
            values[key] = check(raw)
        except UnlearnError as error:
            warnings.append(f"The link's {key} was ignored: {str(error).split(';')[0]}.")
    return values, warnings


# -- presentation mode ---------------------------------------------------------------------------------------------
PRESENT_KEY = "present"


def present_from_query(raw) -> tuple[bool, str | None]:
    """``?present=``: ``"1"`` turns presentation mode on, ``"0"`` or nothing leaves it off.

    Returns ``(on, warning)``; any other value is dropped with a warning that does not repeat it.
    """
    if raw in (None, "", "0"):
        return False, None
    if raw == "1":
        return True, None
    return False, "The link's present was ignored: it must be 1 (presentation mode) or 0."
