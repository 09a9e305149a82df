"""Corpus metrics computed over whole tables in Spark; only aggregates reach the driver."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sid.metrics.distribution import bucket_stats, perplexity

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["bucket_metrics", "level_metrics", "reconstruction_metrics", "resolution_metrics"]


def bucket_metrics(frame: DataFrame, codes_column: str) -> dict[str, float]:
    """Return :func:`sid.metrics.bucket_stats` of the SIDs in ``codes_column``."""
    from pyspark.sql import functions as F

    sizes = frame.groupBy(F.col(codes_column)).agg(F.count(F.lit(1)).alias("size"))
    histogram_rows = sizes.groupBy("size").agg(F.count(F.lit(1)).alias("sids")).collect()
    return bucket_stats({row["size"]: row["sids"] for row in histogram_rows})


def level_metrics(frame: DataFrame, codes_column: str, codebook_sizes: Sequence[int]) -> dict[str, float]:
    """Return utilization, dead codes and perplexity of each level of ``codes_column``."""
    from pyspark.sql import functions as F

    metrics: dict[str, float] = {}
    for level, size in enumerate(codebook_sizes):
        rows = frame.groupBy(F.col(codes_column)[level].alias("code")).count().collect()
        counts = np.array([row["count"] for row in rows], dtype=np.int64)
        used = len(rows)
        metrics[f"level_{level}/utilization"] = used / size
        metrics[f"level_{level}/dead_codes"] = float(size - used)
        metrics[f"level_{level}/perplexity"] = perplexity(counts)
    return metrics


def reconstruction_metrics(assigned: DataFrame) -> dict[str, float]:
    """Return the mean squared L2 reconstruction error per item and its ratio to the mean
    squared norm of the embeddings."""
    from pyspark.sql import functions as F

    row = assigned.agg(
        F.mean("quantization_error").alias("error"),
        F.mean("embedding_norm").alias("norm"),
        F.mean(F.size("raw_codes")).alias("levels"),
    ).collect()[0]
    return {
        "reconstruction_sse": float(row["error"]),
        "reconstruction_relative": float(row["error"] / row["norm"]) if row["norm"] else float("nan"),
    }


def resolution_metrics(resolved: DataFrame) -> dict[str, float]:
    """Return items moved, mean levels changed and distance increase per moved item, and
    the number of items at each resolution step (keep, reassign, widen, move_parent, append)."""
    from pyspark.sql import functions as F

    moved = F.col("moved")
    row = resolved.agg(
        F.sum(moved.cast("int")).alias("moved"),
        F.mean(F.when(moved, F.col("levels_changed"))).alias("levels"),
        F.mean(F.when(moved, F.col("distance_increase"))).alias("distance"),
    ).collect()[0]
    metrics = {
        "moved": float(row["moved"] or 0),
        "mean_levels_changed": float(row["levels"]) if row["levels"] is not None else 0.0,
        "mean_distance_increase": float(row["distance"]) if row["distance"] is not None else 0.0,
    }
    for step_row in resolved.groupBy("step").count().collect():
        metrics[f"step/{step_row['step']}"] = float(step_row["count"])
    return metrics
