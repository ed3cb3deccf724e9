"""Hyperparameter declarations as data.

A :class:`Param` names one hyperparameter, its type, default, bounds or
choices and a help line. Unlearning methods and evidence measurements
declare their parameters this way; the CLI reads ``--param`` text against
them, the app draws its widgets from them, the sweeps build grids and the
Optuna search space from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from unlearn_core.errors import ParameterError
from unlearn_core.parsing import ascii_float

_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}


@dataclass(frozen=True)
class Param:
    """One declared hyperparameter.

    ``type`` is ``float``, ``int``, ``bool`` or ``str``; ``low``/``high``
    bound numbers (inclusive), ``choices`` restricts strings, ``log`` asks
    widgets for a log scale. ``sweep`` is the span ``(first, last)`` a
    sweep's default grid covers (:func:`unlearn_core.tables.grid_values`):
    a measured region where the method's outcome changes, inside
    ``[low, high]``; without it the grid spans a quarter to four times the
    default.
    """

    name: str
    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    log: bool = False
    sweep: tuple | None = None

    def __post_init__(self):
        if self.sweep is not None:
            first, last = self.sweep
            if not first < last or (self.low is not None and first < self.low) or \
                    (self.high is not None and last > self.high):
                raise ValueError(f"parameter {self.name!r}: sweep span {self.sweep} is not an increasing pair "
                                 "inside [low, high]")

    def coerce(self, value: Any) -> Any:
        """Convert and validate a value (native or text); raise :class:`ParameterError` if bad.

        Text numbers are read by :func:`unlearn_core.parsing.ascii_float` (ASCII digits only), the one number
        parser of ``--param``, ``--grid``, the app's fields and a sweep's stored grid.
        """
        where = f"parameter {self.name!r}"
        if self.type is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ParameterError(f"{where} must be true or false, got {value!r}")
        if self.type in (int, float):
            try:
                if isinstance(value, bool):
                    raise ValueError
                number = _as_float(value) if self.type is float else _as_int(value)
            except (TypeError, ValueError, OverflowError):
                raise ParameterError(f"{where} must be {'a number' if self.type is float else 'a whole number'} "
                                     f"in ASCII digits 0-9, got {str(value)[:40]!r}") from None
            if self.type is float and not math.isfinite(number):
                raise ParameterError(f"{where} must be finite, got {value!r}")
            if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
                low = "-inf" if self.low is None else f"{self.low:g}"
                high = "inf" if self.high is None else f"{self.high:g}"
                raise ParameterError(f"{where} must be in [{low}, {high}], got {str(number)[:40]}")
            return number
        text = str(value).strip()
        if self.choices is not None and text not in self.choices:
            raise ParameterError(f"{where} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        return text

    def describe(self) -> dict:
        out = {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help}
        if self.low is not None:
            out["low"] = self.low
        if self.high is not None:
            out["high"] = self.high
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.log:
            out["log"] = True
        if self.sweep is not None:
            out["sweep"] = list(self.sweep)
        return out


def _as_float(value: Any) -> float:
    if isinstance(value, (float, np.floating)):
        return float(value)
    return ascii_float(value)


def _as_int(value: Any) -> int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    number = _as_float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)
