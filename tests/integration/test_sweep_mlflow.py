"""Sweep logging: each candidate becomes a nested MLflow run under the build run."""

import numpy as np
import pytest

from pipelines.sweep import _log_quantizer_artifact, _log_sweep
from pipelines.train import TrainResult
from sid.config import load_config
from sid.quantize import ResidualKMeans, load_quantizer

pytestmark = pytest.mark.slow


def test_candidates_logged_as_nested_runs(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("sweep-test")
    config = load_config(overrides={"quantize.sweep": {"metric": "gini", "candidates": [{"name": "a"}, {"name": "b"}]}})
    data = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    quantizer = ResidualKMeans(codebook_sizes=[4], seed=0, kmeans_iterations=2).fit(data)
    results = {
        "a": TrainResult(quantizer, {"fit_seconds": 1.0}, 64, {"gini": 0.3, "collision_rate": 0.5}),
        "b": TrainResult(quantizer, {"fit_seconds": 2.0}, 64, {"gini": 0.1, "collision_rate": 0.6}),
    }

    with mlflow.start_run(run_name="build") as parent:
        _log_sweep(results, dict(config.quantize.candidates()), "b", config)
        _log_quantizer_artifact(results["b"])

    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(children["tags.sweep_candidate"]) == ["a", "b"]
    winner_rows = children[children["tags.sweep_winner"] == "True"]
    assert list(winner_rows["tags.sweep_candidate"]) == ["b"]
    assert sorted(children["metrics.sweep/gini"]) == [0.1, 0.3]
    parent_run = mlflow.get_run(parent.info.run_id)
    assert parent_run.data.tags["sweep_winner"] == "b"
    artifact = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="quantizer",
                                                   dst_path=str(tmp_path / "download"))
    assert np.array_equal(load_quantizer(artifact).codebooks[0], quantizer.codebooks[0])
