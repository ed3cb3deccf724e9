"""Typed results: the metrics of one model and the report of one unlearning run.

:class:`ModelMetrics` holds every per-model metric of
:func:`unlearn_core.metrics.evaluate_outputs` (definitions and sources in
docs/METRICS.md); :class:`Report` holds the three models' metrics of a run
(original, unlearned, retrained), the gaps, the timings and the method's
scope. ``to_dict()`` gives the JSON form the run store keeps and ``--json``
writes; ``from_dict()`` reads it back, from stores of every earlier version
too (a key they lack reads as ``None``; a key this version does not know is
kept in ``extra`` and written back unchanged).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

# -- the metric table: every module that lists metrics reads it from here (metrics.py re-exports it) ----------------------------------------
# The headline per-model metrics, in display order: the run store's indexed columns and the Results table.
HEADLINE_METRICS = ("FA", "RA", "TA", "Acc_f", "Acc_r", "MIA_svc", "MIA_entropy")
# Every scalar per-model metric a sweep aggregates over seeds.
MODEL_METRICS = HEADLINE_METRICS + ("TA_retain",)
# Per-run numbers that are not a model's metric (the gap, the time, the speed-up, the divergences).
RUN_METRICS = ("avg_gap", "seconds", "rte", "js_forget", "js_test")


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is: its key, a short label, its unit, what is better, and where it is defined.

    ``better`` is ``"retrained"`` where the target is the retrained model's
    value (closeness is the rule), ``"higher"`` or ``"lower"`` otherwise.
    """

    key: str
    label: str
    unit: str
    better: str
    source: str


METRIC_INFO = {info.key: info for info in (
    MetricInfo("FA", "forget accuracy", "%", "retrained", "SalUn, NatMU (UA = 100 - FA)"),
    MetricInfo("RA", "remaining accuracy", "%", "retrained", "SalUn, NatMU"),
    MetricInfo("TA", "test accuracy", "%", "retrained", "SalUn, NatMU"),
    MetricInfo("TA_retain", "test accuracy outside the forgotten classes", "%", "retrained",
               "NatMU's class-wise tables"),
    MetricInfo("Acc_f", "test accuracy on the forgotten classes", "%", "retrained", "UNSC's release"),
    MetricInfo("Acc_r", "mean per-class test accuracy of the remaining classes", "%", "retrained",
               "UNSC's release"),
    MetricInfo("MIA_svc", "confidence SVC attack, share of forget samples called non-members", "%", "retrained",
               "SalUn's release (SVC_MIA, confidence)"),
    MetricInfo("MIA_entropy", "entropy attack, share of forget samples called members", "%", "retrained",
               "NatMU's and SSD's releases"),
    MetricInfo("avg_gap", "mean absolute gap to the retrained model", "points", "lower", "NatMU"),
    MetricInfo("seconds", "wall-clock seconds of the method", "s", "lower", "NatMU (RTE)"),
    MetricInfo("rte", "retraining seconds over the method's seconds", "x", "higher", "NatMU"),
    MetricInfo("js_forget", "Jensen-Shannon divergence from the retrained model on the forget set", "nats", "lower",
               "docs/METRICS.md (this project's diagnostic)"),
    MetricInfo("js_test", "Jensen-Shannon divergence from the retrained model on the test set", "nats", "lower",
               "docs/METRICS.md (this project's diagnostic)"),
)}


# Keys every ModelMetrics dict carries (``None`` where undefined, e.g. Acc_f for sample forgetting).
_ALWAYS = ("FA", "RA", "TA", "TA_retain", "Acc_f", "Acc_r", "MIA_svc", "MIA_svc_detail", "MIA_entropy",
           "per_class_test")


