"""MLflow logging of a pipeline run: effective config, metrics and artifacts."""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import tempfile
from collections.abc import Mapping

import yaml

from sid.config import MlflowConfig, PipelineConfig

__all__ = ["MlflowRun", "metric_key"]

logger = logging.getLogger(__name__)

# Tag that links an MLflow run to the pipeline run id of jobs/build_sids.py --run-id.
RUN_ID_TAG = "sid.run_id"
# MLflow rejects param values longer than this many characters.
MAX_PARAM_LENGTH = 6000


def metric_key(*parts: str) -> str:
    """Join namespace parts into an MLflow metric key, e.g. quantize/level_0/utilization."""
    return "/".join(part.strip("/") for part in parts if part)


class MlflowRun:
    """Context manager around one MLflow run of the pipeline.

    Opens the run on enter, logs the effective config as params and as ``config.yaml``, and
    ends the run on exit with status FINISHED or FAILED. With ``pipeline_run_id``, the run
    is tagged ``sid.run_id``; a later process with the same pipeline run id (another stage,
    or a rerun) resumes that MLflow run instead of starting a new one.
    """

    def __init__(self, settings: MlflowConfig, config: PipelineConfig, *, run_name: str,
                 pipeline_run_id: str | None = None) -> None:
        self.settings = settings
        self.config = config
        self.run_name = run_name
        self.pipeline_run_id = pipeline_run_id
        self.run_id: str | None = None
        self.resumed = False

    def __enter__(self) -> MlflowRun:
        import mlflow

        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        mlflow.set_tracking_uri(self.settings.tracking_uri)
        experiment = mlflow.get_experiment_by_name(self.settings.experiment)
        if experiment is None:
            mlflow.create_experiment(self.settings.experiment, artifact_location=self.settings.artifact_location)
        experiment = mlflow.set_experiment(self.settings.experiment)
        existing = self._existing_run(experiment.experiment_id)
        if existing is not None:
            run = mlflow.start_run(run_id=existing)
            self.resumed = True
        else:
            run = mlflow.start_run(run_name=self.run_name)
            if self.pipeline_run_id is not None:
                mlflow.set_tag(RUN_ID_TAG, self.pipeline_run_id)
        self.run_id = run.info.run_id
        if self.resumed:
            logger.info("mlflow run_id=%s resumed for pipeline run %s", self.run_id, self.pipeline_run_id)
            return self

        params = {key: value[:MAX_PARAM_LENGTH] for key, value in self.config.flat_params().items()}
        mlflow.log_params(params)
        with tempfile.TemporaryDirectory() as folder:
            path = pathlib.Path(folder) / "config.yaml"
            path.write_text(yaml.safe_dump(_plain(self.config.to_dict()), sort_keys=False), encoding="utf-8")
            mlflow.log_artifact(str(path))
        logger.info("mlflow run_id=%s experiment=%s uri=%s", self.run_id, self.settings.experiment,
                    self.settings.tracking_uri)
        return self

    def _existing_run(self, experiment_id: str) -> str | None:
        """Return the MLflow run id tagged with this pipeline run id, if one exists."""
        import mlflow

        if self.pipeline_run_id is None:
            return None
        runs = mlflow.search_runs(
            experiment_ids=[experiment_id], output_format="list", max_results=1,
            filter_string=f"tags.`{RUN_ID_TAG}` = '{self.pipeline_run_id}'",
        )
        return runs[0].info.run_id if runs else None

    def logged_metrics(self) -> dict[str, float]:
        """Return the latest value of every metric logged to this run so far."""
        import mlflow

        return dict(mlflow.get_run(self.run_id).data.metrics)

    def log_metrics(self, metrics: Mapping[str, float], *, prefix: str = "") -> None:
        """Log finite numeric metrics, keys prefixed with ``prefix/``; NaN values are skipped."""
        import mlflow

        clean = {
            metric_key(prefix, key): float(value)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and math.isfinite(value)
        }
        if clean:
            mlflow.log_metrics(clean)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        mlflow.set_tags(dict(tags))

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str) -> None:
        """Upload every file of ``folder`` under ``artifact_path`` of the run."""
        import mlflow

        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)

    def log_dict(self, data: Mapping, name: str) -> None:
        import mlflow

        mlflow.log_text(json.dumps(data, indent=2, sort_keys=True, default=str), name)

    def __exit__(self, exc_type, exc, traceback) -> None:
        import mlflow

        mlflow.end_run(status="FAILED" if exc_type else "FINISHED")


def _plain(value):
    """Turn tuples into lists so that yaml.safe_dump writes plain YAML."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
