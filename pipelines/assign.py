"""Assign stage: encode every item with broadcast codebooks in a pandas UDF."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd


if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["ASSIGN_SCHEMA", "assign_codes"]

ASSIGN_SCHEMA = (
    "item_id STRING, raw_codes ARRAY<INT>, candidate_codes ARRAY<ARRAY<INT>>, "
    "candidate_distances ARRAY<ARRAY<FLOAT>>, latent ARRAY<FLOAT>, quantization_error DOUBLE, "
    "embedding_norm DOUBLE"
)


def assign_codes(embeddings: DataFrame, quantizer, *, top_k: int) -> DataFrame:
    """Return, per item of ``embeddings`` (item_id, embedding), its raw codes and candidates.

    ``quantizer`` is broadcast to the executors. Columns: raw_codes (L ints),
    candidate_codes and candidate_distances (L lists of top_k, nearest first, squared L2 to
    the greedy residual), latent (the vector the codebooks quantize, which the
    re-assignment resolvers search with), quantization_error (squared L2 distance between
    the embedding and quantizer.decode(raw_codes)) and embedding_norm (squared L2 norm of
    the embedding).
    """
    spark = embeddings.sparkSession
    broadcast = spark.sparkContext.broadcast(quantizer)

    def encode_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = broadcast.value
        for batch in batches:
            if batch.empty:
                continue
            vectors = np.stack(batch["embedding"].to_numpy()).astype(np.float32)
            latent = model.to_latent(vectors)
            result = model.encode(vectors, top_k=top_k)
            reconstruction = model.decode(result.codes).astype(np.float64)
            error = ((vectors.astype(np.float64) - reconstruction) ** 2).sum(axis=1)
            yield pd.DataFrame(
                {
                    "item_id": batch["item_id"].to_numpy(),
                    "raw_codes": list(result.codes.astype(np.int32)),
                    "candidate_codes": [row.tolist() for row in result.candidate_codes.astype(np.int32)],
                    "candidate_distances": [row.tolist() for row in result.candidate_distances],
                    "latent": list(np.asarray(latent, dtype=np.float32)),
                    "quantization_error": error,
                    "embedding_norm": (vectors.astype(np.float64) ** 2).sum(axis=1),
                }
            )

    return embeddings.select("item_id", "embedding").mapInPandas(encode_partition, schema=ASSIGN_SCHEMA)