@dataclass
class ModelMetrics:
    """One model's metrics on a forget split, in % (docs/METRICS.md gives each definition and its source).

    ``avg_gap`` is set on the original model's entry (its own gap to the
    retrained model), ``js_forget``/``js_test`` on the unlearned model's
    (Jensen-Shannon divergence of its outputs from the retrained model's).
    """

    FA: float | None = None
    RA: float | None = None
    TA: float | None = None
    TA_retain: float | None = None
    Acc_f: float | None = None
    Acc_r: float | None = None
    MIA_svc: float | None = None
    MIA_svc_detail: dict = field(default_factory=dict)
    MIA_entropy: float | None = None
    per_class_test: list = field(default_factory=list)
    MIA_svc_ci95: float | None = None
    MIA_svc_draws: int | None = None
    MIA_svc_salun: float | None = None
    MIA_entropy_retain_test: float | None = None
    avg_gap: float | None = None
    js_forget: float | None = None
    js_test: float | None = None
    extra: dict = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A metric by name (a field, or a key kept in ``extra``); ``default`` when it is absent or ``None``."""
        if key != "extra" and key in _FIELD_NAMES[ModelMetrics]:
            value = getattr(self, key)
        else:
            value = self.extra.get(key)
        return default if value is None else value

    def to_dict(self) -> dict:
        """The JSON form: the always-present keys, then the optional ones that are set, then ``extra``."""
        out: dict[str, Any] = {}
        for name in _FIELD_NAMES[ModelMetrics]:
            if name == "extra":
                continue
            value = getattr(self, name)
            if name in _ALWAYS or value is not None:
                out[name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ModelMetrics":
        """Read a stored metrics dict (``None`` or ``{}`` gives an empty entry)."""
        return _from_mapping(cls, data or {})


@dataclass
class Report:
    """The report of one unlearning run (``unlearn --json`` and the run store's ``report_json``).

    - ``original`` / ``unlearned`` / ``retrained``: :class:`ModelMetrics`
      (``retrained`` is ``None`` when no retrained model was prepared).
    - ``in_scope`` / ``in_scope_reason``: whether the method was designed for
      this kind of forget set.
    - ``rte``: the retrained model's training seconds over the method's
      seconds, ``None`` when the two were timed under other conditions
      (``rte_comparable`` false, ``rte_not_comparable_reason`` says why).
    - ``avg_gap``: the mean absolute gap to the retrained model over
      ``avg_gap_keys``.
    - ``evidence``: the deeper evidence section (docs/EVIDENCE.md), if asked.
    """

    method: str = ""
    params: dict = field(default_factory=dict)
    dataset: str = ""
    model: str = ""
    forget: str = ""
    seed: int | None = None
    device: str = ""
    n_forget: int | None = None
    n_retain: int | None = None
    forgotten_classes: list = field(default_factory=list)
    class_names: list = field(default_factory=list)
    in_scope: bool = True
    in_scope_reason: str | None = None
    seconds: float | None = None
    timing: dict | None = None
    original: ModelMetrics = field(default_factory=ModelMetrics)
    unlearned: ModelMetrics = field(default_factory=ModelMetrics)
    retrained: ModelMetrics | None = None
    retrain_seconds: float | None = None
    retrain_timing: dict | None = None
    rte: float | None = None
    rte_comparable: bool | None = None
    rte_not_comparable_reason: str | None = None
    avg_gap: float | None = None
    avg_gap_keys: list | None = None
    evidence: dict | None = None
    extra: dict = field(default_factory=dict)

    _RETRAINED_KEYS = ("retrained", "retrain_seconds", "retrain_timing", "rte", "rte_comparable",
                       "rte_not_comparable_reason", "avg_gap", "avg_gap_keys")

    def model_metrics(self, which: str) -> ModelMetrics | None:
        """``"original"``, ``"unlearned"`` or ``"retrained"``'s metrics."""
        if which not in ("original", "unlearned", "retrained"):
            raise KeyError(which)
        return getattr(self, which)

    def to_dict(self) -> dict:
        """The JSON form. The retrained model's section (and the gaps and RTE that need it) only when it exists."""
        out: dict[str, Any] = {}
        for name in _FIELD_NAMES[Report]:
            if name == "extra":
                continue
            if name in self._RETRAINED_KEYS and self.retrained is None:
                continue
            if name == "evidence" and self.evidence is None:
                continue
            value = getattr(self, name)
            out[name] = value.to_dict() if isinstance(value, ModelMetrics) else value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "Report":
        """Read a stored report (any version); models' sections become :class:`ModelMetrics`."""
        data = dict(data or {})
        for which in ("original", "unlearned"):
            data[which] = ModelMetrics.from_dict(data.get(which))
        data["retrained"] = ModelMetrics.from_dict(data["retrained"]) if data.get("retrained") else None
        return _from_mapping(cls, data)


_FIELD_NAMES = {kind: tuple(f.name for f in dataclasses.fields(kind)) for kind in (ModelMetrics, Report)}


def _from_mapping(cls, data: Mapping[str, Any]):
    known = set(_FIELD_NAMES[cls]) - {"extra"}
    values = {key: value for key, value in data.items() if key in known}
    extra = {key: value for key, value in data.items() if key not in known}
    return cls(**values, extra=extra)
