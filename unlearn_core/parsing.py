"""Text to numbers, strictly.

Python's ``int()`` accepts far more than a user means by a whole number:
Arabic-Indic and other Unicode digits (``int("٣") == 3``), underscores
(``"1_000"``) and surrounding Unicode spaces. A spec such as ``class:٣`` then
silently means ``class:3``, and the same text is stored, shown and hashed in
two spellings. Every place where user text becomes an integer (forget specs,
CLI numbers) goes through :func:`ascii_int` instead.
"""

from __future__ import annotations

import re

# [0-9], not \d: \d matches every Unicode decimal digit.
_ASCII_INT = re.compile(r"[+-]?[0-9]+")
_ASCII_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ASCII_SPACE = " \t\r\n"


def is_ascii_int(text: str) -> bool:
    """True when ``text`` (surrounding ASCII blanks allowed) is an optional sign and ASCII digits only."""
    if not isinstance(text, str):
        return False
    return _ASCII_INT.fullmatch(text.strip(_ASCII_SPACE)) is not None


def ascii_int(text) -> int:
    """``int(text)`` for ASCII digits only; ``ValueError`` for anything else (``"٣"``, ``"1_000"``, ``"3.0"``)."""
    if isinstance(text, bool):
        raise ValueError(f"not a whole number: {text!r}")
    if isinstance(text, int):
        return text
    if not is_ascii_int(text):
        raise ValueError(f"not a whole number in ASCII digits: {str(text)[:40]!r}")
    # Python refuses (ValueError) texts over 4300 digits before converting them, so this stays cheap.
    return int(text.strip(_ASCII_SPACE))


def ascii_float(text) -> float:
    """``float(text)`` for ASCII decimal notation only (``1e-3``, ``.5``, ``-2``).

    ``ValueError`` for anything ``float()`` would also read but a user does not write as a number: Unicode digits
    (``"٣"``, ``"１"``), underscores (``"1_0"``), ``"inf"`` and ``"nan"``.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a number: {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    if not isinstance(text, str) or _ASCII_FLOAT.fullmatch(text.strip(_ASCII_SPACE)) is None:
        raise ValueError(f"not a number in ASCII digits: {str(text)[:40]!r}")
    return float(text.strip(_ASCII_SPACE))
