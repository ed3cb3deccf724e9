"""Unlearning methods, one module each, registered by name.

Importing :func:`load_all` imports every module in this package, so adding a
method means adding one file that defines a registered
:class:`~unlearn_core.methods.base.UnlearningMethod` subclass.
"""

from __future__ import annotations

import importlib
import pkgutil

from unlearn_core.methods.base import (METHODS, Param, UnlearnOutput, UnlearnTask, UnlearningMethod,
                                       get_method, register)

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


def method_names() -> list[str]:
    """Registered method names, reference methods first."""
    names = sorted(load_all())
    order = {"retrain": 0, "finetune": 1, "unsc": 2, "natmu": 3}
    return sorted(names, key=lambda n: (order.get(n, 10), n))
