"""Builds in stages: a full build publishes a new codebook version; an incremental run adds
the catalog's new items to the active version without moving a published SID.

Both run as four stages: ``embed``, ``train``, ``resolve`` and ``publish``. A stage reads what
the earlier stages of the same run id wrote: Delta rows keyed by version or run id, and the
quantizer saved in the MLflow run. So Airflow can run one task per stage. Rerunning a run id
replaces that run's rows instead of adding copies. Nothing becomes visible in
``item_sids_current`` before ``publish`` has checked the counts and the quality gate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import pathlib
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pipelines.assign import assign_codes
from pipelines.embed import embed_catalog, model_name
from pipelines.gate import evaluate_build
from pipelines.ingest import IngestResult, ingest_catalog
from pipelines.metrics import level_metrics, reconstruction_metrics, resolution_metrics
from pipelines.resolve import resolve_sids
from pipelines.sweep import train_candidates
from pipelines.train import write_training_sample
from sid import tables
from sid.config import PipelineConfig, config_hash
from sid.errors import ConfigError, PipelineError
from sid.tracking import MlflowRun

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["MODES", "STAGES", "BuildContext", "BuildSummary", "check_run_id", "new_run_id", "run_build"]

logger = logging.getLogger(__name__)

STAGES = ("embed", "train", "resolve", "publish")
MODES = ("full", "incremental")
# Run ids name Delta rows and MLflow tags, and appear inside SQL string literals.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# The SID string's level letters come from this alphabet, so at most 26 levels.
SID_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass
class BuildSummary:
    """Counts, versions and metrics of one build; ``metrics`` uses the MLflow keys.

    run_id is the pipeline run id; mlflow_run_id the MLflow run it logged to. For an
    incremental run, codebook_version is the active version it extended and sids_out the
    number of new SIDs.
    """

    run_id: str
    mode: str
    codebook_version: str
    embedding_version: str
    items_in: int
    sids_out: int
    quarantined: int
    metrics: dict[str, float]
    seconds: float
    mlflow_run_id: str = ""


def new_run_id() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id):
        raise ConfigError(
            f"--run-id {run_id!r} is invalid; use 1 to 100 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit, e.g. --run-id nightly-20261204"
        )
    return run_id


class BuildContext:
    """State shared by the stages of one process: Spark, config, run id, version, MLflow
    run, and lazily computed inputs (the ingested catalog, the quantizer)."""

    def __init__(self, spark: SparkSession, config: PipelineConfig, *, run_id: str, version: str,
                 tracking: MlflowRun) -> None:
        self.spark = spark
        self.config = config
        self.run_id = run_id
        self.version = version
        self.tracking = tracking
        self.counts: dict[str, int] = {}
        self.work_dir = pathlib.Path(config.run.work_dir).resolve() / run_id
        self.names = {key: tables.qualified_name(config.tables, key) for key in (
            "item_embeddings", "codebooks", "item_sids", "quarantine", "item_sids_staged", "retired_items",
            "sid_version_diff", "item_sids_current",
        )}
        self._ingested: IngestResult | None = None
        self._item_count = 0
        self.quantizer = None
        self.summary: BuildSummary | None = None
        self.gate = None

    def ingested(self) -> IngestResult:
        """Return the catalog after ingest (items cached). Ingest is deterministic, so each
        stage process can redo it."""
        if self._ingested is None:
            ingested = ingest_catalog(self.spark, self.config)
            items = ingested.items.cache()
            self._item_count = items.count()
            self._ingested = dataclasses.replace(ingested, items=items)
        return self._ingested

    @property
    def item_count(self) -> int:
        self.ingested()
        return self._item_count

    def stored_embeddings(self, version: str) -> DataFrame:
        """Return item_id and embedding of ``version`` from the item_embeddings table."""
        from pyspark.sql import functions as F

        return (self.spark.table(self.names["item_embeddings"])
                .where(F.col("embedding_version") == version).select("item_id", "embedding"))

    def item_keys(self) -> DataFrame:
        """Return item_id, popularity and priority_hash of the ingested catalog (cached)."""
        return self.ingested().items.select("item_id", "popularity", "priority_hash")

    def embeddings(self, version: str) -> DataFrame:
        """Return item_id, embedding of ``version`` joined with popularity and priority_hash of the catalog."""
        return self.stored_embeddings(version).join(self.item_keys(), "item_id")

    def load_quantizer(self, version: str):
        """Return the quantizer of codebook ``version``: the one trained in this process, or
        the ``quantizer/`` artifact of the MLflow run that wrote the version's codebooks."""
        if self.quantizer is not None:
            return self.quantizer
        import mlflow

        from pyspark.sql import functions as F

        from sid.quantize import load_quantizer

        rows = (self.spark.table(self.names["codebooks"]).where(F.col("codebook_version") == version)
                .select("mlflow_run_id").distinct().collect())
        if not rows:
            raise PipelineError(
                f"codebook_version={version} has no rows in {self.names['codebooks']}; "
                f"run the train stage of that run id first (jobs/build_sids.py --stage train --run-id {version})"
            )
        mlflow_run = rows[0]["mlflow_run_id"]
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = mlflow.artifacts.download_artifacts(run_id=mlflow_run, artifact_path="quantizer", dst_path=folder)
            except Exception as error:  # noqa: BLE001 - MLflow raises several types for a missing artifact
                raise PipelineError(
                    f"MLflow run {mlflow_run} (codebook_version={version}) has no quantizer/ artifact at "
                    f"{self.config.mlflow.tracking_uri}: {error}; point mlflow.tracking_uri at the store of the "
                    f"build that trained it, or rerun that build's train stage"
                ) from error
            self.quantizer = load_quantizer(path)
        logger.info("quantizer of codebook_version=%s loaded from MLflow run %s", version, mlflow_run)
        return self.quantizer

    def codebook_sizes(self, version: str) -> list[int]:
        """Codes per level of the stored codebooks (a sweep winner may differ from the config)."""
        from pyspark.sql import functions as F

        rows = (self.spark.table(self.names["codebooks"]).where(F.col("codebook_version") == version)
                .groupBy("level").count().orderBy("level").collect())
        return [int(row["count"]) for row in rows]


