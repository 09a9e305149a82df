"""Resolve stage: make every SID unique, grouped by raw SID in Spark."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from sid.config import ResolveConfig
from sid.resolve.suffix import resolve_suffix

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["RESOLVED_SCHEMA", "resolve_sids"]

RESOLVED_SCHEMA = "item_id STRING, codes ARRAY<INT>, collided BOOLEAN"


def resolve_sids(assigned: DataFrame, config: ResolveConfig) -> DataFrame:
    """Return (item_id, codes, collided), one row per input row, with unique codes.

    ``assigned`` needs item_id, raw_codes, popularity and priority_hash. Items that share a
    raw SID are resolved together in one pandas group, in the priority order.
    """
    from pyspark.sql import functions as F

    mode = config.suffix_mode

    def resolve_group(group: pd.DataFrame) -> pd.DataFrame:
        return resolve_suffix(group, mode=mode)

    return (
        assigned.select("item_id", "raw_codes", "popularity", "priority_hash")
        .withColumn("_raw_sid", F.concat_ws(",", F.col("raw_codes").cast("array<string>")))
        .groupBy("_raw_sid")
        .applyInPandas(lambda frame: resolve_group(frame.drop(columns=["_raw_sid"])), schema=RESOLVED_SCHEMA)
    )
