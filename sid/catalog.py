"""Catalog input adapters: read items and interactions into canonical Spark frames.

Canonical ``items``: item_id STRING, title STRING, brand STRING, categories ARRAY<STRING>,
price DOUBLE, raw_record STRING (the input row as JSON, kept for quarantine), plus any other
column of the input as it is. Canonical ``interactions``: user_id STRING, item_id STRING,
position BIGINT (order inside the user's history; a timestamp where the input has one).
"""

from __future__ import annotations

import ast
import logging
import pathlib
from typing import TYPE_CHECKING

from sid.config import CatalogConfig
from sid.errors import CatalogError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["CANONICAL_COLUMNS", "Catalog", "parse_category_list", "read_catalog"]

logger = logging.getLogger(__name__)

CANONICAL_COLUMNS = ("item_id", "title", "brand", "categories", "price")
RECBOLE_SEQUENCE_FILE = "user_sequence.txt"


class Catalog:
    """The canonical ``items`` and ``interactions`` frames of one catalog."""

    def __init__(self, items: DataFrame, interactions: DataFrame | None) -> None:
        self.items = items
        self.interactions = interactions


def parse_category_list(value: str | None) -> list[str]:
    """Parse RecBole's category field ``'Beauty', 'Makeup', 'Face'`` into a list of names.

    Python-literal quoting is used by the source (names holding ``'`` are double-quoted), so
    ``ast.literal_eval`` reads it exactly; anything else is split on commas.
    """
    if value is None or not value.strip():
        return []
    try:
        parsed = ast.literal_eval("[" + value + "]")
    except (ValueError, SyntaxError):
        return [part.strip().strip("'\"") for part in value.split(",") if part.strip()]
    return [str(item).strip() for item in parsed if str(item).strip()]


def read_catalog(spark: SparkSession, config: CatalogConfig) -> Catalog:
    """Read the catalog that ``config.format`` names; raise CatalogError when unreadable."""
    readers = {
        "recbole": _read_recbole,
        "parquet": _read_table,
        "jsonl": _read_table,
        "delta": _read_table,
    }
    try:
        return readers[config.format](spark, config)
    except CatalogError:
        raise
    except Exception as error:  # Spark raises AnalysisException, Py4JJavaError and others
        if type(error).__name__ not in {"AnalysisException", "Py4JJavaError", "IllegalArgumentException"}:
            raise
        raise CatalogError(
            f"cannot read catalog.format={config.format} at catalog.path={config.path}: "
            f"{str(error).splitlines()[0]}; check the path and the format"
        ) from error


