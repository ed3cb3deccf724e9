"""settings(): one parser for every UNLEARN_* variable; Report/ModelMetrics: the stored JSON round-trips."""

from __future__ import annotations

import json

import pytest

from unlearn_core.report import ModelMetrics, Report
from unlearn_core.settings import SettingsError, settings


def test_defaults_and_values(monkeypatch, tmp_path):
    for name in ("UNLEARN_MAX_UPLOAD_MB", "UNLEARN_SHARED", "UNLEARN_INDEX_ROOT", "UNLEARN_IMAGE_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UNLEARN_DATA_DIR", str(tmp_path))
    s = settings()
    assert s.data_dir == tmp_path and s.image_root == tmp_path / "imagefolders"
    assert s.max_upload_mb == 200 and s.index_root is None and s.shared is False
    monkeypatch.setenv("UNLEARN_MAX_UPLOAD_MB", "12.5")
    monkeypatch.setenv("UNLEARN_SHARED", "yes")
    s = settings()
    assert s.max_upload_bytes == int(12.5 * 2**20) and s.shared is True


@pytest.mark.parametrize("name,value", [
    ("UNLEARN_MAX_UPLOAD_MB", "0"), ("UNLEARN_MAX_UPLOAD_MB", "lots"), ("UNLEARN_RUN_CHECKPOINT_QUOTA_MB", "-1"),
    ("UNLEARN_MAX_JOBS_PER_SESSION", "2.5"), ("UNLEARN_MAX_SWEEP_RUNS", "\u0663"), ("UNLEARN_SETUP_CACHE_MB", "inf"),
])
def test_bad_values_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        settings()
    assert name in str(caught.value) and "\n" not in str(caught.value)


REPORT = {
    "method": "unsc", "params": {"lr": 0.01}, "dataset": "digits", "model": "mlp", "forget": "class:3", "seed": 0,
    "device": "cpu", "n_forget": 140, "n_retain": 1200, "forgotten_classes": [3], "class_names": ["0", "1"],
    "in_scope": True, "in_scope_reason": None, "seconds": 1.5, "timing": {"threads": 2},
    "original": {"FA": 100.0, "RA": 99.0, "TA": 97.0, "TA_retain": 97.5, "Acc_f": 96.0, "Acc_r": 97.0,
                 "MIA_svc": 1.0, "MIA_svc_detail": {"entropy": 2.0}, "MIA_entropy": 80.0,
                 "per_class_test": [97.0, None], "avg_gap": 40.0},
    "unlearned": {"FA": 0.0, "RA": 98.0, "TA": 88.0, "TA_retain": 97.0, "Acc_f": 0.0, "Acc_r": 96.5,
                  "MIA_svc": 90.0, "MIA_svc_detail": {}, "MIA_entropy": 5.0, "per_class_test": [96.0, 0.0],
                  "js_forget": 0.2, "js_test": 0.01, "future_metric": 7},
    "retrained": {"FA": 0.0, "RA": 99.0, "TA": 88.0, "TA_retain": 97.4, "Acc_f": 0.0, "Acc_r": 97.1,
                  "MIA_svc": 95.0, "MIA_svc_detail": {}, "MIA_entropy": 3.0, "per_class_test": [97.0, 0.0]},
    "retrain_seconds": 15.0, "retrain_timing": {"threads": 2}, "rte": 10.0, "rte_comparable": True,
    "rte_not_comparable_reason": None, "avg_gap": 0.7, "avg_gap_keys": ["TA_retain", "RA", "FA", "MIA_entropy"],
}


def test_report_round_trips_exactly():
    report = Report.from_dict(REPORT)
    assert report.unlearned.FA == 0.0 and report.retrained.MIA_entropy == 3.0 and report.original.avg_gap == 40.0
    assert report.unlearned.get("future_metric") == 7 and report.unlearned.get("Acc_f") == 0.0
    assert json.dumps(report.to_dict(), sort_keys=True) == json.dumps(REPORT, sort_keys=True)
    assert list(report.to_dict()) == list(REPORT)  # the key order of the written JSON too


def test_report_without_retrained_model_omits_its_section():
    data = {k: v for k, v in REPORT.items() if k not in Report._RETRAINED_KEYS}
    report = Report.from_dict(data)
    assert report.retrained is None
    assert report.to_dict() == data


def test_old_report_missing_keys_reads_as_none():
    metrics = ModelMetrics.from_dict({"FA": 12.0})
    assert metrics.RA is None and metrics.get("RA", "–") == "–"
    assert Report.from_dict({}).unlearned.FA is None
