"""Incremental run: add the catalog's new items to the active version.

The catalog given to an incremental run is the current snapshot. Its items that the active
version lacks are embedded, encoded with the active version's quantizer, resolved
against every SID already taken, and merged into ``item_sids`` in one commit. A published
SID never changes. Published items missing from the snapshot are marked retired: they leave
``item_sids_current`` and their SIDs stay reserved for ``incremental.retention_days``. A
retired item that comes back within that time gets its old SID back; one that comes back
later is treated as new.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipelines.assign import assign_codes
from pipelines.build import (
    BuildContext,
    BuildSummary,
    check_conservation,
    count_quarantined,
    item_sids_frame,
    write_embeddings,
    write_quarantine,
)
from pipelines.embed import embed_catalog
from pipelines.gate import create_current_view, write_metrics
from pipelines.metrics import bucket_metrics, resolution_metrics
from pipelines.resolve import resolve_sids
from sid import tables
from sid.errors import PipelineError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["IncrementalBuild"]

logger = logging.getLogger(__name__)

# New items up to this count have their ids broadcast to select their embeddings: about
# 40 MB of ids (an estimate), well within a driver's memory.
BROADCAST_NEW_ITEMS = 1_000_000
ITEM_SIDS_COLUMNS = [field.split()[0] for field in tables.ITEM_SIDS_SCHEMA.split(", ")]


class IncrementalBuild:
    """Stages of an incremental run; ``context.version`` is the active version it extends."""

    def __init__(self, context: BuildContext) -> None:
        self.context = context

    # -- inputs ---------------------------------------------------------------------------
    def _published(self) -> DataFrame:
        from pyspark.sql import functions as F

        context = self.context
        return context.spark.table(context.names["item_sids"]).where(F.col("codebook_version") == context.version)

    def _retired(self) -> DataFrame | None:
        from pyspark.sql import functions as F

        context = self.context
        if not context.spark.catalog.tableExists(context.names["retired_items"]):
            return None
        return context.spark.table(context.names["retired_items"]).where(F.col("codebook_version") == context.version)

    def _released(self) -> DataFrame | None:
        """item_id of retired items whose reservation has ended."""
        from pyspark.sql import functions as F

        retired = self._retired()
        if retired is None:
            return None
        return retired.where(F.col("release_after") <= F.current_timestamp()).select("item_id")

    def _holding(self) -> DataFrame:
        """Published rows whose SID is still held: live items and retired ones in retention."""
        published = self._published()
        released = self._released()
        return published if released is None else published.join(released, "item_id", "left_anti")

    def _new_items(self) -> DataFrame:
        """Items of the snapshot with no held SID in the active version."""
        return self.context.ingested().items.join(self._holding().select("item_id"), "item_id", "left_anti")

    # -- stages ---------------------------------------------------------------------------
    def embed(self) -> None:
        context = self.context
        ingested = context.ingested()
        new_items = self._new_items().cache()
        new_count = new_items.count()
        quarantine = ingested.quarantine
        written = 0
        if new_count:
            result = embed_catalog(new_items, context.config, item_count=new_count,
                                   work_dir=context.work_dir / "embed")
            context.tracking.log_metrics(result.metrics, prefix="embed")
            written = write_embeddings(context, result.embeddings, new_items, context.version, only_new=True)
            quarantine = quarantine.unionByName(result.quarantine)
        write_quarantine(context, quarantine)
        logger.info("incremental embed new_items=%d embeddings_inserted=%d version=%s", new_count, written,
                    context.version)
        context.counts["embed"] = new_count
        new_items.unpersist()

    def train(self) -> None:
        logger.info("stage=train skipped: an incremental run encodes with the codebooks of the active version %s",
                    self.context.version)
        self.context.counts["train"] = 0

    def resolve(self) -> None:
        from pyspark.sql import functions as F

        context = self.context
        config = context.config
        quantizer = context.load_quantizer(context.version)
        new_keys = self._new_items().select("item_id", "popularity", "priority_hash").cache()
        new_count = new_keys.count()
        new_ids = new_keys.select("item_id")
        if new_count <= BROADCAST_NEW_ITEMS:
            # Broadcasting the new ids keeps the version's stored embeddings out of a shuffle.
            new_ids = F.broadcast(new_ids)
        vectors = context.stored_embeddings(context.version).join(new_ids, "item_id", "left_semi")
        assigned = assign_codes(vectors, quantizer, top_k=config.quantize.top_k)
        assigned = assigned.join(new_keys, "item_id").persist()
        taken = self._holding().select("codes")
        resolved = resolve_sids(assigned, config.resolve, codebooks=quantizer.codebooks, seed=config.run.seed,
                                taken=taken).persist()
        context.tracking.log_metrics(resolution_metrics(resolved), prefix="resolve")
        frame = item_sids_frame(assigned, resolved, config, context.version, context.tracking.run_id)
        frame = frame.withColumn("run_id", F.lit(context.run_id))
        context.counts["resolve"] = tables.write_version(
            frame, context.spark, context.names["item_sids_staged"], schema=tables.ITEM_SIDS_STAGED_SCHEMA,
            key_column="run_id", key_value=context.run_id,
        )
        resolved.unpersist()
        assigned.unpersist()
        new_keys.unpersist()

    def publish(self) -> None:
        from pyspark.sql import functions as F

        from pipelines.gate import active_version

        context = self.context
        spark, config, version = context.spark, context.config, context.version
        active = active_version(spark, config)
        if active != version:
            raise PipelineError(
                f"run {context.run_id} adds items to codebook_version={version}, but the active version is now "
                f"{active} (a full build finished in between); nothing was merged. Start a new incremental run "
                f"with another --run-id"
            )
        ingested = context.ingested()
        snapshot = ingested.items.select("item_id")
        staged_table = context.names["item_sids_staged"]
        if not spark.catalog.tableExists(staged_table):
            raise PipelineError(f"{staged_table} does not exist: run the resolve stage of run {context.run_id} first")
        staged = spark.table(staged_table).where(F.col("run_id") == context.run_id).cache()
        new_sids = staged.count()
        holding = self._holding()
        # Items of the snapshot that already hold a SID, not counting this run's own rows
        # (a rerun after a finished publish finds them merged already).
        already = (holding.select("item_id").join(staged.select("item_id"), "item_id", "left_anti")
                   .join(snapshot, "item_id", "left_semi").count())
        quarantined = count_quarantined(context)
        check_conservation(ingested.input_rows, new_sids, quarantined, published_before=already)
        self._check_capacity(holding, staged)

        merged = self._merge(staged)
        retired, reactivated = self._retire(snapshot) if config.incremental.retire_missing else (0, 0)
        create_current_view(spark, config)

        current = spark.table(context.names["item_sids_current"])
        metrics = {f"final/{key}": value for key, value in bucket_metrics(current, "codes").items()}
        metrics.update({
            "incremental/items_in": ingested.input_rows, "incremental/new_sids": new_sids,
            "incremental/merged": merged, "incremental/already_published": already,
            "incremental/quarantined": quarantined, "incremental/retired": retired,
            "incremental/reactivated": reactivated, "incremental/current_items": metrics["final/items"],
        })
        context.tracking.log_metrics(metrics)
        write_metrics(spark, config, context.run_id, metrics)
        context.counts["publish"] = merged
        staged.unpersist()
        context.summary = BuildSummary(
            run_id=context.run_id, mode="incremental", codebook_version=version, embedding_version=version,
            items_in=ingested.input_rows, sids_out=new_sids, quarantined=quarantined, metrics=metrics, seconds=0.0,
            mlflow_run_id=context.tracking.run_id,
        )

    def _check_capacity(self, holding: DataFrame, staged: DataFrame) -> None:
        """Refuse to merge when a SID would hold more items than resolve.capacity allows."""
        from pyspark.sql import functions as F

        config = self.context.config
        capacity = 1 if config.resolve.strategy in ("suffix", "ecm", "rrs") else config.resolve.capacity
        rows = (holding.join(staged.select("item_id"), "item_id", "left_anti").select("codes")
                .unionByName(staged.select("codes")))
        over = rows.groupBy("codes").count().where(F.col("count") > capacity)
        worst = over.orderBy(F.col("count").desc()).limit(3).collect()
        if worst:
            examples = ", ".join(f"{list(row['codes'])} x{row['count']}" for row in worst)
            raise PipelineError(
                f"the new SIDs of run {self.context.run_id} would give {over.count()} SID(s) more than "
                f"{capacity} item(s), e.g. {examples}; nothing was merged. Rerun the resolve stage of this run id"
            )

    def _merge(self, staged: DataFrame) -> int:
        """Insert the staged rows into item_sids in one commit; an item whose old SID was
        released (retired past retention) takes its new row. Returns the rows written."""
        from pyspark.sql import functions as F

        context = self.context
        released = self._released()
        source = staged.select(*ITEM_SIDS_COLUMNS)
        if released is not None:
            source = source.join(released.withColumn("_replace", F.lit(True)), "item_id", "left")
        else:
            source = source.withColumn("_replace", F.lit(False))
        source = source.withColumn("_replace", F.coalesce(F.col("_replace"), F.lit(False)))
        view = f"_sid_staged_{context.run_id.replace('-', '_').replace('.', '_')}"
        source.createOrReplaceTempView(view)
        columns = ", ".join(f"`{column}`" for column in ITEM_SIDS_COLUMNS)
        values = ", ".join(f"s.`{column}`" for column in ITEM_SIDS_COLUMNS)
        updates = ", ".join(f"t.`{column}` = s.`{column}`" for column in ITEM_SIDS_COLUMNS)
        statement = (
            f"MERGE INTO {context.names['item_sids']} t USING {view} s "
            f"ON t.codebook_version = s.codebook_version AND t.item_id = s.item_id "
            f"WHEN MATCHED AND s._replace THEN UPDATE SET {updates} "
            f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})"
        )
        try:
            result = tables.with_commit_retries(lambda: context.spark.sql(statement).collect(),
                                                context.names["item_sids"])
        finally:
            context.spark.catalog.dropTempView(view)
        row = result[0].asDict() if result else {}
        written = int(row.get("num_inserted_rows", 0)) + int(row.get("num_updated_rows", 0))
        logger.info("incremental merge version=%s inserted=%s updated=%s", context.version,
                    row.get("num_inserted_rows"), row.get("num_updated_rows"))
        return written

    def _retire(self, snapshot: DataFrame) -> tuple[int, int]:
        """Retire published items the snapshot lacks; un-retire those in retention that came
        back. Returns (newly retired, reactivated)."""
        from pyspark.sql import functions as F

        context = self.context
        spark = context.spark
        table = context.names["retired_items"]
        tables.ensure_table(spark, table, tables.RETIRED_ITEMS_SCHEMA)
        days = context.config.incremental.retention_days
        leaving = (
            self._published().join(snapshot, "item_id", "left_anti")
            .select("item_id", "codebook_version", "codes", "sid")
            .withColumn("retired_at", F.current_timestamp())
            .withColumn("release_after", F.expr(f"current_timestamp() + INTERVAL {int(days)} DAYS"))
            .withColumn("run_id", F.lit(context.run_id))
        )
        retired = tables.insert_missing(leaving, spark, table, schema=tables.RETIRED_ITEMS_SCHEMA,
                                        keys=("codebook_version", "item_id"))
        view = f"_sid_back_{context.run_id.replace('-', '_').replace('.', '_')}"
        snapshot.withColumn("codebook_version", F.lit(context.version)).createOrReplaceTempView(view)
        statement = (f"MERGE INTO {table} t USING {view} s ON t.codebook_version = s.codebook_version "
                     f"AND t.item_id = s.item_id WHEN MATCHED THEN DELETE")
        try:
            result = tables.with_commit_retries(lambda: spark.sql(statement).collect(), table)
        finally:
            spark.catalog.dropTempView(view)
        reactivated = int(result[0].asDict().get("num_deleted_rows", 0)) if result else 0
        logger.info("incremental retire version=%s retired=%d reactivated=%d retention_days=%d",
                    context.version, retired, reactivated, days)
        return retired, reactivated

    def log_summary(self, summary: BuildSummary) -> None:
        metrics = summary.metrics
        logger.info(
            "summary run_id=%s mode=incremental items_in=%d new_sids=%d already_published=%d quarantined=%d "
            "retired=%d reactivated=%d current_items=%d final_collision_rate=%.4f seconds=%.1f "
            "codebook_version=%s mlflow_run_id=%s",
            summary.run_id, summary.items_in, summary.sids_out, metrics["incremental/already_published"],
            summary.quarantined, metrics["incremental/retired"], metrics["incremental/reactivated"],
            metrics["incremental/current_items"], metrics["final/collision_rate"], summary.seconds,
            summary.codebook_version, summary.mlflow_run_id,
        )
