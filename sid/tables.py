"""Delta table schemas and writers of the SID tables.

Every writer is idempotent for a given version or run: it replaces the rows of that
version or run (Delta ``replaceWhere``) instead of appending duplicates.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

from sid.config import TablesConfig

__all__ = [
    "ACTIVE_VERSION_SCHEMA",
    "CODEBOOKS_SCHEMA",
    "ITEM_EMBEDDINGS_SCHEMA",
    "ITEM_SIDS_SCHEMA",
    "QUARANTINE_SCHEMA",
    "SID_METRICS_SCHEMA",
    "ensure_database",
    "qualified_name",
    "write_version",
]

logger = logging.getLogger(__name__)

# Spark DDL strings keep this module importable without pyspark.
# embedding is the fused vector. The per-modality parts are null where modality_mask is false,
# and mask_reasons gives the cause of each missing part.
ITEM_EMBEDDINGS_SCHEMA = (
    "item_id STRING NOT NULL, embedding ARRAY<FLOAT>, text_embedding ARRAY<FLOAT>, "
    "item_text STRING, model STRING, embedding_version STRING NOT NULL, created_at TIMESTAMP, "
    "image_embedding ARRAY<FLOAT>, collaborative_embedding ARRAY<FLOAT>, "
    "modality_mask STRUCT<text: BOOLEAN, image: BOOLEAN, collaborative: BOOLEAN>, mask_reasons ARRAY<STRING>"
)
CODEBOOKS_SCHEMA = (
    "codebook_version STRING NOT NULL, level INT NOT NULL, code INT NOT NULL, "
    "centroid ARRAY<FLOAT>, method STRING, mlflow_run_id STRING, config_hash STRING, created_at TIMESTAMP"
)
ITEM_SIDS_SCHEMA = (
    "item_id STRING NOT NULL, codebook_version STRING NOT NULL, codes ARRAY<INT>, raw_codes ARRAY<INT>, "
    "sid STRING, strategy STRING, resolution_step STRING, collided BOOLEAN, popularity BIGINT, mlflow_run_id STRING, "
    "assigned_at TIMESTAMP"
)
QUARANTINE_SCHEMA = (
    "item_id STRING, stage STRING NOT NULL, reason STRING NOT NULL, raw_record STRING, "
    "run_id STRING NOT NULL, quarantined_at TIMESTAMP"
)

# One row per metric of a codebook version (or of an evaluated mapping's label).
SID_METRICS_SCHEMA = "codebook_version STRING NOT NULL, metric STRING NOT NULL, value DOUBLE, computed_at TIMESTAMP"
# One row per database: the codebook version that item_sids_current shows.
ACTIVE_VERSION_SCHEMA = (
    "database STRING NOT NULL, codebook_version STRING NOT NULL, activated_at TIMESTAMP, mlflow_run_id STRING"
)


def qualified_name(tables: TablesConfig, table: str) -> str:
    """Return ``database.table`` for a table key of TablesConfig such as "item_sids"."""
    return f"{tables.database}.{getattr(tables, table)}"


def ensure_database(spark: SparkSession, tables: TablesConfig) -> None:
    """Create the database if it does not exist."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {tables.database}")


def write_version(
    frame: DataFrame,
    spark: SparkSession,
    table: str,
    *,
    schema: str,
    key_column: str,
    key_value: str,
) -> int:
    """Replace the rows of ``key_column = key_value`` in Delta table ``table`` with ``frame``.

    Creates the table with ``schema`` when it does not exist. Rerunning with the same key
    leaves one copy of the rows. Returns the number of rows written.
    """
    from pyspark.sql import functions as F

    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({schema}) USING DELTA")
    _add_missing_columns(spark, table, schema)
    columns = [field.name for field in spark.table(table).schema.fields]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"frame written to {table} lacks column(s) {missing}; it has {frame.columns}")
    target_schema = spark.table(table).schema
    aligned = frame.select(*[F.col(column).cast(target_schema[column].dataType) for column in columns])
    # DataFrameWriterV2 overwrite(condition) is Delta's replaceWhere: one atomic commit that
    # swaps the rows of this key and leaves every other key untouched.
    aligned.writeTo(table).overwrite(F.col(key_column) == F.lit(key_value))
    count = spark.table(table).where(F.col(key_column) == key_value).count()
    logger.info("table=%s %s=%s rows=%d written", table, key_column, key_value, count)
    return count


def _add_missing_columns(spark: SparkSession, table: str, schema: str) -> None:
    """Add the columns of ``schema`` that an older ``table`` lacks; old rows read them as null."""
    from pyspark.sql import types as T

    existing = {field.name for field in spark.table(table).schema.fields}
    expected = T.StructType.fromDDL(schema)
    missing = [field for field in expected.fields if field.name not in existing]
    if missing:
        columns = ", ".join(f"{field.name} {field.dataType.simpleString()}" for field in missing)
        spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({columns})")
        logger.info("table=%s columns_added=%s", table, ",".join(field.name for field in missing))