@contextlib.contextmanager
def _stage(name: str, counts: dict[str, int]) -> Iterator[None]:
    """Log one INFO line when a stage starts and one with its row count and time at the end."""
    logger.info("stage=%s status=started", name)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    logger.info("stage=%s status=finished rows=%d seconds=%.1f", name, counts.get(name, -1), elapsed)


def run_build(spark: SparkSession, config: PipelineConfig, *, run_id: str | None = None, mode: str = "full",
              stages: Sequence[str] = STAGES) -> BuildSummary | None:
    """Run ``stages`` of a ``mode`` build for ``run_id``; return the summary after ``publish``.

    A full build's codebook version is its run id. Raises PipelineError when items in !=
    SIDs out + quarantined, and QualityGateError (after logging the summary) when the new
    version fails the gate.
    """
    from pipelines.incremental import IncrementalBuild

    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r} is invalid; choose one of {', '.join(MODES)}")
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        raise ConfigError(f"--stage {unknown[0]!r} is invalid; choose all or one of {', '.join(STAGES)}")
    if run_id is None:
        if list(stages) != list(STAGES):
            raise ConfigError("--stage needs --run-id, so that the later stages find this stage's output")
        run_id = new_run_id()
    check_run_id(run_id)
    started = time.perf_counter()
    tables.ensure_database(spark, config.tables)

    with MlflowRun(config.mlflow, config, run_name=f"{mode}-{run_id}", pipeline_run_id=run_id) as tracking:
        version = run_id if mode == "full" else _incremental_version(spark, config, tracking)
        tracking.set_tags({"codebook_version": version, "config_hash": config_hash(config), "mode": mode})
        context = BuildContext(spark, config, run_id=run_id, version=version, tracking=tracking)
        logger.info("run_id=%s mode=%s codebook_version=%s stages=%s mlflow_run_id=%s",
                    run_id, mode, version, ",".join(stages), tracking.run_id)
        runner = FullBuild(context) if mode == "full" else IncrementalBuild(context)
        for stage in STAGES:
            if stage in stages:
                with _stage(stage, context.counts):
                    getattr(runner, stage)()
        summary = context.summary
        if summary is not None:
            summary.seconds = time.perf_counter() - started
            tracking.log_metrics({"seconds": summary.seconds})
    if "publish" in stages:
        shutil.rmtree(context.work_dir, ignore_errors=True)
    if summary is not None:
        runner.log_summary(summary)
    if context.gate is not None:
        context.gate.raise_if_failed()
    return summary


