"""Resolve stage: make every SID unique (or capped), grouped by SID prefix in Spark.

``suffix`` groups items by their full raw SID. The re-assignment strategies (``forge_knn``,
``forge_random``, ``ecm``, ``rrs``) group items by their first L-1 codes (a band), resolve
last-level moves per band in ``applyInPandas``, then finish the few items left ``pending``
in one global pass on the driver.

An incremental run passes ``taken``, the SIDs already published: they are never handed
out again. Then every group of new items goes through ``applyInPandas`` with the taken SIDs
that share its prefix.
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
    taken: DataFrame | None = None,
) -> DataFrame:
    """Return ``RESOLVED_COLUMNS`` (item_id, codes, collided, moved, levels_changed,
    distance_increase, step), one row per row of ``assigned``.

    ``assigned`` needs item_id, raw_codes, popularity and priority_hash; the re-assignment
    strategies also need candidate_codes, candidate_distances and latent (the vector the
    codebooks quantize).

    ``taken``: a frame with column ``codes`` (array<int>) of SIDs that must not be handed
    out, e.g. the published SIDs of the active version in an incremental run.
    """
    if taken is not None:
        if config.strategy == "suffix":
            return _resolve_suffix_against(assigned, config, taken, levels=len(codebooks))
        return _resolve_bands(assigned, config, codebooks=codebooks, seed=seed, taken=taken)
    if config.strategy == "suffix":
        return _resolve_suffix(assigned, config)
    return _resolve_bands(assigned, config, codebooks=codebooks, seed=seed)


def _resolve_suffix_against(assigned: DataFrame, config: ResolveConfig, taken: DataFrame, *, levels: int) -> DataFrame:
    """Suffix strategy for new items next to published SIDs: one pandas call per raw SID,
    with the taken SIDs that start with that raw SID."""
    from pyspark.sql import functions as F

    from sid.resolve.suffix import resolve_suffix

    mode = config.suffix_mode
    taken_by_raw = (
        taken.select(F.slice(F.col("codes"), 1, levels).alias("raw_codes"), F.col("codes"))
        .groupBy("raw_codes").agg(F.collect_list("codes").alias("_taken"))
    )
    grouped = assigned.select("item_id", "raw_codes", "popularity", "priority_hash").join(
        taken_by_raw, "raw_codes", "left")

    def resolve_group(group: pd.DataFrame) -> pd.DataFrame:
        first = group["_taken"].iloc[0]
        taken_sids = [tuple(int(code) for code in sid) for sid in first] if first is not None else []
        raw = tuple(int(code) for code in group["raw_codes"].iloc[0])
        result = resolve_suffix(group.drop(columns=["_taken"]), taken=taken_sids, mode=mode)
        return pd.DataFrame({
            "item_id": result["item_id"],
            "codes": result["codes"],
            "collided": result["collided"] | any(sid[:len(raw)] == raw for sid in taken_sids),
            "moved": False,
            "levels_changed": 0,
            "distance_increase": 0.0,
            "step": ["append" if len(codes) > len(raw) else "keep" for codes in result["codes"]],
        })[RESOLVED_COLUMNS]

    return grouped.groupBy("raw_codes").applyInPandas(resolve_group, schema=RESOLVED_SCHEMA)


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


def _resolve_bands(assigned: DataFrame, config: ResolveConfig, *, codebooks, seed: int,
                   taken: DataFrame | None = None) -> DataFrame:
    from pyspark.sql import functions as F

    resolver = make_resolver(config, seed=seed)
    levels = [np.asarray(codebook, dtype=np.float32) for codebook in codebooks]

    def resolve_band(group: pd.DataFrame) -> pd.DataFrame:
        band_taken = ()
        if "_taken" in group.columns:
            first = group["_taken"].iloc[0]
            band_taken = [tuple(int(code) for code in sid) for sid in first] if first is not None else []
            group = group.drop(columns=["_taken"])
        resolved = resolver.resolve_group(group.drop(columns=["_band"]), taken=band_taken, codebooks=levels)
        return resolved[RESOLVED_COLUMNS]

    # Stage 1: last-level moves inside each band of equal first L-1 codes. Only bands that
    # hold an over-full raw SID need a Python call; every other item keeps its raw SID.
    from pyspark.sql import Window

    inputs = assigned.withColumnRenamed("latent", "embedding").select(*BAND_INPUT_COLUMNS)
    band = F.slice(F.col("raw_codes"), 1, F.size("raw_codes") - 1)
    if taken is not None:
        # New items next to published SIDs: every band goes through the resolver, with
        # the taken SIDs of that band.
        band_taken = (
            taken.select(F.slice(F.col("codes"), 1, len(levels) - 1).alias("_band"), F.col("codes"))
            .groupBy("_band").agg(F.collect_list("codes").alias("_taken"))
        )
        banded = (
            inputs.withColumn("_band", band).join(band_taken, "_band", "left")
            .groupBy("_band").applyInPandas(resolve_band, schema=RESOLVED_SCHEMA)
        ).persist()
        return _finish_pending(banded, inputs, resolver, config, levels, taken=taken)

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
    return _finish_pending(banded, inputs, resolver, config, levels)


def _finish_pending(banded: DataFrame, inputs: DataFrame, resolver, config: ResolveConfig, levels,
                    taken: DataFrame | None = None) -> DataFrame:
    """Resolve the items that stage 1 left pending in one pass on the driver."""
    from pyspark.sql import functions as F

    pending_ids = [row.item_id for row in banded.where(F.col("step") == STEP_PENDING).select("item_id").collect()]
    if not pending_ids:
        return banded
    pending = inputs.where(F.col("item_id").isin(pending_ids)).toPandas()

    # Stage 2 runs on the driver. Only assigned and taken SIDs in the bands that the pending
    # items can reach can change its result, so only those are collected.
    # NOTE: when the pending items reach most bands, every SID still comes to the driver.
    spark = inputs.sparkSession
    bands = resolver.reachable_bands(pending, codebooks=levels)
    band_frame = spark.createDataFrame([(list(band),) for band in sorted(bands)], "_band ARRAY<INT>")
    done = banded.where(F.col("step") != STEP_PENDING)
    assigned_sids = _collect_within(done, band_frame, len(levels))
    taken_sids = _collect_within(taken, band_frame, len(levels)) if taken is not None else []
    logger.info("resolve strategy=%s pending=%d items reach %d bands; the global pass gets %d assigned and "
                "%d taken SIDs", config.strategy, len(pending_ids), len(bands), len(assigned_sids), len(taken_sids))

    finished = resolver.resolve_pending(pending, assigned=assigned_sids, taken=taken_sids, codebooks=levels)
    finished_frame = spark.createDataFrame(_spark_rows(finished[RESOLVED_COLUMNS]), schema=RESOLVED_SCHEMA)
    return done.unionByName(finished_frame)


def _collect_within(frame: DataFrame, band_frame: DataFrame, levels: int) -> list[tuple[int, ...]]:
    """Return the ``codes`` of ``frame`` whose first ``levels`` - 1 codes are a band of ``band_frame``."""
    from pyspark.sql import functions as F

    banded = frame.select("codes", F.slice(F.col("codes"), 1, levels - 1).alias("_band"))
    within = banded.join(F.broadcast(band_frame), "_band", "left_semi")
    return [tuple(row.codes) for row in within.select("codes").collect()]


def _spark_rows(frame: pd.DataFrame) -> list[tuple]:
    rows = []
    for record in frame.itertuples(index=False):
        rows.append((
            str(record.item_id), [int(code) for code in record.codes], bool(record.collided), bool(record.moved),
            int(record.levels_changed), float(record.distance_increase), str(record.step),
        ))
    return rows
