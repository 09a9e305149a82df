"""Quality gate: bounds, failures and their messages."""

import math

import pytest

from sid.metrics import GateFailure, check_quality_gate

THRESHOLDS = {"final/collision_rate": {"max": 0.0}, "raw/gini": {"max": 0.5}, "final/hit_rate@10": {"min": 0.2}}


def test_gate_passes():
    metrics = {"final/collision_rate": 0.0, "raw/gini": 0.31, "final/hit_rate@10": 0.2, "other": 9.0}
    assert check_quality_gate(metrics, THRESHOLDS) == []


def test_gate_fails_each_bound():
    metrics = {"final/collision_rate": 0.02, "raw/gini": 0.61, "final/hit_rate@10": 0.15}

    failures = check_quality_gate(metrics, THRESHOLDS)

    assert [failure.metric for failure in failures] == ["final/collision_rate", "raw/gini", "final/hit_rate@10"]
    assert failures[0] == GateFailure("final/collision_rate", 0.02, "max", 0.0)
    assert failures[0].message == "final/collision_rate=0.02 is above max 0.0"
    assert failures[1].message == "raw/gini=0.61 is above max 0.5"
    assert failures[2].bound == "min"
    assert failures[2].message == "final/hit_rate@10=0.15 is below min 0.2"


def test_gate_missing_and_nan_fail():
    failures = check_quality_gate({"raw/gini": float("nan")}, {"raw/gini": {"max": 0.5}, "absent": {"min": 1}})

    assert len(failures) == 2
    assert math.isnan(failures[0].value)
    assert failures[0].message == "raw/gini=nan is not a number; expected max 0.5"
    assert failures[1].value is None
    assert failures[1].message == "absent is missing from the metrics; expected min 1.0"


def test_gate_range_reports_failed_side():
    thresholds = {"level_0/utilization": {"min": 0.5, "max": 0.9}}
    assert check_quality_gate({"level_0/utilization": 0.7}, thresholds) == []

    failures = check_quality_gate({"level_0/utilization": 0.95}, thresholds)

    assert [(failure.bound, failure.threshold) for failure in failures] == [("max", 0.9)]


def test_gate_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="unknown bounds \\['maximum'\\]"):
        check_quality_gate({}, {"raw/gini": {"maximum": 0.5}})
    with pytest.raises(ValueError, match="greater than max"):
        check_quality_gate({}, {"raw/gini": {"min": 0.6, "max": 0.5}})
    with pytest.raises(ValueError, match="should be a number"):
        check_quality_gate({}, {"raw/gini": {"max": "low"}})
    with pytest.raises(ValueError, match="should be a mapping"):
        check_quality_gate({}, {"raw/gini": 0.5})
