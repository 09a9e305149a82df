"""Resolve stage: make every SID unique (or capped), grouped by SID prefix in Spark.

``suffix`` groups items by their full raw SID. The re-assignment strategies (``forge_knn``,
``forge_random``, ``ecm``, ``rrs``) group items by their first L-1 codes (a band), resolve
last-level moves per band in ``applyInPandas``, then finish the few items left ``pending``
in one global pass on the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sid.config import ResolveConfig
from sid.resolve import EcmResolver, ForgeResolver, RrsResolver
from sid.resolve.result import RESOLVED_COLUMNS, RESOLVED_SCHEMA, STEP_PENDING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["RESOLVED_SCHEMA", "make_resolver", "resolve_sids"]

logger = logging.getLogger(__name__)

BAND_INPUT_COLUMNS = [
    "item_id", "raw_codes", "popularity", "priority_hash", "candidate_codes", "candidate_distances", "embedding",
]


def make_resolver(config: ResolveConfig, *, seed: int):
    """Return the band resolver of ``config.strategy`` (not used for ``suffix``)."""
    if config.strategy == "forge_knn":
        return ForgeResolver(capacity=config.capacity, variant="knn", seed=seed)
    if config.strategy == "forge_random":
        return ForgeResolver(capacity=config.capacity, variant="random", seed=seed)
    if config.strategy == "ecm":
        return EcmResolver()
    if config.strategy == "rrs":
        return RrsResolver()
    raise ValueError(f"resolve.strategy={config.strategy!r} has no band resolver")


def resolve_sids(
    assigned: DataFrame,
    config: ResolveConfig,
    *,
    codebooks: Sequence[np.ndarray],
    seed: int,
) -> DataFrame:
    """Return ``RESOLVED_COLUMNS`` (item_id, codes, collided, moved, levels_changed,
    distance_increase, step), one row per row of ``assigned``.

    ``assigned`` needs item_id, raw_codes, popularity and priority_hash; the re-assignment
    strategies also need candidate_codes, candidate_distances and latent (the vector the
    codebooks quantize).
    """
    if config.strategy == "suffix":
        return _resolve_suffix(assigned, config)
    return _resolve_bands(assigned, config, codebooks=codebooks, seed=seed)


def _resolve_suffix(assigned: DataFrame, config: ResolveConfig) -> DataFrame:
    """Spark SQL form of :func:`sid.resolve.suffix.resolve_suffix` for a build with no taken SIDs.

    The extra code is the item's rank inside its raw SID in the priority order, which is
    what the library function returns when nothing is taken; a window function does it
    without a Python call per group.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_sid = Window.partitionBy("raw_codes")
    rank = F.row_number().over(by_sid.orderBy(F.col("popularity").desc(), F.col("priority_hash").asc())) - 1
    size = F.count(F.lit(1)).over(by_sid)
    frame = (
        assigned.select("item_id", "raw_codes", "popularity", "priority_hash")
        .withColumn("_rank", rank)
        .withColumn("_size", size)
    )
    append = F.lit(True) if config.suffix_mode == "all" else F.col("_size") > 1
    return frame.select(
        "item_id",
        F.when(append, F.concat(F.col("raw_codes"), F.array(F.col("_rank").cast("int")))).otherwise(F.col("raw_codes")).alias("codes"),
        (F.col("_size") > 1).alias("collided"),
        F.lit(False).alias("moved"),
        F.lit(0).alias("levels_changed"),
        F.lit(0.0).cast("double").alias("distance_increase"),
        F.when(append, F.lit("append")).otherwise(F.lit("keep")).alias("step"),
    )


def _resolve_bands(assigned: DataFrame, config: ResolveConfig, *, codebooks, seed: int) -> DataFrame:
    from pyspark.sql import functions as F

    resolver = make_resolver(config, seed=seed)
    levels = [np.asarray(codebook, dtype=np.float32) for codebook in codebooks]

    def resolve_band(group: pd.DataFrame) -> pd.DataFrame:
        resolved = resolver.resolve_group(group.drop(columns=["_band"]), taken=(), codebooks=levels)
        return resolved[RESOLVED_COLUMNS]

    # Stage 1: last-level moves inside each band of equal first L-1 codes. Only bands that
    # hold an over-full raw SID need a Python call; every other item keeps its raw SID.
    from pyspark.sql import Window

    inputs = assigned.withColumnRenamed("latent", "embedding").select(*BAND_INPUT_COLUMNS)
    band = F.slice(F.col("raw_codes"), 1, F.size("raw_codes") - 1)
    over_full = F.count(F.lit(1)).over(Window.partitionBy("raw_codes")) > config.capacity
    flagged = (
        inputs.withColumn("_band", band)
        .withColumn("_over_full", over_full)
        .withColumn("_band_over_full", F.max(F.col("_over_full").cast("int")).over(Window.partitionBy("_band")) > 0)
    )
    calm = flagged.where(~F.col("_band_over_full")).select(
        "item_id",
        F.col("raw_codes").alias("codes"),
        F.lit(False).alias("collided"),
        F.lit(False).alias("moved"),
        F.lit(0).alias("levels_changed"),
        F.lit(0.0).cast("double").alias("distance_increase"),
        F.lit("keep").alias("step"),
    )
    contested = flagged.where(F.col("_band_over_full")).drop("_over_full", "_band_over_full")
    banded = calm.unionByName(
        contested.groupBy("_band").applyInPandas(resolve_band, schema=RESOLVED_SCHEMA)
    ).persist()

    pending_ids = [row.item_id for row in banded.where(F.col("step") == STEP_PENDING).select("item_id").collect()]
    if not pending_ids:
        return banded
    logger.info("resolve strategy=%s pending=%d items go to the global pass", config.strategy, len(pending_ids))

    # Stage 2: the leftovers on the driver, against every SID stage 1 handed out.
    # NOTE: this collects the SIDs of all resolved items to the driver; fine up to tens of
    # millions of items, but a catalog beyond that needs a distributed second stage.
    done = banded.where(F.col("step") != STEP_PENDING)
    assigned_sids = [tuple(row.codes) for row in done.select("codes").collect()]
    pending = inputs.where(F.col("item_id").isin(pending_ids)).toPandas()
    finished = resolver.resolve_pending(pending, assigned=assigned_sids, taken=(), codebooks=levels)
    spark = assigned.sparkSession
    finished_frame = spark.createDataFrame(_spark_rows(finished[RESOLVED_COLUMNS]), schema=RESOLVED_SCHEMA)
    return done.unionByName(finished_frame)


def _spark_rows(frame: pd.DataFrame) -> list[tuple]:
    rows = []
    for record in frame.itertuples(index=False):
        rows.append((
            str(record.item_id), [int(code) for code in record.codes], bool(record.collided), bool(record.moved),
            int(record.levels_changed), float(record.distance_increase), str(record.step),
        ))
    return rows
