"""The blocked encoder returns exactly what the one-matrix-per-level encoder returned."""

import numpy as np
import pytest

from sid.quantize import ResidualKMeans, encode_residual
from sid.quantize import residual as residual_module


def one_matrix_encode(vectors, codebooks, *, top_k=1, normalize_residuals=False):
    """The encoder before row blocks: one (n, K) float64 matrix per level, argpartition, lexsort."""

    def unit_rows(matrix):
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms > 0, norms, 1.0)

    def squared_distances(points, centroids):
        cross = points @ centroids.T
        distances = (points * points).sum(axis=1, keepdims=True) - 2.0 * cross + (centroids * centroids).sum(axis=1)
        return np.maximum(distances, 0.0)

    def nearest_sorted(distances, k):
        if k < distances.shape[1]:
            part = np.argpartition(distances, k - 1, axis=1)[:, :k]
            threshold = np.take_along_axis(distances, part, axis=1).max(axis=1, keepdims=True)
            if ((distances <= threshold).sum(axis=1) > k).any():
                part = np.argsort(distances, axis=1, kind="stable")[:, :k]
        else:
            part = np.tile(np.arange(distances.shape[1]), (distances.shape[0], 1))
        part_distances = np.take_along_axis(distances, part, axis=1)
        order = np.lexsort((part, part_distances), axis=1)
        return np.take_along_axis(part, order, axis=1)

    residual = np.asarray(vectors, dtype=np.float64).copy()
    n = residual.shape[0]
    k_max = max(1, min(top_k, min(len(codebook) for codebook in codebooks)))
    codes = np.zeros((n, len(codebooks)), dtype=np.int64)
    candidate_codes = np.zeros((n, len(codebooks), k_max), dtype=np.int64)
    candidate_distances = np.zeros((n, len(codebooks), k_max), dtype=np.float32)
    for level, codebook in enumerate(codebooks):
        centroids = np.asarray(codebook, dtype=np.float64)
        if normalize_residuals:
            distances = squared_distances(unit_rows(residual), unit_rows(centroids))
        else:
            distances = squared_distances(residual, centroids)
        nearest = nearest_sorted(distances, k_max)
        codes[:, level] = nearest[:, 0]
        candidate_codes[:, level] = nearest
        candidate_distances[:, level] = np.take_along_axis(distances, nearest, axis=1)
        residual -= centroids[nearest[:, 0]]
    return codes, candidate_codes, candidate_distances


def clustered(n, dim, seed):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(40, dim))
    return (means[rng.integers(0, 40, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


def tied_codebooks_and_vectors(seed):
    """Small-integer vectors and codebooks with repeated codewords: many exact distance ties."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-2, 3, size=(6, 4)).astype(np.float32)
    codebooks = [np.concatenate([base, base, base[:4]]) for _ in range(3)]
    vectors = rng.integers(-3, 4, size=(500, 4)).astype(np.float32)
    return vectors, codebooks


def assert_same(result, expected):
    codes, candidate_codes, candidate_distances = expected
    assert np.array_equal(result.codes, codes)
    assert np.array_equal(result.candidate_codes, candidate_codes)
    assert np.array_equal(result.candidate_distances, candidate_distances)


@pytest.fixture(scope="module")
def fitted():
    data = clustered(6000, 16, seed=1)
    return data, ResidualKMeans(codebook_sizes=[32, 16, 8], seed=2).fit(data)


@pytest.mark.parametrize("top_k", [1, 4, 8, 32])
def test_blocks_match_one_matrix(fitted, monkeypatch, top_k):
    data, quantizer = fitted
    monkeypatch.setattr(residual_module, "ENCODE_BLOCK_ROWS", 1000)
    result = encode_residual(data, quantizer.codebooks, top_k=top_k)
    assert_same(result, one_matrix_encode(data, quantizer.codebooks, top_k=top_k))


def test_cosine_blocks_match_one_matrix(fitted, monkeypatch):
    data, quantizer = fitted
    monkeypatch.setattr(residual_module, "ENCODE_BLOCK_ROWS", 777)
    result = encode_residual(data, quantizer.codebooks, top_k=5, normalize_residuals=True)
    assert_same(result, one_matrix_encode(data, quantizer.codebooks, top_k=5, normalize_residuals=True))


@pytest.mark.parametrize("top_k", [1, 3, 6, 16])
def test_ties_match_one_matrix(monkeypatch, top_k):
    vectors, codebooks = tied_codebooks_and_vectors(seed=top_k)
    monkeypatch.setattr(residual_module, "ENCODE_BLOCK_ROWS", 64)
    result = encode_residual(vectors, codebooks, top_k=top_k)
    assert_same(result, one_matrix_encode(vectors, codebooks, top_k=top_k))


@pytest.mark.parametrize("block_rows", [1, 7, 4096])
def test_block_size_does_not_change_codes(fitted, monkeypatch, block_rows):
    data, quantizer = fitted
    expected = encode_residual(data[:900], quantizer.codebooks, top_k=4)
    monkeypatch.setattr(residual_module, "ENCODE_BLOCK_ROWS", block_rows)
    assert_same(encode_residual(data[:900], quantizer.codebooks, top_k=4),
                (expected.codes, expected.candidate_codes, expected.candidate_distances))


def test_empty_input_gives_empty_result(fitted):
    _, quantizer = fitted
    result = encode_residual(np.zeros((0, 16), dtype=np.float32), quantizer.codebooks, top_k=3)
    assert result.codes.shape == (0, 3)
    assert result.candidate_codes.shape == (0, 3, 3)
