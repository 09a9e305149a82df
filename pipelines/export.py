"""Export the SIDs of a version for generative recommenders.

LLM-based recommenders (TIGER, LC-Rec and their kin) add one token per (level, code) to
their vocabulary. The export gives, per item, the SID's token sequence (``<a_17>``,
``<b_203>``, ...) and the same tokens as offset integer ids. Level l's code c has id
c + (sizes of levels 0..l-1), so the ids of all levels share one range starting at 0. The
vocabulary lists every code of every level, used or not, in id order.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import TYPE_CHECKING

from pipelines.build import SID_LETTERS
from sid import tables
from sid.config import PipelineConfig
from sid.errors import PipelineError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["ExportResult", "export_sids", "level_sizes", "vocabulary"]

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "jsonl")


class ExportResult:
    def __init__(self, version: str, items: int, sizes: list[int], output: pathlib.Path) -> None:
        self.version = version
        self.items = items
        self.sizes = sizes
        self.output = output


def vocabulary(sizes: list[int]) -> list[str]:
    """Return every token of levels with ``sizes`` codes, in offset-id order."""
    return [f"<{SID_LETTERS[level]}_{code}>" for level, size in enumerate(sizes) for code in range(size)]


def level_sizes(spark: SparkSession, config: PipelineConfig, version: str, sids: DataFrame) -> list[int]:
    """Codes per level: the codebook sizes of ``version``, then, for SIDs longer than the
    codebooks (the suffix strategy's extra code), the largest code used plus one."""
    from pyspark.sql import functions as F

    codebooks = tables.qualified_name(config.tables, "codebooks")
    rows = (spark.table(codebooks).where(F.col("codebook_version") == version)
            .groupBy("level").count().orderBy("level").collect())
    sizes = [int(row["count"]) for row in rows]
    if not sizes:
        raise PipelineError(f"codebook_version={version} has no rows in {codebooks}; choose a built version")
    longest = sids.agg(F.max(F.size("codes"))).collect()[0][0] or 0
    for level in range(len(sizes), longest):
        used = sids.where(F.size("codes") > level).agg(F.max(F.col("codes")[level])).collect()[0][0]
        sizes.append(int(used) + 1)
    return sizes


def export_sids(spark: SparkSession, config: PipelineConfig, output: str | pathlib.Path, *,
                version: str | None = None, output_format: str = "parquet") -> ExportResult:
    """Write ``output``/items (item_id, codebook_version, sid, tokens, token_ids),
    ``output``/vocab.txt (one token per line, line n has id n) and ``output``/vocab.json
    (levels with size and offset). Retired items are left out. Default version: the active one.
    """
    from pyspark.sql import functions as F

    from pipelines.gate import active_version

    if output_format not in FORMATS:
        raise PipelineError(f"--format {output_format!r} is invalid; choose {' or '.join(FORMATS)}")
    version = version or active_version(spark, config)
    if version is None:
        raise PipelineError(f"database {config.tables.database} has no active version; run a full build "
                            f"first or pass --version")
    item_sids = spark.table(tables.qualified_name(config.tables, "item_sids")).where(
        F.col("codebook_version") == version)
    retired = tables.qualified_name(config.tables, "retired_items")
    if spark.catalog.tableExists(retired):
        gone = spark.table(retired).where(F.col("codebook_version") == version).select("item_id")
        item_sids = item_sids.join(gone, "item_id", "left_anti")
    sids = item_sids.select("item_id", "codebook_version", "sid", "codes").cache()
    count = sids.count()
    if count == 0:
        raise PipelineError(f"codebook_version={version} has no SIDs in {config.tables.database}.item_sids")
    sizes = level_sizes(spark, config, version, sids)
    offsets = [sum(sizes[:level]) for level in range(len(sizes))]
    offset_array = F.array(*[F.lit(offset) for offset in offsets])
    frame = sids.select(
        "item_id", "codebook_version", "sid",
        F.transform("codes", lambda code, level: F.concat(
            F.lit("<"), F.substring(F.lit(SID_LETTERS), level + 1, 1), F.lit("_"), code.cast("string"), F.lit(">")
        )).alias("tokens"),
        F.transform("codes", lambda code, level: code + F.element_at(offset_array, level + 1)).alias("token_ids"),
    ).orderBy("item_id")
    target = pathlib.Path(output)
    target.mkdir(parents=True, exist_ok=True)
    writer = frame.write.mode("overwrite")
    if output_format == "parquet":
        writer.parquet(str(target / "items"))
    else:
        writer.json(str(target / "items"))
    tokens = vocabulary(sizes)
    (target / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    meta = {
        "codebook_version": version,
        "database": config.tables.database,
        "items": count,
        "tokens": len(tokens),
        "levels": [{"level": level, "letter": SID_LETTERS[level], "size": size, "offset": offsets[level]}
                   for level, size in enumerate(sizes)],
    }
    (target / "vocab.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    sids.unpersist()
    logger.info("export version=%s items=%d tokens=%d sizes=%s output=%s", version, count, len(tokens), sizes, target)
    return ExportResult(version, count, sizes, target)
