"""Evaluate stage: SID quality metrics of one item-to-SID mapping over the whole catalog.

Balance, collisions, code usage, reconstruction error and prefix purity are Spark
aggregations over every item, so only aggregates reach the driver. Embedding hit rate and
neighbour recall rank candidate items on the driver (:mod:`pipelines.retrieval`).

Metric keys (the MLflow keys and the ``metric`` column of ``sid_metrics``):
``raw/*`` and ``final/*`` bucket statistics (gini, collision_rate, unique_share,
largest_bucket, entropy_ratio, occupied_sids, distinct_sid_share, items),
``final/level_<l>/{utilization,dead_codes,perplexity}``,
``final/reconstruction_{mse,relative}``, ``purity/level_<p>``, ``hit_rate/{sid,raw}/at_<K>``,
``neighbour_recall/at_<k>`` and ``coverage/*``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipelines.retrieval import RetrievalResult, retrieval_metrics
from sid.config import EvaluateConfig
from sid.errors import MappingError
from sid.metrics import bucket_stats, entropy_ratio_from_histogram, perplexity

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["Evaluation", "EvaluationInputs", "evaluate_mapping"]

logger = logging.getLogger(__name__)

# Prefix lengths whose semantic purity is reported (level-1 and level-2 prefixes).
PURITY_PREFIX_LEVELS = (1, 2)

RECONSTRUCTION_SCHEMA = "items LONG, squared_error DOUBLE, energy DOUBLE, values LONG"


@dataclasses.dataclass
class EvaluationInputs:
    """Inputs of one evaluation.

    sids: item_id, codes ARRAY<INT> and, for a build, raw_codes ARRAY<INT>.
    items: the catalog side: item_id, embedding ARRAY<FLOAT>, popularity, priority_hash and
        categories ARRAY<STRING> (null allowed).
    interactions: user_id, item_id, position; None when the catalog has none, which skips
        the embedding hit rate.
    decode: maps int (n, levels) codes to float32 (n, dim) reconstructions in the space of
        ``items.embedding``. Spark ships it to the executors, so it must pickle.
    levels: how many leading codes of each SID ``decode`` takes; longer SIDs (an appended
        disambiguation code) are decoded from their first ``levels`` codes.
    codebook_sizes: codes per level for utilization; None estimates each as max code + 1.
    """

    sids: DataFrame
    items: DataFrame
    interactions: DataFrame | None
    decode: Callable[[np.ndarray], np.ndarray]
    levels: int
    codebook_sizes: Sequence[int] | None


@dataclasses.dataclass
class Evaluation:
    """Metrics of one mapping plus the aggregates that the plots draw.

    histograms: {"raw" or "final": {bucket size: number of SIDs}}.
    code_counts: per decoded level, int64 (codebook size,) items per code.
    retrieval: hit-rate positions and curves, or None when nothing could be ranked.
    notes: one line per skipped or sampled metric, for the report.
    """

    metrics: dict[str, float]
    histograms: dict[str, dict[int, int]]
    code_counts: list[np.ndarray]
    retrieval: RetrievalResult | None
    notes: list[str]


def evaluate_mapping(
    spark: SparkSession,
    inputs: EvaluationInputs,
    config: EvaluateConfig,
    *,
    seed: int,
) -> Evaluation:
    """Compute every SID quality metric of ``inputs`` over the items that have both a SID
    and an embedding.

    Raises MappingError when no item has both, or when a SID has fewer than
    ``inputs.levels`` codes.
    """
    from pyspark.sql import functions as F

    notes: list[str] = []
    metrics: dict[str, float] = {}

    # Coverage: the metrics below describe the items with both a SID and an embedding.
    covered = inputs.sids.join(inputs.items, "item_id").cache()
    coverage = _coverage(inputs.sids, inputs.items, covered)
    metrics.update(coverage)
    if coverage["coverage/covered_items"] == 0:
        raise MappingError(
            "no item of the SID mapping has an embedding; check that the mapping's item_id values "
            "match the catalog and that item_embeddings holds the chosen embedding_version"
        )
    if coverage["coverage/catalog_share"] < 1.0:
        notes.append(
            f"metrics cover {int(coverage['coverage/covered_items'])} of "
            f"{int(coverage['coverage/catalog_items'])} catalog items (the ones with a SID)"
        )
    shortest = covered.agg(F.min(F.size("codes"))).collect()[0][0]
    if shortest < inputs.levels:
        raise MappingError(f"some SIDs have {shortest} codes but decoding needs {inputs.levels}; check the mapping")

    # Balance and collisions, on raw codes when the mapping has them and on final codes.
    histograms = {}
    for name, column in (("raw", "raw_codes"), ("final", "codes")):
        if column in covered.columns:
            histograms[name] = _bucket_histogram(covered, column)
            metrics.update({f"{name}/{key}": value for key, value in _bucket_metrics(histograms[name]).items()})

    code_counts, level_values, level_notes = _code_usage(covered, inputs.levels, inputs.codebook_sizes)
    metrics.update(level_values)
    notes.extend(level_notes)
    metrics.update(_reconstruction_metrics(covered, inputs.decode, inputs.levels))
    for prefix_levels in PURITY_PREFIX_LEVELS:
        if prefix_levels <= inputs.levels:
            purity = _prefix_purity(covered, prefix_levels, config.category_depth)
            metrics[f"purity/level_{prefix_levels}"] = purity
            if np.isnan(purity):
                notes.append(f"no item has a category path of depth {config.category_depth}; purity is NaN")

    retrieval = retrieval_metrics(covered, inputs.interactions, inputs.decode, config,
                                  levels=inputs.levels, seed=seed)
    metrics.update(retrieval.metrics)
    notes.extend(retrieval.notes)
    covered.unpersist()
    return Evaluation(metrics=metrics, histograms=histograms, code_counts=code_counts,
                      retrieval=retrieval if retrieval.metrics else None, notes=notes)


def _coverage(sids: DataFrame, items: DataFrame, covered: DataFrame) -> dict[str, float]:
    mapped = sids.count()
    catalog = items.count()
    covered_count = covered.count()
    return {
        "coverage/mapped_items": float(mapped),
        "coverage/catalog_items": float(catalog),
        "coverage/covered_items": float(covered_count),
        "coverage/catalog_share": covered_count / catalog if catalog else 0.0,
        # Items of the mapping that the catalog has no embedding for.
        "coverage/unknown_items": float(mapped - covered_count),
    }


def _bucket_histogram(frame: DataFrame, column: str) -> dict[int, int]:
    """Return {bucket size: number of SIDs} of the SIDs in ``column``."""
    from pyspark.sql import functions as F

    sizes = frame.groupBy(F.col(column)).agg(F.count(F.lit(1)).alias("size"))
    rows = sizes.groupBy("size").agg(F.count(F.lit(1)).alias("sids")).collect()
    return {int(row["size"]): int(row["sids"]) for row in rows}


def _bucket_metrics(histogram: dict[int, int]) -> dict[str, float]:
    metrics = bucket_stats(histogram)
    metrics["unique_share"] = 1.0 - metrics["collision_rate"] if metrics["items"] else 0.0
    metrics["entropy_ratio"] = entropy_ratio_from_histogram(histogram)
    return metrics


def _code_usage(
    frame: DataFrame, levels: int, codebook_sizes: Sequence[int] | None
) -> tuple[list[np.ndarray], dict[str, float], list[str]]:
    """Return per-level code counts and final/level_<l>/{utilization,dead_codes,perplexity}."""
    from pyspark.sql import functions as F

    exploded = frame.select(F.posexplode(F.slice("codes", 1, levels)).alias("level", "code"))
    rows = exploded.groupBy("level", "code").count().collect()
    notes = []
    if codebook_sizes is None:
        notes.append("codebook sizes unknown: each level's size is estimated as its largest code + 1")

    counts, metrics = [], {}
    for level in range(levels):
        used = {int(row["code"]): int(row["count"]) for row in rows if row["level"] == level}
        size = int(codebook_sizes[level]) if codebook_sizes is not None else max(used) + 1
        level_counts = np.zeros(max(size, max(used) + 1), dtype=np.int64)
        for code, count in used.items():
            level_counts[code] = count
        counts.append(level_counts)
        metrics[f"final/level_{level}/utilization"] = len(used) / size
        metrics[f"final/level_{level}/dead_codes"] = float(max(size - len(used), 0))
        metrics[f"final/level_{level}/perplexity"] = perplexity(level_counts)
    return counts, metrics, notes


def _reconstruction_metrics(frame: DataFrame, decode, levels: int) -> dict[str, float]:
    """Return final/reconstruction_mse (mean of (x - x_hat)^2 over items and dimensions) and
    final/reconstruction_relative (sum ||x - x_hat||^2 / sum ||x||^2), as in
    :func:`sid.metrics.reconstruction_error`, summed per partition in Spark."""
    from pyspark.sql import functions as F

    def partial_sums(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            vectors = np.stack(batch["embedding"].to_numpy()).astype(np.float64)
            codes = np.stack([np.asarray(row[:levels]) for row in batch["codes"]]).astype(np.int64)
            decoded = np.asarray(decode(codes), dtype=np.float64)
            yield pd.DataFrame({
                "items": [len(batch)],
                "squared_error": [float(np.square(vectors - decoded).sum())],
                "energy": [float(np.square(vectors).sum())],
                "values": [int(vectors.size)],
            })

    sums = (
        frame.select("codes", "embedding").mapInPandas(partial_sums, schema=RECONSTRUCTION_SCHEMA)
        .agg(*[F.sum(column).alias(column) for column in ("items", "squared_error", "energy", "values")])
        .collect()[0]
    )
    return {
        "final/reconstruction_mse": sums["squared_error"] / sums["values"],
        "final/reconstruction_relative": sums["squared_error"] / sums["energy"] if sums["energy"] else float("nan"),
    }


def _prefix_purity(frame: DataFrame, prefix_levels: int, category_depth: int) -> float:
    """Return :func:`sid.metrics.prefix_purity` computed with Spark aggregations.

    Items whose category path has fewer than ``category_depth`` names are not counted; NaN
    when no item is counted.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    labelled = (
        frame.where(F.size("categories") >= category_depth)
        .select(
            F.slice("codes", 1, prefix_levels).alias("prefix"),
            F.slice("categories", 1, category_depth).alias("category"),
        )
    )
    cells = labelled.groupBy("prefix", "category").count()
    largest = F.max("count").over(Window.partitionBy("prefix"))
    majority = cells.withColumn("largest", largest).where(F.col("count") == F.col("largest"))
    row = majority.select("prefix", "largest").distinct().agg(F.sum("largest").alias("majority")).collect()[0]
    counted = labelled.count()
    if counted == 0:
        logger.warning("prefix purity skipped: no item has a category path of depth %d", category_depth)
        return float("nan")
    return float(row["majority"]) / counted