def _incremental_version(spark: SparkSession, config: PipelineConfig, tracking: MlflowRun) -> str:
    """Return the version an incremental run extends: the one its first stage recorded in
    the MLflow run, so that all stages agree, else the active version."""
    import mlflow

    from pipelines.gate import active_version

    if tracking.resumed:
        recorded = mlflow.get_run(tracking.run_id).data.tags.get("codebook_version")
        if recorded:
            return recorded
    version = active_version(spark, config)
    if version is None:
        raise PipelineError(
            f"incremental mode extends the active version, but database {config.tables.database} has none; "
            f"run a full build first (jobs/build_sids.py --mode full)"
        )
    return version


class FullBuild:
    """Stages of a full build; the codebook version is the run id."""

    def __init__(self, context: BuildContext) -> None:
        self.context = context

    def embed(self) -> None:
        context = self.context
        ingested = context.ingested()
        result = embed_catalog(ingested.items, context.config, item_count=context.item_count,
                               work_dir=context.work_dir / "embed")
        context.tracking.log_metrics(result.metrics, prefix="embed")
        context.counts["embed"] = write_embeddings(context, result.embeddings, ingested.items, context.version)
        # Items with no usable modality are quarantined with the ingest rejects.
        write_quarantine(context, ingested.quarantine.unionByName(result.quarantine))

    def train(self) -> None:
        context = self.context
        sample_folder = context.work_dir / "train_sample"
        context.counts["train"] = write_training_sample(context.stored_embeddings(context.version),
                                                        context.item_keys(), context.config, sample_folder)
        trained = train_candidates(context.embeddings(context.version), sample_folder, context.config)
        _write_codebooks(context, trained.codebooks)
        context.tracking.log_metrics(trained.stats, prefix="train")
        context.quantizer = trained.quantizer

    def resolve(self) -> None:
        context = self.context
        config = context.config
        quantizer = context.load_quantizer(context.version)
        # Encoding the stored rows before joining the keys keeps the embeddings out of the join's shuffle.
        assigned = assign_codes(context.stored_embeddings(context.version), quantizer, top_k=config.quantize.top_k)
        assigned = assigned.join(context.item_keys(), "item_id").persist()
        resolved = resolve_sids(assigned, config.resolve, codebooks=quantizer.codebooks, seed=config.run.seed).persist()
        context.tracking.log_metrics(resolution_metrics(resolved), prefix="resolve")
        context.tracking.log_metrics(reconstruction_metrics(assigned), prefix="quantize")
        frame = item_sids_frame(assigned, resolved, config, context.version, context.tracking.run_id)
        context.counts["resolve"] = tables.write_version(
            frame, context.spark, context.names["item_sids"], schema=tables.ITEM_SIDS_SCHEMA,
            key_column="codebook_version", key_value=context.version,
        )
        resolved.unpersist()
        assigned.unpersist()

    def publish(self) -> None:
        from pyspark.sql import functions as F

        from pipelines.diff import diff_versions

        context = self.context
        spark, config, version = context.spark, context.config, context.version
        ingested = context.ingested()
        sids = spark.table(context.names["item_sids"]).where(F.col("codebook_version") == version)
        sids_out = sids.count()
        quarantined = count_quarantined(context)
        check_conservation(ingested.input_rows, sids_out, quarantined)

        sizes = context.codebook_sizes(version)
        metrics = {key: value for key, value in context.tracking.logged_metrics().items()
                   if key.split("/")[0] in ("embed", "train", "resolve", "quantize")}
        counts = {"items_in": ingested.input_rows, "sids_out": sids_out, "quarantined": quarantined}
        raw_levels = {f"quantize/{key}": value for key, value in level_metrics(sids, "raw_codes", sizes).items()}
        context.tracking.log_metrics({**raw_levels, **counts})
        metrics.update(raw_levels)
        metrics.update(counts)

        quantizer = context.load_quantizer(version)
        gate = evaluate_build(spark, config, codebook_version=version, tracking=context.tracking, sids=sids,
                              embedded=context.embeddings(version), items=ingested.items,
                              decode=quantizer.decode, build_metrics=metrics)
        context.counts["publish"] = int(gate.metrics["coverage/covered_items"])
        metrics.update(gate.metrics)
        if gate.previous_version is not None and gate.previous_version != version:
            diff = diff_versions(spark, config, from_version=gate.previous_version, to_version=version)
            context.tracking.log_metrics(diff, prefix="diff")
            context.tracking.log_dict({"from_version": gate.previous_version, "to_version": version, **diff},
                                      "diff/version_diff.json")
            metrics.update({f"diff/{key}": value for key, value in diff.items()})
        context.gate = gate
        context.summary = BuildSummary(
            run_id=context.run_id, mode="full", codebook_version=version, embedding_version=version,
            items_in=ingested.input_rows, sids_out=sids_out, quarantined=quarantined, metrics=metrics,
            seconds=0.0, mlflow_run_id=context.tracking.run_id,
        )

    def log_summary(self, summary: BuildSummary) -> None:
        metrics = summary.metrics
        config = self.context.config
        # A sweep winner may have other levels than the quantize section, so the levels
        # come from the metrics of the stored codebooks.
        levels = sum(1 for key in metrics if re.fullmatch(r"quantize/level_\d+/utilization", key))
        utilization = " ".join(
            f"L{level}={metrics[f'quantize/level_{level}/utilization']:.3f}" for level in range(levels)
        )
        logger.info(
            "summary run_id=%s mode=full items_in=%d sids_out=%d quarantined=%d strategy=%s raw_collision_rate=%.4f "
            "final_collision_rate=%.4f utilization %s gini_raw=%.4f gini_final=%.4f seconds=%.1f "
            "codebook_version=%s mlflow_run_id=%s",
            summary.run_id, summary.items_in, summary.sids_out, summary.quarantined, config.resolve.strategy,
            metrics["raw/collision_rate"], metrics["final/collision_rate"], utilization,
            metrics["raw/gini"], metrics["final/gini"], summary.seconds, summary.codebook_version,
            summary.mlflow_run_id,
        )
        if "diff/changed" in metrics:
            logger.info("version_diff from=%s to=%s unchanged=%d changed=%d added=%d removed=%d",
                        self.context.gate.previous_version, summary.codebook_version, metrics["diff/unchanged"],
                        metrics["diff/changed"], metrics["diff/added"], metrics["diff/removed"])


