"""Evaluation report and quality gate message, on a synthetic evaluation without Spark."""

import numpy as np
import pytest

from pipelines.evaluate import Evaluation
from pipelines.gate import GateResult
from pipelines.report import write_report
from pipelines.retrieval import RetrievalResult
from sid.errors import QualityGateError
from sid.metrics import check_quality_gate


def synthetic_evaluation(with_curves=True):
    curves = {"sid": (np.array([1, 10, 100]), np.array([0.1, 0.3, 0.6])),
              "raw": (np.array([1, 10, 100]), np.array([0.2, 0.5, 0.8]))} if with_curves else {}
    return Evaluation(
        metrics={"final/gini": 0.0, "raw/gini": 0.21, "hit_rate/sid/at_10": 0.3},
        histograms={"raw": {1: 50, 2: 10, 7: 1}, "final": {1: 77}},
        code_counts=[np.array([5, 0, 30, 42]), np.array([10, 10, 57, 0])],
        retrieval=RetrievalResult(metrics={}, curves=curves, notes=[]) if with_curves else None,
        notes=["hit rate at K=[100] skipped: K must be below 76, the candidates per query"],
    )


def test_report_writes_plots_and_markdown(tmp_path):
    evaluation = synthetic_evaluation()
    thresholds = {"final/gini": {"max": 0.1}, "hit_rate/sid/at_10": {"min": 0.5}}
    failures = check_quality_gate(evaluation.metrics, thresholds)
    paths = write_report(evaluation, tmp_path, title="v1", metrics=evaluation.metrics,
                         thresholds=thresholds, failures=failures)

    names = {path.name for path in paths}
    assert names == {"code_usage_per_level.png", "lorenz_curve.png", "bucket_size_distribution.png",
                     "hit_rate_vs_k.png", "report.md"}
    for path in paths:
        assert path.stat().st_size > 0
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Quality gate: failed (1 bound(s))" in report
    assert "| hit_rate/sid/at_10 | 0.3000 | 0.5 |  | fail |" in report
    assert "| final/gini | 0 |  | 0.1 | pass |" in report
    assert "K=[100] skipped" in report


def test_report_without_hit_rate_has_no_curve(tmp_path):
    evaluation = synthetic_evaluation(with_curves=False)
    paths = write_report(evaluation, tmp_path, title="v1", metrics=evaluation.metrics, thresholds={}, failures=[])
    assert "hit_rate_vs_k.png" not in {path.name for path in paths}
    assert "No thresholds are configured" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_gate_result_message_names_each_failure():
    failures = check_quality_gate({"final/gini": 0.4, "purity/level_1": 0.2},
                                  {"final/gini": {"max": 0.1}, "purity/level_1": {"min": 0.5}})
    result = GateResult("v2", {}, failures, previous_version="v1")
    with pytest.raises(QualityGateError) as caught:
        result.raise_if_failed()
    message = str(caught.value)
    assert "codebook_version=v2 failed the quality gate" in message
    assert "active version stays v1" in message
    assert "final/gini=0.4 is above max 0.1" in message
    assert "purity/level_1=0.2 is below min 0.5" in message
    assert caught.value.failures == failures


def test_gate_result_passes_silently():
    GateResult("v2", {}, [], previous_version=None).raise_if_failed()
