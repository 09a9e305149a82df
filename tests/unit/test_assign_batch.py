"""The assign stage's Arrow batch encoder, without Spark."""

import numpy as np
import pyarrow as pa
import pytest

from pipelines.assign import encode_batch
from sid.errors import QuantizerError
from sid.quantize import ResidualKMeans

# ASSIGN_SCHEMA as Spark maps it to Arrow when spark.sql.execution.arrow.useLargeVarTypes is false.
EXPECTED_SCHEMA = pa.schema([
    ("item_id", pa.string()),
    ("raw_codes", pa.list_(pa.int32())),
    ("candidate_codes", pa.list_(pa.list_(pa.int32()))),
    ("candidate_distances", pa.list_(pa.list_(pa.float32()))),
    ("latent", pa.list_(pa.float32())),
    ("quantization_error", pa.float64()),
    ("embedding_norm", pa.float64()),
])


@pytest.fixture(scope="module")
def quantizer_and_vectors():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1200, 8)).astype(np.float32)
    return ResidualKMeans(codebook_sizes=[16, 8, 4], seed=0).fit(vectors), vectors


def make_batch(vectors, ids=None):
    ids = ids if ids is not None else [f"item-{index}" for index in range(len(vectors))]
    embedding = pa.array([row.tolist() for row in vectors], type=pa.list_(pa.float32()))
    return pa.RecordBatch.from_arrays([pa.array(ids, pa.string()), embedding], names=["item_id", "embedding"])


def test_columns_match_quantizer(quantizer_and_vectors):
    quantizer, vectors = quantizer_and_vectors
    out = encode_batch(make_batch(vectors[:50]), quantizer, top_k=3)
    expected = quantizer.encode(vectors[:50], top_k=3)
    assert out.schema == EXPECTED_SCHEMA
    assert out.column("item_id").to_pylist() == [f"item-{index}" for index in range(50)]
    assert out.column("raw_codes").to_pylist() == expected.codes.tolist()
    assert out.column("candidate_codes").to_pylist() == expected.candidate_codes.tolist()
    assert np.array_equal(np.array(out.column("candidate_distances").to_pylist(), dtype=np.float32),
                          expected.candidate_distances)
    assert np.array_equal(np.array(out.column("latent").to_pylist(), dtype=np.float32), vectors[:50])


def test_errors_and_norms(quantizer_and_vectors):
    quantizer, vectors = quantizer_and_vectors
    out = encode_batch(make_batch(vectors[:20]), quantizer, top_k=1)
    data = vectors[:20].astype(np.float64)
    reconstruction = quantizer.decode(quantizer.encode(vectors[:20]).codes).astype(np.float64)
    assert np.allclose(out.column("quantization_error").to_numpy(), ((data - reconstruction) ** 2).sum(axis=1))
    assert np.allclose(out.column("embedding_norm").to_numpy(), (data**2).sum(axis=1))


def test_sliced_batch_encodes_its_own_rows(quantizer_and_vectors):
    quantizer, vectors = quantizer_and_vectors
    whole = encode_batch(make_batch(vectors[:100]), quantizer, top_k=2)
    part = encode_batch(make_batch(vectors[:100]).slice(30, 25), quantizer, top_k=2)
    assert part.column("item_id").to_pylist() == whole.column("item_id").to_pylist()[30:55]
    assert part.column("candidate_codes").to_pylist() == whole.column("candidate_codes").to_pylist()[30:55]


def test_null_embedding_rejected(quantizer_and_vectors):
    quantizer, vectors = quantizer_and_vectors
    embedding = pa.array([vectors[0].tolist(), None], type=pa.list_(pa.float32()))
    batch = pa.RecordBatch.from_arrays([pa.array(["a", "b"]), embedding], names=["item_id", "embedding"])
    with pytest.raises(QuantizerError, match="1 items have a null embedding.*item_id b"):
        encode_batch(batch, quantizer, top_k=1)


def test_mixed_lengths_rejected(quantizer_and_vectors):
    quantizer, vectors = quantizer_and_vectors
    embedding = pa.array([vectors[0].tolist(), vectors[1][:4].tolist()], type=pa.list_(pa.float32()))
    batch = pa.RecordBatch.from_arrays([pa.array(["a", "b"]), embedding], names=["item_id", "embedding"])
    with pytest.raises(QuantizerError, match="lengths from 4 to 8.*item_id b"):
        encode_batch(batch, quantizer, top_k=1)