def write_embeddings(context: BuildContext, embeddings: DataFrame, items: DataFrame, version: str, *,
                     only_new: bool = False) -> int:
    """Write the ``item_embeddings`` rows of ``version``; return the rows written.

    A full build replaces the version's rows; an incremental run (``only_new``) inserts the
    rows of items the version lacks.
    """
    from pyspark.sql import functions as F

    rows = (
        embeddings.join(items.select("item_id", "item_text"), "item_id")
        .withColumn("model", F.lit(model_name(context.config.embed)))
        .withColumn("embedding_version", F.lit(version))
        .withColumn("created_at", F.current_timestamp())
    )
    table = context.names["item_embeddings"]
    if only_new:
        return tables.insert_missing(rows, context.spark, table, schema=tables.ITEM_EMBEDDINGS_SCHEMA,
                                     keys=("embedding_version", "item_id"))
    return tables.write_version(rows, context.spark, table, schema=tables.ITEM_EMBEDDINGS_SCHEMA,
                                key_column="embedding_version", key_value=version)


def write_quarantine(context: BuildContext, quarantine: DataFrame) -> int:
    """Replace this run id's quarantine rows with ``quarantine``; return the row count."""
    from pyspark.sql import functions as F

    frame = quarantine.withColumn("run_id", F.lit(context.run_id)).withColumn("quarantined_at", F.current_timestamp())
    return tables.write_version(frame, context.spark, context.names["quarantine"], schema=tables.QUARANTINE_SCHEMA,
                                key_column="run_id", key_value=context.run_id)


