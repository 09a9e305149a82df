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
from sid.resolve.suffix import resolve_suffix

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
    strategies also need candidate_codes, candidate_distances and embedding.
    """
    if config.strategy == "suffix":
        return _resolve_suffix(assigned, config)
    return _resolve_bands(assigned, config, codebooks=codebooks, seed=seed)


def _resolve_suffix(assigned: DataFrame, config: ResolveConfig) -> DataFrame:
    from pyspark.sql import functions as F

    mode = config.suffix_mode

    def resolve_group(group: pd.DataFrame) -> pd.DataFrame:
        resolved = resolve_suffix(group.drop(columns=["_raw_sid"]), mode=mode)
        appended = resolved["codes"].map(len) > len(group["raw_codes"].iloc[0])
        resolved["moved"] = False
        resolved["levels_changed"] = 0
        resolved["distance_increase"] = 0.0
        resolved["step"] = np.where(appended, "append", "keep")
        return resolved[RESOLVED_COLUMNS]

    return (
        assigned.select("item_id", "raw_codes", "popularity", "priority_hash")
        .withColumn("_raw_sid", F.concat_ws(",", F.col("raw_codes").cast("array<string>")))
        .groupBy("_raw_sid")
        .applyInPandas(resolve_group, schema=RESOLVED_SCHEMA)
    )


def _resolve_bands(assigned: DataFrame, config: ResolveConfig, *, codebooks, seed: int) -> DataFrame:
    from pyspark.sql import functions as F

    resolver = make_resolver(config, seed=seed)
    levels = [np.asarray(codebook, dtype=np.float32) for codebook in codebooks]

    def resolve_band(group: pd.DataFrame) -> pd.DataFrame:
        resolved = resolver.resolve_group(group.drop(columns=["_band"]), taken=(), codebooks=levels)
        return resolved[RESOLVED_COLUMNS]

    # Stage 1: last-level moves inside each band of equal first L-1 codes.
    inputs = assigned.select(*BAND_INPUT_COLUMNS)
    band = F.concat_ws(",", F.slice(F.col("raw_codes"), 1, F.size("raw_codes") - 1).cast("array<string>"))
    banded = inputs.withColumn("_band", band).groupBy("_band").applyInPandas(resolve_band, schema=RESOLVED_SCHEMA)
    banded = banded.persist()

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
