"""Item-to-SID mappings from files or published versions, and decoders for them.

An external mapping is Parquet, JSON Lines or CSV with an ``item_id`` column and either
``codes`` (an int array, or a string such as ``17,203,5``) or ``sid`` (a string such as
``<a_17><b_203><c_5>``). Every check raises MappingError naming the problem and the fix.
"""

from __future__ import annotations

import functools
import logging
import pathlib
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import pandas as pd

from sid.codes import parse_sid
from sid.errors import MappingError
from sid.quantize import decode_residual

__all__ = ["MappingFormat", "codebook_decoder", "fit_codebooks", "read_mapping"]

logger = logging.getLogger(__name__)

MappingFormat = Literal["csv", "json", "parquet"]
SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
PARTIAL_SUMS_SCHEMA = "code INT, count LONG, total ARRAY<DOUBLE>"


def read_mapping(spark, path: str, *, file_format: MappingFormat | None = None):
    """Return a DataFrame (item_id STRING, codes ARRAY<INT>) read from ``path``.

    ``file_format`` defaults to the file suffix. Raises MappingError for a missing column, a
    code string that does not parse, an empty or duplicate item_id, a negative code or SIDs
    of different lengths.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    chosen = file_format or SUFFIX_FORMATS.get(pathlib.Path(path).suffix.lower())
    if chosen is None:
        raise MappingError(f"cannot tell the format of mapping {path}; pass --format csv, json or parquet")
    if not pathlib.Path(path).exists():
        raise MappingError(f"mapping file not found: {path}")
    reader = spark.read.option("header", True) if chosen == "csv" else spark.read
    frame = getattr(reader, chosen)(path)

    # Normalize to item_id and an int array of codes.
    if "item_id" not in frame.columns or not ({"codes", "sid"} & set(frame.columns)):
        raise MappingError(f"mapping {path} needs an item_id column and a codes or sid column; it has {frame.columns}")
    source = "codes" if "codes" in frame.columns else "sid"
    parse = F.udf(_parse_codes, T.ArrayType(T.IntegerType()))
    if isinstance(frame.schema[source].dataType, T.ArrayType):
        codes = F.col(source).cast("array<int>")
    else:
        codes = parse(F.col(source).cast("string"))
    mapping = frame.select(F.col("item_id").cast("string").alias("item_id"), codes.alias("codes"),
                           F.col(source).cast("string").alias("_source")).cache()
    _check_mapping(mapping, path, source)
    return mapping.drop("_source")


def _parse_codes(text: str | None) -> list[int] | None:
    """Return the codes of one SID or codes string, or None when it does not parse."""
    if text is None:
        return None
    try:
        return parse_sid(text.strip().strip("[]()"))
    except ValueError:
        return None


def _check_mapping(mapping, path: str, source: str) -> None:
    """Raise MappingError for rows that cannot be evaluated; see :func:`read_mapping`."""
    from pyspark.sql import functions as F

    bad_codes = mapping.where(F.col("codes").isNull() | (F.size("codes") == 0) | F.exists("codes", lambda c: c < 0))
    example = bad_codes.select("item_id", "_source").first()
    if example is not None:
        raise MappingError(
            f"mapping {path} has {bad_codes.count()} row(s) whose {source} is missing, empty or not a SID, such as "
            f"item_id={example['item_id']!r} {source}={example['_source']!r}; write codes like 17,203,5 "
            f"or <a_17><b_203><c_5>"
        )
    missing_ids = mapping.where(F.col("item_id").isNull() | (F.col("item_id") == "")).count()
    if missing_ids:
        raise MappingError(f"mapping {path} has {missing_ids} row(s) without an item_id; drop them")
    duplicates = mapping.groupBy("item_id").count().where("count > 1")
    duplicate = duplicates.first()
    if duplicate is not None:
        raise MappingError(
            f"mapping {path} gives {duplicates.count()} item_id(s) more than one SID, such as "
            f"item_id={duplicate['item_id']!r}; keep one row per item"
        )
    lengths = {row["length"]: row["count"] for row in mapping.groupBy(F.size("codes").alias("length")).count().collect()}
    if len(lengths) > 1:
        raise MappingError(
            f"mapping {path} mixes SID lengths {dict(sorted(lengths.items()))} (number of codes: items); every SID "
            "needs the same number of codes, so pad or truncate them first"
        )


def codebook_decoder(spark, table: str, codebook_version: str) -> tuple[Callable, list[int]] | None:
    """Return (decode, codebook sizes) from the residual codebooks of a published version,
    or None when the table has no residual k-means codebooks for it."""
    from pyspark.sql import functions as F

    if not spark.catalog.tableExists(table):
        return None
    rows = (
        spark.table(table).where(F.col("codebook_version") == codebook_version)
        .select("level", "code", "centroid", "method").collect()
    )
    if not rows or {row["method"] for row in rows} != {"residual_kmeans"}:
        return None
    codebooks = []
    for level in range(max(row["level"] for row in rows) + 1):
        level_rows = sorted((row for row in rows if row["level"] == level), key=lambda row: row["code"])
        codebooks.append(np.asarray([row["centroid"] for row in level_rows], dtype=np.float32))
    return functools.partial(decode_residual, codebooks=codebooks), [len(codebook) for codebook in codebooks]


def fit_codebooks(frame, levels: int) -> list[np.ndarray]:
    """Return float32 codebooks [(max code + 1, dim), ...] that decode ``frame``'s SIDs.

    frame: codes ARRAY<INT> and embedding ARRAY<FLOAT>. Level l's codeword for code c is the
    mean residual (embedding minus the codewords of levels < l) of the items with code c at
    level l: the centroid update of residual k-means with the mapping's codes held fixed.
    Unused codes get zero vectors. One Spark pass per level; only sums reach the driver.
    """
    codebooks: list[np.ndarray] = []
    for level in range(levels):
        fitted = list(codebooks)

        def partial_sums(batches: Iterator[pd.DataFrame], level=level, fitted=fitted) -> Iterator[pd.DataFrame]:
            for batch in batches:
                if batch.empty:
                    continue
                residual = np.stack(batch["embedding"].to_numpy()).astype(np.float64)
                codes = np.stack([np.asarray(row[: level + 1]) for row in batch["codes"]]).astype(np.int64)
                for previous, codebook in enumerate(fitted):
                    residual -= codebook[codes[:, previous]]
                used, inverse = np.unique(codes[:, level], return_inverse=True)
                totals = np.zeros((len(used), residual.shape[1]))
                np.add.at(totals, inverse.reshape(-1), residual)
                yield pd.DataFrame({"code": used.astype(np.int32), "count": np.bincount(inverse.reshape(-1)),
                                    "total": list(totals)})

        partials = frame.select("codes", "embedding").mapInPandas(partial_sums, schema=PARTIAL_SUMS_SCHEMA)
        rows = partials.groupBy("code").applyInPandas(_sum_partials, schema=PARTIAL_SUMS_SCHEMA).collect()
        dim = len(rows[0]["total"])
        sums = np.zeros((max(row["code"] for row in rows) + 1, dim))
        counts = np.zeros(sums.shape[0])
        for row in rows:
            sums[row["code"]] = row["total"]
            counts[row["code"]] = row["count"]
        codebooks.append((sums / np.maximum(counts, 1)[:, None]).astype(np.float32))
        logger.info("fitted codebook level=%d codes=%d", level, int((counts > 0).sum()))
    return codebooks


def _sum_partials(group: pd.DataFrame) -> pd.DataFrame:
    """Add up the per-partition sums of one code."""
    total = np.sum(np.stack(group["total"].to_numpy()), axis=0)
    return pd.DataFrame({"code": [group["code"].iloc[0]], "count": [group["count"].sum()], "total": [total]})
