"""Names a package serves from a heavier submodule, imported on first use (PEP 562's module ``__getattr__``)."""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_names(package: dict, submodule: str, names: tuple[str, ...]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` (its ``globals()``) that imports ``submodule`` when one of
    ``names`` is first asked for and keeps the value, so later lookups are plain attribute reads."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(submodule), name)
            package[name] = value
            return value
        raise AttributeError(f"module {package['__name__']!r} has no attribute {name!r}")

    return __getattr__