def _read_recbole(spark: SparkSession, config: CatalogConfig) -> Catalog:
    """Read a RecBole atomic ``*.item`` TSV and ``user_sequence.txt`` from one folder."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    folder = pathlib.Path(config.path)
    if not folder.is_dir():
        raise CatalogError(
            f"catalog.path={config.path} is not a folder; for format recbole give the folder holding "
            f"the *.item file and {RECBOLE_SEQUENCE_FILE}"
        )
    item_files = sorted(folder.glob("*.item"))
    if len(item_files) != 1:
        raise CatalogError(
            f"catalog.path={config.path} must hold exactly one *.item file, found {len(item_files)}"
        )

    # Fields that contain '"' are quoted CSV-style with doubled quotes, and a few quoted
    # titles span two lines.
    raw = (
        spark.read.option("sep", "\t").option("header", True).option("quote", '"').option("escape", '"')
        .option("multiLine", True).option("mode", "PERMISSIVE").csv(str(item_files[0].resolve()))
    )
    # RecBole headers carry a type suffix: item_id:token, price:float.
    renamed = raw.toDF(*[column.split(":")[0] for column in raw.columns])
    renamed = _apply_column_map(renamed, config)
    parse_categories = F.udf(lambda value: parse_category_list(value), T.ArrayType(T.StringType()))
    items = (
        renamed.withColumn("raw_record", F.to_json(F.struct(*[F.col(c) for c in renamed.columns])))
        .withColumn("categories", parse_categories(F.col("categories")))
        .withColumn("price", F.col("price").try_cast("double"))
    )
    items = _with_canonical_columns(items, config)

    sequence_file = folder / RECBOLE_SEQUENCE_FILE
    interactions = None
    if sequence_file.is_file():
        lines = spark.read.text(str(sequence_file.resolve()))
        tokens = F.split(F.trim(F.col("value")), r"\s+")
        interactions = (
            lines.where(F.length(F.trim(F.col("value"))) > 0)
            .select(tokens.getItem(0).alias("user_id"), F.slice(tokens, 2, 1_000_000).alias("items"))
            .select("user_id", F.posexplode("items").alias("position", "item_id"))
            .select("user_id", "item_id", F.col("position").cast("bigint"))
        )
    else:
        logger.warning("no %s in %s: every item gets popularity 0", RECBOLE_SEQUENCE_FILE, folder)
    return Catalog(items, interactions)


def _read_table(spark: SparkSession, config: CatalogConfig) -> Catalog:
    """Read a Parquet, JSON Lines or Delta items table and optional interactions."""
    from pyspark.sql import functions as F

    frame = _load(spark, config.format, config.path)
    if not frame.columns:
        raise CatalogError(
            f"the catalog at catalog.path={config.path} holds no item rows (no columns could be read); "
            "check that the file is not empty and that catalog.format matches it"
        )
    frame = _apply_column_map(frame, config)
    frame = frame.withColumn("raw_record", F.to_json(F.struct(*[F.col(c) for c in frame.columns])))
    items = _with_canonical_columns(frame, config)

    interactions = None
    if config.interactions_path:
        raw = _load(spark, config.format, config.interactions_path)
        required = {"user_id", "item_id"}
        if not required <= set(raw.columns):
            raise CatalogError(
                f"catalog.interactions_path={config.interactions_path} needs columns user_id and item_id, "
                f"found {raw.columns}"
            )
        position = F.lit(None).cast("bigint")
        for order_column in ("position", "timestamp"):
            if order_column in raw.columns:
                position = F.col(order_column).cast("bigint")
                break
        interactions = raw.select(
            F.col("user_id").cast("string"), F.col("item_id").cast("string"), position.alias("position")
        )
    return Catalog(items, interactions)


def _load(spark: SparkSession, fmt: str, path: str) -> DataFrame:
    if fmt == "parquet":
        return spark.read.parquet(path)
    if fmt == "jsonl":
        return spark.read.json(path)
    if "/" in path or pathlib.Path(path).exists():
        return spark.read.format("delta").load(path)
    return spark.table(path)


def _apply_column_map(frame: DataFrame, config: CatalogConfig) -> DataFrame:
    for source, target in config.column_map.items():
        if source not in frame.columns:
            raise CatalogError(
                f"catalog.column_map names column {source!r}, which the catalog lacks; columns: {frame.columns}"
            )
        frame = frame.withColumnRenamed(source, target)
    if config.item_id_column != "item_id":
        if config.item_id_column not in frame.columns:
            raise CatalogError(
                f"catalog.item_id_column={config.item_id_column!r} is not a column; columns: {frame.columns}"
            )
        frame = frame.withColumnRenamed(config.item_id_column, "item_id")
    if "item_id" not in frame.columns:
        raise CatalogError(
            f"the catalog has no item_id column (columns: {frame.columns}); set catalog.item_id_column"
        )
    return frame


def _with_canonical_columns(frame: DataFrame, config: CatalogConfig) -> DataFrame:
    """Cast the canonical columns and add missing ones as nulls."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    frame = frame.withColumn("item_id", F.trim(F.col("item_id").cast("string")))
    for name in ("title", "brand"):
        frame = frame.withColumn(name, F.col(name).cast("string") if name in frame.columns else F.lit(None).cast("string"))
    if "categories" not in frame.columns:
        frame = frame.withColumn("categories", F.lit(None).cast(T.ArrayType(T.StringType())))
    elif not isinstance(frame.schema["categories"].dataType, T.ArrayType):
        frame = frame.withColumn("categories", F.array(F.col("categories").cast("string")))
    if "price" not in frame.columns:
        frame = frame.withColumn("price", F.lit(None).cast("double"))
    else:
        # A price that is not a number becomes null; price is descriptive, never required.
        frame = frame.withColumn("price", F.col("price").try_cast("double"))
    return frame