def count_quarantined(context: BuildContext) -> int:
    from pyspark.sql import functions as F

    table = context.names["quarantine"]
    if not context.spark.catalog.tableExists(table):
        raise PipelineError(
            f"{table} does not exist: the embed stage of run {context.run_id} has not run; run it first"
        )
    return context.spark.table(table).where(F.col("run_id") == context.run_id).count()


def _write_codebooks(context: BuildContext, codebooks) -> None:
    from pyspark.sql import functions as F

    config = context.config
    rows = [
        (context.version, level, code, [float(value) for value in centroid])
        for level, codebook in enumerate(codebooks)
        for code, centroid in enumerate(codebook)
    ]
    frame = (
        context.spark.createDataFrame(rows, "codebook_version STRING, level INT, code INT, centroid ARRAY<FLOAT>")
        .withColumn("method", F.lit(config.quantize.method))
        .withColumn("mlflow_run_id", F.lit(context.tracking.run_id))
        .withColumn("config_hash", F.lit(config_hash(config)))
        .withColumn("created_at", F.current_timestamp())
    )
    tables.write_version(frame, context.spark, context.names["codebooks"], schema=tables.CODEBOOKS_SCHEMA,
                         key_column="codebook_version", key_value=context.version)


def sid_string_column(column: str = "codes"):
    """Spark expression of the SID string, e.g. ``<a_17><b_203><c_5>``, from an array of codes."""
    from pyspark.sql import functions as F

    return F.expr(
        f"array_join(transform({column}, (code, level) -> "
        f"concat('<', substr('{SID_LETTERS}', level + 1, 1), '_', cast(code AS STRING), '>')), '')"
    )


def item_sids_frame(assigned: DataFrame, resolved: DataFrame, config: PipelineConfig,
                    version: str, mlflow_run_id: str) -> DataFrame:
    """Return the item_sids rows of ``resolved``, with raw codes and popularity from ``assigned``."""
    from pyspark.sql import functions as F

    return (
        resolved.join(assigned.select("item_id", "raw_codes", "popularity"), "item_id")
        .withColumn("codebook_version", F.lit(version))
        .withColumn("sid", sid_string_column())
        .withColumn("strategy", F.lit(config.resolve.strategy))
        .withColumnRenamed("step", "resolution_step")
        .withColumn("mlflow_run_id", F.lit(mlflow_run_id))
        .withColumn("assigned_at", F.current_timestamp())
    )


def check_conservation(items_in: int, sids_out: int, quarantined: int, *, published_before: int = 0) -> None:
    """Raise PipelineError unless items_in = published_before + sids_out + quarantined."""
    if items_in != published_before + sids_out + quarantined:
        before = f"published_before={published_before} + " if published_before else ""
        raise PipelineError(
            f"item count not conserved: items_in={items_in} but {before}sids_out={sids_out} + "
            f"quarantined={quarantined} = {published_before + sids_out + quarantined}; "
            f"the run is not published"
        )
