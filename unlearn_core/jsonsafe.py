"""Values made safe for strict JSON, and errors made into one short line.

JSON has no NaN or infinity and no numpy scalars; :func:`jsonable` maps NaN and
infinities to ``None`` and scalars to Python numbers, recursively, so that
``json.dumps(..., allow_nan=False)`` always succeeds. The run store, the sweep
and bench exports and the CLI's ``--json`` outputs all write through it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from unlearn_core.errors import UnlearnError


def jsonable(value: Any) -> Any:
    """NaN/inf to None and numpy scalars to Python numbers, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if hasattr(value, "item"):  # numpy / torch scalar
        return jsonable(value.item())
    return str(value)


def dumps(value: Any) -> str:
    """Compact, key-sorted strict JSON of :func:`jsonable` ``(value)``."""
    return json.dumps(jsonable(value), allow_nan=False, sort_keys=True)


def finite_or_none(value: Any) -> Any:
    """A number as a finite float, ``None`` for NaN/inf/non-numbers; booleans and ``None`` unchanged."""
    if isinstance(value, bool) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def one_line(text: Any, limit: int = 200) -> str:
    """Any text (sqlite and OS messages can quote stored text) as one line of at most ``limit`` characters."""
    return " ".join(str(text).split())[:limit]


def error_text(error: BaseException) -> str:
    """An exception as the one line a run records: the message of an :class:`UnlearnError`, else ``Type: first line``."""
    if isinstance(error, UnlearnError):
        return str(error) or type(error).__name__
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
