"""Delta table schemas and writers of the SID tables.

Every writer is idempotent for a given version or run: ``write_version`` replaces the rows
of that version or run (Delta ``replaceWhere``), ``insert_missing`` adds only rows whose
key is absent (Delta ``MERGE``). Both retry when a concurrent writer's commit conflicts.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
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
    "ITEM_SIDS_STAGED_SCHEMA",
    "RETIRED_ITEMS_SCHEMA",
    "SID_VERSION_DIFF_SCHEMA",
    "ensure_database",
    "ensure_table",
    "insert_missing",
    "qualified_name",
    "with_commit_retries",
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
# Rows an incremental run resolved, keyed by its run_id until its publish stage merges them.
ITEM_SIDS_STAGED_SCHEMA = ITEM_SIDS_SCHEMA + ", run_id STRING NOT NULL"
# Items of a version that left the catalog; their SID is reserved until release_after.
RETIRED_ITEMS_SCHEMA = (
    "item_id STRING NOT NULL, codebook_version STRING NOT NULL, codes ARRAY<INT>, sid STRING, "
    "retired_at TIMESTAMP, release_after TIMESTAMP, run_id STRING"
)
# One row per item whose SID differs between from_version and to_version; change is
# "changed", "added" (no SID in from_version) or "removed" (no SID in to_version).
SID_VERSION_DIFF_SCHEMA = (
    "from_version STRING NOT NULL, to_version STRING NOT NULL, item_id STRING NOT NULL, old_sid STRING, "
    "new_sid STRING, change STRING NOT NULL, computed_at TIMESTAMP"
)
# run_id is the pipeline's run id (jobs/build_sids.py --run-id).
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
    # Checking first keeps the Hive metastore from logging AlreadyExistsException at ERROR.
    if not spark.catalog.databaseExists(tables.database):
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

    aligned = _aligned(frame, spark, table, schema)
    # DataFrameWriterV2 overwrite(condition) is Delta's replaceWhere: one atomic commit that
    # swaps the rows of this key and leaves every other key untouched.
    with_commit_retries(lambda: aligned.writeTo(table).overwrite(F.col(key_column) == F.lit(key_value)), table)
    count = spark.table(table).where(F.col(key_column) == key_value).count()
    logger.info("table=%s %s=%s rows=%d written", table, key_column, key_value, count)
    return count


def insert_missing(frame: DataFrame, spark: SparkSession, table: str, *, schema: str, keys: Sequence[str]) -> int:
    """Insert the rows of ``frame`` whose ``keys`` are not yet in ``table``, in one commit.

    Rows already present stay as they are, so a rerun adds nothing. Returns the number of
    rows inserted.
    """
    aligned = _aligned(frame, spark, table, schema)
    source = f"_sid_insert_{uuid.uuid4().hex[:12]}"
    aligned.createOrReplaceTempView(source)
    condition = " AND ".join(f"t.`{key}` = s.`{key}`" for key in keys)
    merge = f"MERGE INTO {table} t USING {source} s ON {condition} WHEN NOT MATCHED THEN INSERT *"
    try:
        metrics = with_commit_retries(lambda: spark.sql(merge).collect(), table)
    finally:
        spark.catalog.dropTempView(source)
    inserted = int(metrics[0]["num_inserted_rows"]) if metrics and "num_inserted_rows" in metrics[0] else -1
    logger.info("table=%s rows=%d inserted (merge on %s)", table, inserted, ",".join(keys))
    return inserted


def ensure_table(spark: SparkSession, table: str, schema: str) -> None:
    """Create Delta table ``table`` with ``schema`` if it does not exist, and add missing columns."""
    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({schema}) USING DELTA")
    _add_missing_columns(spark, table, schema)


# Attempts of one commit that conflicts with a concurrent writer, and the first back-off.
COMMIT_ATTEMPTS = 5
COMMIT_BACKOFF_SECONDS = 1.0


def with_commit_retries(commit: Callable[[], object], table: str):
    """Run ``commit``; when Delta reports a conflicting concurrent commit, wait and retry.

    Delta's optimistic concurrency rejects a commit whose reads another writer changed, and
    leaves the table as it was. The retry re-reads the table. After COMMIT_ATTEMPTS
    conflicts the error names the table and what to do.
    """
    from sid.errors import BusyError

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return commit()
        except Exception as error:  # noqa: BLE001 - filtered by _is_commit_conflict
            if not _is_commit_conflict(error):
                raise
            if attempt == COMMIT_ATTEMPTS:
                raise BusyError(
                    f"table {table}: the commit conflicted with another writer {COMMIT_ATTEMPTS} times "
                    f"({type(error).__name__}); the table is unchanged by this run. Run one pipeline per "
                    f"database at a time (the Airflow DAGs share one pool slot), then rerun with the same --run-id"
                ) from error
            delay = COMMIT_BACKOFF_SECONDS * 2 ** (attempt - 1) * (1 + random.random())
            logger.warning("table=%s commit conflict (%s), attempt %d of %d; retrying in %.1f s",
                           table, type(error).__name__, attempt, COMMIT_ATTEMPTS, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _is_commit_conflict(error: BaseException) -> bool:
    try:
        from delta import exceptions as delta_errors
    except ImportError:  # pragma: no cover - delta-spark is a dependency
        return False
    conflict_types = tuple(
        getattr(delta_errors, name) for name in (
            "DeltaConcurrentModificationException", "ConcurrentWriteException", "MetadataChangedException",
            "ProtocolChangedException", "ConcurrentAppendException", "ConcurrentDeleteReadException",
            "ConcurrentDeleteDeleteException", "ConcurrentTransactionException",
        ) if hasattr(delta_errors, name)
    )
    return isinstance(error, conflict_types) or "DELTA_CONCURRENT" in str(error)


def _aligned(frame: DataFrame, spark: SparkSession, table: str, schema: str) -> DataFrame:
    """Create ``table`` if needed and return ``frame`` with the table's columns and types."""
    from pyspark.sql import functions as F

    ensure_table(spark, table, schema)
    target_schema = spark.table(table).schema
    columns = [field.name for field in target_schema.fields]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"frame written to {table} lacks column(s) {missing}; it has {frame.columns}")
    return frame.select(*[F.col(column).cast(target_schema[column].dataType) for column in columns])


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
