"""Full build: ingest, embed, train, assign, resolve and publish one codebook version."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import pathlib
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pipelines.assign import assign_codes
from pipelines.embed import embed_catalog, model_name
from pipelines.gate import evaluate_build
from pipelines.ingest import ingest_catalog
from pipelines.metrics import bucket_metrics, level_metrics, reconstruction_metrics, resolution_metrics
from pipelines.resolve import resolve_sids
from pipelines.sweep import train_candidates
from pipelines.train import write_training_sample
from sid import tables
from sid.config import PipelineConfig, config_hash
from sid.errors import PipelineError
from sid.tracking import MlflowRun

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["BuildSummary", "run_build"]

logger = logging.getLogger(__name__)

# The SID string's level letters come from this alphabet, so at most 26 levels.
SID_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass
class BuildSummary:
    """Counts, versions and metrics of one build; ``metrics`` uses the MLflow keys."""

    run_id: str
    codebook_version: str
    embedding_version: str
    items_in: int
    sids_out: int
    quarantined: int
    metrics: dict[str, float]
    seconds: float


@contextlib.contextmanager
def _stage(name: str, counts: dict[str, int]) -> Iterator[None]:
    """Log one INFO line when a stage starts and one with its row count and time at the end."""
    logger.info("stage=%s status=started", name)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    logger.info("stage=%s status=finished rows=%d seconds=%.1f", name, counts.get(name, -1), elapsed)


def run_build(spark: SparkSession, config: PipelineConfig) -> BuildSummary:
    """Run every stage and publish a new codebook version; return the summary.

    Raises PipelineError when items in != SIDs out + quarantined.
    """
    started = time.perf_counter()
    now = datetime.datetime.now(datetime.timezone.utc)
    codebook_version = f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    embedding_version = codebook_version
    counts: dict[str, int] = {}
    names = {key: tables.qualified_name(config.tables, key) for key in
             ("item_embeddings", "codebooks", "item_sids", "quarantine")}
    tables.ensure_database(spark, config.tables)

    with MlflowRun(config.mlflow, config, run_name=f"build-{codebook_version}") as tracking:
        run_id = tracking.run_id
        tracking.set_tags({"codebook_version": codebook_version, "config_hash": config_hash(config)})
        work_dir = pathlib.Path(config.run.work_dir).resolve() / run_id

        with _stage("ingest", counts):
            ingested = ingest_catalog(spark, config)
            items = ingested.items.cache()
            counts["ingest"] = items.count()

        with _stage("embed", counts):
            embed_result = embed_catalog(items, config, item_count=counts["ingest"], work_dir=work_dir / "embed")
            tracking.log_metrics(embed_result.metrics, prefix="embed")
            # Items with no usable modality are published in quarantine with the ingest rejects.
            ingested = dataclasses.replace(
                ingested, quarantine=ingested.quarantine.unionByName(embed_result.quarantine))
            embedded = _write_embeddings(spark, embed_result.embeddings, items, config, names["item_embeddings"],
                                         embedding_version)
            counts["embed"] = embedded.count()

        with _stage("train", counts):
            sample_folder = work_dir / "train_sample"
            sample_size = write_training_sample(embedded, config, sample_folder)
            trained = train_candidates(embedded, sample_folder, config)
            counts["train"] = sample_size
            _write_codebooks(spark, trained.codebooks, config, names["codebooks"], codebook_version, run_id)
            tracking.log_metrics(trained.stats, prefix="train")

        with _stage("assign", counts):
            assigned = assign_codes(embedded, trained.quantizer, top_k=config.quantize.top_k)
            assigned = assigned.join(embedded.select("item_id", "popularity", "priority_hash"), "item_id")
            assigned = assigned.persist()
            counts["assign"] = assigned.count()

        with _stage("resolve", counts):
            resolved = resolve_sids(assigned, config.resolve, codebooks=trained.codebooks, seed=config.run.seed)
            resolved = resolved.persist()
            tracking.log_metrics(resolution_metrics(resolved), prefix="resolve")
            published = _item_sids_frame(assigned, resolved, config, codebook_version, run_id)
            counts["resolve"] = tables.write_version(
                published, spark, names["item_sids"], schema=tables.ITEM_SIDS_SCHEMA,
                key_column="codebook_version", key_value=codebook_version,
            )

        with _stage("publish", counts):
            quarantine = _quarantine_frame(ingested.quarantine, run_id)
            quarantined = tables.write_version(
                quarantine, spark, names["quarantine"], schema=tables.QUARANTINE_SCHEMA,
                key_column="run_id", key_value=run_id,
            )
            counts["publish"] = counts["resolve"] + quarantined

        sids = spark.table(names["item_sids"]).where(f"codebook_version = '{codebook_version}'")
        metrics = _corpus_metrics(assigned, sids, config)
        metrics.update({"items_in": ingested.input_rows, "sids_out": counts["resolve"], "quarantined": quarantined})
        tracking.log_metrics(metrics)
        _check_conservation(ingested.input_rows, counts["resolve"], quarantined)

        with _stage("evaluate", counts):
            gate = evaluate_build(spark, config, codebook_version=codebook_version, tracking=tracking, sids=sids,
                                  embedded=embedded, items=items, decode=trained.quantizer.decode,
                                  build_metrics=metrics)
            counts["evaluate"] = int(gate.metrics["coverage/covered_items"])
            metrics.update(gate.metrics)

        assigned.unpersist()
        items.unpersist()
        shutil.rmtree(work_dir, ignore_errors=True)
        summary = BuildSummary(
            run_id=run_id, codebook_version=codebook_version, embedding_version=embedding_version,
            items_in=ingested.input_rows, sids_out=counts["resolve"], quarantined=quarantined,
            metrics=metrics, seconds=time.perf_counter() - started,
        )
        tracking.log_metrics({"seconds": summary.seconds})
    _log_summary(summary, config)
    gate.raise_if_failed()
    return summary


def _write_embeddings(spark, embeddings: DataFrame, items: DataFrame, config: PipelineConfig,
                      table: str, version: str) -> DataFrame:
    """Write ``item_embeddings`` for ``version`` and return it joined with item attributes."""
    from pyspark.sql import functions as F

    rows = (
        embeddings.join(items.select("item_id", "item_text"), "item_id")
        .withColumn("model", F.lit(model_name(config.embed)))
        .withColumn("embedding_version", F.lit(version))
        .withColumn("created_at", F.current_timestamp())
    )
    tables.write_version(rows, spark, table, schema=tables.ITEM_EMBEDDINGS_SCHEMA,
                         key_column="embedding_version", key_value=version)
    stored = spark.table(table).where(F.col("embedding_version") == version).select("item_id", "embedding")
    return stored.join(items.select("item_id", "popularity", "priority_hash"), "item_id")


def _write_codebooks(spark, codebooks, config: PipelineConfig, table: str, version: str, run_id: str) -> None:
    from pyspark.sql import functions as F

    rows = [
        (version, level, code, [float(value) for value in centroid])
        for level, codebook in enumerate(codebooks)
        for code, centroid in enumerate(codebook)
    ]
    frame = (
        spark.createDataFrame(rows, "codebook_version STRING, level INT, code INT, centroid ARRAY<FLOAT>")
        .withColumn("method", F.lit(config.quantize.method))
        .withColumn("mlflow_run_id", F.lit(run_id))
        .withColumn("config_hash", F.lit(config_hash(config)))
        .withColumn("created_at", F.current_timestamp())
    )
    tables.write_version(frame, spark, table, schema=tables.CODEBOOKS_SCHEMA,
                         key_column="codebook_version", key_value=version)


def _item_sids_frame(assigned: DataFrame, resolved: DataFrame, config: PipelineConfig,
                     version: str, run_id: str) -> DataFrame:
    from pyspark.sql import functions as F

    sid_string = F.expr(
        f"array_join(transform(codes, (code, level) -> "
        f"concat('<', substr('{SID_LETTERS}', level + 1, 1), '_', cast(code AS STRING), '>')), '')"
    )
    return (
        resolved.join(assigned.select("item_id", "raw_codes", "popularity"), "item_id")
        .withColumn("codebook_version", F.lit(version))
        .withColumn("sid", sid_string)
        .withColumn("strategy", F.lit(config.resolve.strategy))
        .withColumnRenamed("step", "resolution_step")
        .withColumn("mlflow_run_id", F.lit(run_id))
        .withColumn("assigned_at", F.current_timestamp())
    )


def _quarantine_frame(quarantine: DataFrame, run_id: str) -> DataFrame:
    from pyspark.sql import functions as F

    return quarantine.withColumn("run_id", F.lit(run_id)).withColumn("quarantined_at", F.current_timestamp())


def _corpus_metrics(assigned: DataFrame, sids: DataFrame, config: PipelineConfig) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for key, value in bucket_metrics(assigned, "raw_codes").items():
        metrics[f"raw/{key}"] = value
    for key, value in bucket_metrics(sids, "codes").items():
        metrics[f"final/{key}"] = value
    for key, value in level_metrics(assigned, "raw_codes", config.codebook_sizes()).items():
        metrics[f"quantize/{key}"] = value
    for key, value in reconstruction_metrics(assigned).items():
        metrics[f"quantize/{key}"] = value
    return metrics


def _check_conservation(items_in: int, sids_out: int, quarantined: int) -> None:
    if items_in != sids_out + quarantined:
        raise PipelineError(
            f"item count not conserved: items_in={items_in} but sids_out={sids_out} + "
            f"quarantined={quarantined} = {sids_out + quarantined}; the run is not published as complete"
        )


def _log_summary(summary: BuildSummary, config: PipelineConfig) -> None:
    metrics = summary.metrics
    utilization = " ".join(
        f"L{level}={metrics.get(f'quantize/level_{level}/utilization', float('nan')):.3f}"
        for level in range(config.quantize.levels)
    )
    logger.info(
        "summary items_in=%d sids_out=%d quarantined=%d strategy=%s raw_collision_rate=%.4f "
        "final_collision_rate=%.4f utilization %s gini_raw=%.4f gini_final=%.4f seconds=%.1f "
        "codebook_version=%s mlflow_run_id=%s",
        summary.items_in, summary.sids_out, summary.quarantined, config.resolve.strategy,
        metrics["raw/collision_rate"], metrics["final/collision_rate"], utilization,
        metrics["raw/gini"], metrics["final/gini"], summary.seconds, summary.codebook_version, summary.run_id,
    )
