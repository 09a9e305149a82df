"""Record a version's metrics, apply the quality gate and switch the active version.

A build's codebook version becomes active only when every threshold of ``gate.thresholds``
passes. Activation is one Delta commit to ``active_version`` (one row per database), and the
view ``item_sids_current`` joins item_sids with that row, so readers switch atomically and a
rejected version never shows there.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pipelines.evaluate import Evaluation, EvaluationInputs, evaluate_mapping
from pipelines.report import write_report
from sid import tables
from sid.catalog import read_catalog
from sid.config import PipelineConfig
from sid.errors import QualityGateError
from sid.metrics import GateFailure, check_quality_gate
from sid.tracking import MlflowRun

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "GateResult", "active_version", "create_current_view", "evaluate_build", "publish_evaluation", "write_metrics",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class GateResult:
    """Outcome of evaluating and gating one codebook version.

    metrics: the evaluation's metrics; failures: empty when the gate passed;
    previous_version: the version that was active before, None when there was none.
    """

    codebook_version: str
    metrics: dict[str, float]
    failures: list[GateFailure]
    previous_version: str | None

    def raise_if_failed(self) -> None:
        """Raise QualityGateError naming each failed metric, its value and its threshold."""
        if not self.failures:
            return
        kept = self.previous_version or "none"
        raise QualityGateError(
            f"codebook_version={self.codebook_version} failed the quality gate and was not activated "
            f"(active version stays {kept}): " + "; ".join(failure.message for failure in self.failures)
            + "; change the build or the bounds in gate.thresholds",
            self.failures,
        )


def evaluate_build(
    spark: SparkSession,
    config: PipelineConfig,
    *,
    codebook_version: str,
    tracking: MlflowRun,
    sids: DataFrame,
    embedded: DataFrame,
    items: DataFrame,
    decode: Callable[[np.ndarray], np.ndarray],
    build_metrics: dict[str, float],
) -> GateResult:
    """Evaluate the published ``sids`` of a build, record everything, and activate the
    version when the gate passes. Call :meth:`GateResult.raise_if_failed` afterwards.

    sids: the item_sids rows of the version.
    embedded: item_id, embedding, popularity and priority_hash of every item.
    items: the ingested items, which provide the categories.
    build_metrics: the metrics the build already logged. The gate and sid_metrics see them too.
    """
    inputs = EvaluationInputs(
        sids=sids.select("item_id", "codes", "raw_codes"),
        items=embedded.join(items.select("item_id", "categories"), "item_id"),
        interactions=read_catalog(spark, config.catalog).interactions,
        decode=decode,
        levels=config.quantize.levels,
        codebook_sizes=config.codebook_sizes(),
    )
    evaluation = evaluate_mapping(spark, inputs, config.evaluate, seed=config.run.seed)
    metrics = {**build_metrics, **evaluation.metrics}
    failures = publish_evaluation(spark, config, evaluation, key=codebook_version, tracking=tracking, metrics=metrics)

    previous = active_version(spark, config)
    if not failures:
        _activate(spark, config, codebook_version, tracking.run_id)
    logger.info("quality_gate=%s codebook_version=%s failures=%d previous_active=%s",
                "passed" if not failures else "failed", codebook_version, len(failures), previous)
    return GateResult(codebook_version, evaluation.metrics, failures, previous)


def publish_evaluation(
    spark: SparkSession,
    config: PipelineConfig,
    evaluation: Evaluation,
    *,
    key: str,
    tracking: MlflowRun,
    metrics: dict[str, float],
) -> list[GateFailure]:
    """Write ``metrics`` to sid_metrics under ``key``, log them, the plots and report.md to
    MLflow (artifact folder ``evaluation``), and return the gate's failures."""
    failures = check_quality_gate(metrics, config.gate.thresholds)
    write_metrics(spark, config, key, metrics)
    tracking.log_metrics(evaluation.metrics)
    tracking.set_tags({"quality_gate": "passed" if not failures else "failed"})
    with tempfile.TemporaryDirectory() as folder:
        write_report(evaluation, pathlib.Path(folder), title=key, metrics=metrics,
                     thresholds=config.gate.thresholds, failures=failures)
        tracking.log_artifacts(folder, "evaluation")
    _log_metric_table(key, metrics)
    return failures


def write_metrics(spark: SparkSession, config: PipelineConfig, key: str, metrics: dict[str, float]) -> int:
    """Replace the sid_metrics rows of ``key`` with one row per metric; return the row count."""
    from pyspark.sql import functions as F

    rows = [(key, metric, float(value)) for metric, value in sorted(metrics.items())]
    frame = spark.createDataFrame(rows, "codebook_version STRING, metric STRING, value DOUBLE")
    frame = frame.withColumn("computed_at", F.current_timestamp())
    return tables.write_version(frame, spark, tables.qualified_name(config.tables, "sid_metrics"),
                                schema=tables.SID_METRICS_SCHEMA, key_column="codebook_version", key_value=key)


def active_version(spark: SparkSession, config: PipelineConfig) -> str | None:
    """Return the active codebook version of ``config.tables.database``, or None."""
    from pyspark.sql import functions as F

    table = tables.qualified_name(config.tables, "active_version")
    if not spark.catalog.tableExists(table):
        return None
    rows = spark.table(table).where(F.col("database") == config.tables.database).collect()
    return rows[0]["codebook_version"] if rows else None


def _activate(spark: SparkSession, config: PipelineConfig, codebook_version: str, run_id: str) -> None:
    """Point active_version at ``codebook_version`` and make sure item_sids_current exists."""
    from pyspark.sql import functions as F

    database = config.tables.database
    row = spark.createDataFrame([(database, codebook_version, run_id)],
                                "database STRING, codebook_version STRING, mlflow_run_id STRING")
    table = tables.qualified_name(config.tables, "active_version")
    tables.write_version(row.withColumn("activated_at", F.current_timestamp()), spark, table,
                         schema=tables.ACTIVE_VERSION_SCHEMA, key_column="database", key_value=database)
    create_current_view(spark, config)
    logger.info("active_version database=%s codebook_version=%s", database, codebook_version)


def create_current_view(spark: SparkSession, config: PipelineConfig) -> str:
    """(Re)create the view item_sids_current: the active version's rows minus retired items.

    Returns the view's name. Creates the retired_items table when it does not exist yet.
    """
    database = config.tables.database
    view = tables.qualified_name(config.tables, "item_sids_current")
    item_sids = tables.qualified_name(config.tables, "item_sids")
    active = tables.qualified_name(config.tables, "active_version")
    retired = tables.qualified_name(config.tables, "retired_items")
    tables.ensure_table(spark, retired, tables.RETIRED_ITEMS_SCHEMA)
    spark.sql(
        f"CREATE OR REPLACE VIEW {view} AS SELECT s.* FROM {item_sids} s "
        f"JOIN {active} a ON s.codebook_version = a.codebook_version AND a.`database` = '{database}' "
        f"LEFT ANTI JOIN {retired} r ON r.codebook_version = s.codebook_version AND r.item_id = s.item_id"
    )
    return view


def _log_metric_table(key: str, metrics: dict[str, float]) -> None:
    """Log one INFO line per metric, the table that the job's log keeps."""
    for metric in sorted(metrics):
        logger.info("metric version=%s %s=%.6g", key, metric, metrics[metric])
