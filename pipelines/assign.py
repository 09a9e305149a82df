"""Assign stage: encode every item with broadcast codebooks in an Arrow UDF (mapInArrow).

The UDF reads each Arrow batch's embedding list column as one flat float32 array and
builds the list columns of its output from flat NumPy arrays and offsets, so no Python
object is made per item or per code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sid.errors import QuantizerError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["ASSIGN_SCHEMA", "assign_codes", "encode_batch"]

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

    def encode_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        model = broadcast.value
        for batch in batches:
            if batch.num_rows:
                yield encode_batch(batch, model, top_k=top_k)

    return embeddings.select("item_id", "embedding").mapInArrow(encode_partition, schema=ASSIGN_SCHEMA)


def encode_batch(batch: pa.RecordBatch, quantizer, *, top_k: int) -> pa.RecordBatch:
    """Encode one Arrow batch (item_id, embedding) into the ``ASSIGN_SCHEMA`` columns.

    Raises QuantizerError when an embedding is null or the embeddings of the batch differ
    in length.
    """
    item_ids = batch.column("item_id")
    vectors = _vectors(item_ids, batch.column("embedding"))
    latent = np.asarray(quantizer.to_latent(vectors), dtype=np.float32)
    result = quantizer.encode(vectors, top_k=top_k)
    vectors64 = vectors.astype(np.float64)
    error = ((vectors64 - quantizer.decode(result.codes).astype(np.float64)) ** 2).sum(axis=1)

    return pa.RecordBatch.from_arrays(
        [
            item_ids,
            _nested_list(result.codes.astype(np.int32), depth=1),
            _nested_list(result.candidate_codes.astype(np.int32), depth=2),
            _nested_list(result.candidate_distances.astype(np.float32), depth=2),
            _nested_list(latent, depth=1),
            pa.array(error, type=pa.float64()),
            pa.array((vectors64**2).sum(axis=1), type=pa.float64()),
        ],
        names=["item_id", "raw_codes", "candidate_codes", "candidate_distances", "latent", "quantization_error",
               "embedding_norm"],
    )


def _vectors(item_ids: pa.Array, embeddings: pa.Array) -> np.ndarray:
    """Return the list column ``embeddings`` as a float32 (rows, dim) array."""
    if embeddings.null_count:
        first = item_ids[int(np.flatnonzero(embeddings.is_null().to_numpy(zero_copy_only=False))[0])]
        raise QuantizerError(f"{embeddings.null_count} items have a null embedding (first item_id {first}); "
                             "quarantine them before the assign stage")
    lengths = pc.list_value_length(embeddings).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        first = item_ids[int(np.flatnonzero(lengths != lengths[0])[0])]
        raise QuantizerError(
            f"embeddings in one batch have lengths from {lengths.min()} to {lengths.max()} "
            f"(item_id {first} differs from the first item); every embedding of a version must have one length"
        )
    flat = pc.list_flatten(embeddings).to_numpy(zero_copy_only=False)
    dim = int(lengths[0]) if len(lengths) else 0
    return np.asarray(flat, dtype=np.float32).reshape(len(embeddings), dim)


def _nested_list(values: np.ndarray, *, depth: int) -> pa.Array:
    """Return ``values`` of shape (rows, ..., last) as ``depth`` nested Arrow list levels.

    depth=1 turns (rows, width) into list<item>; depth=2 turns (rows, levels, width) into
    list<list<item>>.
    """
    array = np.ascontiguousarray(values)
    nested: pa.Array = pa.array(array.reshape(-1))
    for axis in range(array.ndim - 1, array.ndim - 1 - depth, -1):
        width = array.shape[axis]
        count = int(np.prod(array.shape[:axis]))
        offsets = pa.array(np.arange(0, (count + 1) * width, width, dtype=np.int32))
        nested = pa.ListArray.from_arrays(offsets, nested)
    return nested
