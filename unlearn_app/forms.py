"""The Unlearn page's parameter fields: text as typed, read against each method's declared ``Param``.

Numbers are typed into text fields and read here, not by the browser: a browser number field turns "0,5" into
"05" or keeps its old value without a word. :func:`field_error` says in one line what is wrong with one field,
next to it; :func:`read_fields` reads a whole form and lists every field that stops the batch.
"""

from __future__ import annotations

from unlearn_core.errors import UnlearnError
from unlearn_core.params import Param


def field_text(param: Param, value) -> str:
    """A value as a text field shows it: ``repr`` of floats (``1e-05``, ``0.5``), plain text otherwise."""
    if param.type is float:
        try:
            return repr(float(value))
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def field_error(param: Param, text) -> str | None:
    """Why ``text`` is not a valid value of ``param`` (one line, for the person who typed it), or ``None``."""
    try:
        param.coerce(text)
    except UnlearnError:
        pass
    else:
        return None
    raw = str(text).strip()
    if param.type in (int, float):
        kind = "a number" if param.type is float else "a whole number"
        low = None if param.low is None else f"{param.low:g}"
        high = None if param.high is None else f"{param.high:g}"
        bounds = (f" from {low} to {high}" if low is not None and high is not None else
                  f" of at least {low}" if low is not None else f" of at most {high}" if high is not None else "")
        if not raw:
            return f"{param.name}: empty; type {kind}{bounds}"
        if "," in raw and param.type is float:
            return f"{param.name}: {kind} is written with a dot, e.g. {raw.replace(',', '.')[:20]}"
        try:
            number = float(raw)
        except ValueError:
            return f"{param.name}: not {kind}; type {kind}{bounds}"
        if param.type is int and not number.is_integer():
            return f"{param.name}: must be a whole number{bounds}"
        return f"{param.name}: out of range; type {kind}{bounds}"
    if param.choices is not None:
        return f"{param.name}: choose one of {', '.join(map(str, param.choices))}"
    return f"{param.name}: not a valid value"


def read_fields(params, texts: dict) -> tuple[dict, dict[str, str]]:
    """``params`` (a method's ``Param`` list) read from ``texts`` (name -> typed text or a native value).

    Returns ``(values, errors)``: the coerced value of every valid field, and one line per invalid field.
    """
    values, errors = {}, {}
    for param in params:
        if param.name not in texts:
            continue
        problem = field_error(param, texts[param.name])
        if problem:
            errors[param.name] = problem
        else:
            values[param.name] = param.coerce(texts[param.name])
    return values, errors
