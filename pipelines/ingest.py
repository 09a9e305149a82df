"""Ingest stage: canonical items with text, popularity and priority keys, plus quarantine."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import pandas as pd

from sid.catalog import read_catalog
from sid.config import PipelineConfig
from sid.embed.text import render_item_text, template_fields
from sid.errors import CatalogError, ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["IngestResult", "ingest_catalog", "priority_hash_column", "quarantine_rows"]

logger = logging.getLogger(__name__)

REASON_MISSING_ID = "missing item_id"
REASON_DUPLICATE = "duplicate item_id: another row of this id was kept (smallest sha256 of the record)"
REASON_NO_TEXT = "no text: every field named by embed.text_template is missing"


@dataclasses.dataclass
class IngestResult:
    """Valid items (one row per item_id) and the input rows that were set aside.

    items: item_id, item_text, popularity, priority_hash and the canonical columns.
    quarantine: item_id, stage, reason, raw_record.
    input_rows: number of catalog rows read (after run.item_limit).
    """

    items: DataFrame
    quarantine: DataFrame
    input_rows: int


def priority_hash_column(seed: int, column: str = "item_id"):
    """Spark column equal to :func:`sid.codes.priority_hash` of ``column``."""
    from pyspark.sql import functions as F

    return F.sha2(F.concat(F.lit(f"{seed}:"), F.col(column)), 256)


def quarantine_rows(frame: DataFrame, stage: str, reason: str) -> DataFrame:
    """Project rows of ``frame`` (item_id, raw_record) onto the quarantine columns."""
    from pyspark.sql import functions as F

    return frame.select(
        "item_id", F.lit(stage).alias("stage"), F.lit(reason).alias("reason"), "raw_record"
    )


def ingest_catalog(spark: SparkSession, config: PipelineConfig) -> IngestResult:
    """Read the catalog, set aside unusable rows and attach text, popularity and priority."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    catalog = read_catalog(spark, config.catalog)
    rows = catalog.items.withColumn("priority_hash", priority_hash_column(config.run.seed))
    if config.run.item_limit is not None:
        rows = _limit_items(rows, config.run.item_limit)
    if config.run.partitions is not None:
        rows = rows.repartition(config.run.partitions)
    rows = rows.cache()
    input_rows = rows.count()
    if input_rows == 0:
        raise CatalogError(
            f"the catalog at catalog.path={config.catalog.path} holds no item rows; check the path and format"
        )

    # Rows without an id cannot be published at all.
    missing_id = F.col("item_id").isNull() | (F.col("item_id") == "")
    quarantined = quarantine_rows(rows.where(missing_id), "ingest", REASON_MISSING_ID)
    rows = rows.where(~missing_id)

    # One row per item_id, chosen by content so that input order cannot change the choice.
    rank = Window.partitionBy("item_id").orderBy(F.sha2(F.col("raw_record"), 256), F.col("raw_record"))
    rows = rows.withColumn("_copy", F.row_number().over(rank))
    quarantined = quarantined.unionByName(quarantine_rows(rows.where("_copy > 1"), "ingest", REASON_DUPLICATE))
    rows = rows.where("_copy = 1").drop("_copy")

    # Item text from the template. With text as the only modality, items with no text are
    # set aside here. With image or collaborative vectors configured, they go on with "", and
    # the embed stage quarantines those that lack every modality.
    rows = rows.withColumn("item_text", _item_text_column(rows, config))
    no_text = F.col("item_text").isNull() | (F.col("item_text") == "")
    if _text_only(config):
        quarantined = quarantined.unionByName(quarantine_rows(rows.where(no_text), "ingest", REASON_NO_TEXT))
        rows = rows.where(~no_text)
    else:
        rows = rows.withColumn("item_text", F.coalesce(F.col("item_text"), F.lit("")))

    items = rows.join(_popularity(catalog.interactions), on="item_id", how="left").fillna(0, ["popularity"])
    return IngestResult(items=items, quarantine=quarantined, input_rows=input_rows)


def _text_only(config: PipelineConfig) -> bool:
    return config.embed.image.source == "none" and config.embed.collaborative.method == "none"


def _limit_items(rows: DataFrame, limit: int) -> DataFrame:
    """Keep every row of the ``limit`` item_ids with the smallest priority hash."""
    from pyspark.sql import functions as F

    chosen = rows.select("item_id", "priority_hash").distinct().orderBy("priority_hash").limit(limit)
    return rows.join(F.broadcast(chosen.select("item_id")), on="item_id", how="inner")


def _popularity(interactions: DataFrame | None):
    """Return (item_id, popularity) with the interaction count of each item."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    if interactions is None:
        spark = SparkSession.getActiveSession()
        return spark.createDataFrame([], "item_id STRING, popularity BIGINT")
    return interactions.groupBy("item_id").agg(F.count(F.lit(1)).cast("bigint").alias("popularity"))


def _item_text_column(rows: DataFrame, config: PipelineConfig):
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    embed = config.embed
    fields = template_fields(embed.text_template)
    unknown = [field for field in fields if field not in rows.columns]
    if unknown:
        raise ConfigError(
            f"embed.text_template names field(s) {unknown} that the catalog lacks; "
            f"available columns: {sorted(rows.columns)}"
        )
    template = list(embed.text_template)
    separator = embed.text_separator
    missing_values = list(embed.missing_values)

    @pandas_udf("string")
    def render(fields_frame: pd.DataFrame) -> pd.Series:
        records = fields_frame.to_dict(orient="records")
        return pd.Series(
            [render_item_text(record, template, separator=separator, missing_values=missing_values) for record in records]
        )

    return render(F.struct(*[F.col(field) for field in fields]))
