"""What evidence to take: the kinds, their declared parameters and a parsed :class:`EvidenceRequest`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from unlearn_core.errors import ParameterError, UnlearnError
from unlearn_core.methods.base import Param

# KINDS: the kinds "all" selects and the app's Unlearn page offers (with its own labels), every per-run kind; ALL_KINDS:
# every kind a request accepts, in report order (the same kinds: the ensemble verdicts are a sweep's, not a run's).
# cka costs one forward pass of 2 x 256 samples per model; relearn_retain 100 SGD steps per model, the references'
# computed once per setup: the same order as relearn, so "all" takes them too.
KINDS = ("probe", "relearn", "curves", "cka", "relearn_retain")
ALL_KINDS = KINDS

PROBE_PARAMS = (
    Param("train_per_class", int, 50, "training samples per class in the probe's training split (the forgotten "
          "classes' samples included)", low=5, high=100000),
    Param("C", float, 1.0, "inverse L2 strength of the logistic-regression probe", low=1e-4, high=1e4, log=True),
    Param("k", int, 5, "neighbours of the k-NN probe", low=1, high=200),
    Param("eval_max", int, 300, "at most this many samples in each evaluation set", low=10, high=1000000),
)
RELEARN_PARAMS = (
    Param("samples", int, 64, "forget samples the copy is fine-tuned on", low=1, high=100000),
    Param("lr", float, 0.01, "SGD learning rate (momentum 0.9, no weight decay)", low=1e-6, high=10.0, log=True),
    Param("batch_size", int, 16, "mini-batch size", low=1, high=4096),
    Param("level", float, 0.5, "target: this fraction of the way from the model's own forget accuracy back to the "
          "original's", low=0.01, high=1.0),
    Param("max_steps", int, 200, "cap: past this many steps the result is 'not within max_steps'", low=1,
          high=100000),
    Param("eval_max", int, 500, "at most this many samples in the forget evaluation set", low=10, high=1000000),
)
CURVE_PARAMS = (
    Param("every", int, 0, "0: a point at the end of every epoch; k > 0: a point every k optimiser steps", low=0,
          high=1000000),
    Param("samples", int, 128, "samples in each fixed evaluation subset (forget test samples, or forget training "
          "samples when there are none; remaining test samples)", low=8, high=100000),
)
DISTINGUISHER_PARAMS = (
    Param("delta", float, 0.01, "delta of the (epsilon, delta) definition the per-sample epsilons estimate",
          low=0.0, high=0.5),
    Param("bin_width", float, 0.5, "width of the epsilon bins; a sample in bin n scores 2^-n", low=1e-3, high=10.0),
)
CKA_PARAMS = (
    Param("samples", int, 256, "forget and retained training samples (each) the layers are compared on; one forward "
          "pass holds them all", low=8, high=4096),
)
RELEARN_RETAIN_PARAMS = (
    Param("samples", int, 512, "retained training samples the copy is fine-tuned on (no forget sample)", low=1,
          high=1000000),
    Param("lr", float, 0.01, "SGD learning rate (momentum 0.9, no weight decay)", low=1e-6, high=10.0, log=True),
    Param("batch_size", int, 32, "mini-batch size", low=1, high=4096),
    Param("steps", int, 100, "optimiser steps", low=1, high=100000),
    Param("every", int, 10, "read the forget accuracy every this many steps", low=1, high=100000),
    Param("eval_max", int, 500, "at most this many samples in the forget evaluation set", low=10, high=1000000),
)
PARAMS = {"probe": PROBE_PARAMS, "relearn": RELEARN_PARAMS, "curves": CURVE_PARAMS, "cka": CKA_PARAMS,
          "relearn_retain": RELEARN_RETAIN_PARAMS, "distinguisher": DISTINGUISHER_PARAMS}


class EvidenceError(UnlearnError):
    """An evidence request is malformed or cannot be measured on this forget set."""


def resolve_params(kind: str, overrides: dict | None = None) -> dict:
    """Defaults of ``kind``'s declared parameters updated by ``overrides`` (text or native), each validated."""
    if kind not in PARAMS:
        raise EvidenceError(f"unknown evidence {kind!r}; choose from {', '.join(PARAMS)}")
    declared = {p.name: p for p in PARAMS[kind]}
    values = {name: p.default for name, p in declared.items()}
    for key, value in (overrides or {}).items():
        if key not in declared:
            raise ParameterError(f"evidence {kind!r} has no parameter {key!r}; it takes {', '.join(declared)}")
        values[key] = declared[key].coerce(value)
    return values


def describe_params() -> dict:
    """Every measurement's declared parameters, as the methods' ``describe`` gives them."""
    return {kind: [p.describe() for p in params] for kind, params in PARAMS.items()}


@dataclass(frozen=True)
class EvidenceRequest:
    """Which measurements to take and their resolved parameters."""

    kinds: tuple[str, ...]
    params: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, kinds: "str | Iterable[str] | EvidenceRequest | None",
              overrides: dict | None = None) -> "EvidenceRequest | None":
        """``"probe,relearn"`` (or a list) and ``{"relearn.lr": "0.05"}`` -> a request; None when empty.

        ``overrides`` keys are ``KIND.NAME``; values are text or native.
        """
        if isinstance(kinds, EvidenceRequest):
            if overrides:
                raise EvidenceError("pass parameter overrides either in the request or separately, not both")
            return kinds
        if kinds is None:
            names: list[str] = []
        elif isinstance(kinds, str):
            names = [k.strip().lower() for k in kinds.split(",") if k.strip()]
        else:
            names = [str(k).strip().lower() for k in kinds if str(k).strip()]
        if "all" in names:
            names = list(KINDS)
        for name in names:
            if name not in ALL_KINDS:
                raise EvidenceError(f"unknown evidence {name!r}; choose from {', '.join(ALL_KINDS)} (or all)")
        grouped: dict[str, dict] = {}
        for key, value in (overrides or {}).items():
            kind, sep, name = str(key).partition(".")
            if not sep or not name:
                raise EvidenceError(f"an evidence parameter is KIND.NAME=VALUE, got {key!r}")
            kind = kind.strip().lower()
            if kind not in ALL_KINDS:
                raise EvidenceError(f"unknown evidence {kind!r} in {key!r}; choose from {', '.join(ALL_KINDS)}")
            if kind not in names:
                raise EvidenceError(f"parameter {key!r} given but {kind!r} evidence was not asked for")
            grouped.setdefault(kind, {})[name.strip()] = value
        if not names:
            return None
        ordered = tuple(k for k in ALL_KINDS if k in names)
        return cls(ordered, {k: resolve_params(k, grouped.get(k)) for k in ordered})

    def as_dict(self) -> dict:
        return {"kinds": list(self.kinds), "params": self.params}
