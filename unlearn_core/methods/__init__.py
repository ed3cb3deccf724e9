"""Unlearning methods, one module each, registered by name.

:func:`load_all` imports every module of this package (except ``base`` and
the ``_``-private helpers), each of which registers its
:class:`~unlearn_core.methods.base.UnlearningMethod` subclass in
:data:`~unlearn_core.methods.base.METHODS`; adding a method means adding one
file. :func:`get_method` and :func:`method_names` load them on first use.
"""

from __future__ import annotations

import importlib
import pkgutil

from unlearn_core.errors import MethodError
from unlearn_core.methods.base import METHODS, Param, UnlearnOutput, UnlearnTask, UnlearningMethod, register

__all__ = ["METHODS", "Param", "UnlearnOutput", "UnlearnTask", "UnlearningMethod", "get_method", "register",
           "load_all", "method_names"]

_loaded = False


def load_all() -> dict:
    """Import every method module once; return the registry."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_") and info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return METHODS


def get_method(name: str) -> type[UnlearningMethod]:
    """The registered method class called ``name`` (case and surrounding blanks ignored)."""
    load_all()
    key = (name or "").strip().lower()
    if key not in METHODS:
        raise MethodError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}")
    return METHODS[key]


def method_names() -> list[str]:
    """Registered method names, reference methods first."""
    names = sorted(load_all())
    order = {"retrain": 0, "finetune": 1, "unsc": 2, "natmu": 3}
    return sorted(names, key=lambda n: (order.get(n, 10), n))
