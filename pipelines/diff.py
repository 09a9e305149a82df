"""Version diff: the items whose SID changed between two codebook versions.

After a full build, downstream generative models must retrain the items whose SID moved.
``diff_versions`` writes one ``sid_version_diff`` row per item whose SID differs (changed,
added or removed) and returns the counts, unchanged items included.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sid import tables
from sid.config import PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["diff_versions"]

logger = logging.getLogger(__name__)


def diff_versions(spark: SparkSession, config: PipelineConfig, *, from_version: str, to_version: str) -> dict[str, float]:
    """Compare the SIDs of two versions in item_sids; return counts keyed unchanged, changed,
    added, removed and changed_share (changed / items in both).

    Items retired from ``from_version`` count as absent from it. The rows for the pair are
    replaced in ``sid_version_diff`` (keyed by to_version), so a rerun leaves one copy.
    """
    from pyspark.sql import functions as F

    item_sids = spark.table(tables.qualified_name(config.tables, "item_sids"))
    old = item_sids.where(F.col("codebook_version") == from_version).select("item_id", F.col("sid").alias("old_sid"))
    retired = tables.qualified_name(config.tables, "retired_items")
    if spark.catalog.tableExists(retired):
        gone = spark.table(retired).where(F.col("codebook_version") == from_version).select("item_id")
        old = old.join(gone, "item_id", "left_anti")
    new = item_sids.where(F.col("codebook_version") == to_version).select("item_id", F.col("sid").alias("new_sid"))
    change = (
        F.when(F.col("old_sid").isNull(), F.lit("added"))
        .when(F.col("new_sid").isNull(), F.lit("removed"))
        .when(F.col("old_sid") != F.col("new_sid"), F.lit("changed"))
        .otherwise(F.lit("unchanged"))
    )
    joined = old.join(new, "item_id", "full_outer").withColumn("change", change).cache()
    counts = {row["change"]: int(row["count"]) for row in joined.groupBy("change").count().collect()}
    rows = (
        joined.where(F.col("change") != "unchanged")
        .withColumn("from_version", F.lit(from_version))
        .withColumn("to_version", F.lit(to_version))
        .withColumn("computed_at", F.current_timestamp())
    )
    tables.write_version(rows, spark, tables.qualified_name(config.tables, "sid_version_diff"),
                         schema=tables.SID_VERSION_DIFF_SCHEMA, key_column="to_version", key_value=to_version)
    joined.unpersist()
    result = {key: float(counts.get(key, 0)) for key in ("unchanged", "changed", "added", "removed")}
    both = result["unchanged"] + result["changed"]
    result["changed_share"] = result["changed"] / both if both else 0.0
    logger.info("version_diff from=%s to=%s %s", from_version, to_version,
                " ".join(f"{key}={value:g}" for key, value in result.items()))
    return result
