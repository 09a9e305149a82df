"""Collaborative vectors: weighting, seeded truncated SVD and masks."""

import numpy as np
import pytest

from sid.embed.collaborative import cooccurrence_matrix, item_vectors_from_counts, truncated_svd, weight_counts


def block_counts(seed: int = 0):
    """Counts of two communities of 10 items each, plus item 20 that co-occurs with nothing."""
    rng = np.random.default_rng(seed)
    rows, cols, counts = [], [], []
    for group in (range(0, 10), range(10, 20)):
        for a in group:
            for b in group:
                if a < b:
                    rows.append(a)
                    cols.append(b)
                    counts.append(int(rng.integers(1, 5)))
    rows.append(0)
    cols.append(10)
    counts.append(1)
    return np.array(rows), np.array(cols), np.array(counts)


def test_matrix_is_symmetric_without_diagonal():
    matrix = cooccurrence_matrix(np.array([0, 1, 2]), np.array([1, 2, 2]), np.array([3, 1, 5]), 3).toarray()
    np.testing.assert_array_equal(matrix, matrix.T)
    assert np.all(np.diag(matrix) == 0)
    assert matrix[0, 1] == 3


def test_ppmi_is_non_negative():
    rows, cols, counts = block_counts()
    weighted = weight_counts(cooccurrence_matrix(rows, cols, counts, 21), "ppmi")
    assert weighted.data.min() >= 0


def test_truncated_svd_matches_full_svd():
    rows, cols, counts = block_counts()
    matrix = weight_counts(cooccurrence_matrix(rows, cols, counts, 21), "log")
    _, values = truncated_svd(matrix, 3, seed=0, power_iterations=6)
    reference = np.linalg.svd(matrix.toarray(), compute_uv=False)[:3]
    np.testing.assert_allclose(values, reference, rtol=1e-6)


def test_same_seed_same_vectors():
    rows, cols, counts = block_counts()
    first, _ = item_vectors_from_counts(rows, cols, counts, 21, dim=4, seed=7)
    second, _ = item_vectors_from_counts(rows, cols, counts, 21, dim=4, seed=7)
    np.testing.assert_array_equal(first, second)


def test_input_order_does_not_change_vectors():
    rows, cols, counts = block_counts()
    order = np.random.default_rng(1).permutation(len(rows))
    first, _ = item_vectors_from_counts(rows, cols, counts, 21, dim=4, seed=7)
    shuffled, _ = item_vectors_from_counts(rows[order], cols[order], counts[order], 21, dim=4, seed=7)
    np.testing.assert_array_equal(first, shuffled)


def test_item_without_cooccurrence_is_masked():
    rows, cols, counts = block_counts()
    vectors, has_signal = item_vectors_from_counts(rows, cols, counts, 21, dim=4, seed=0)
    assert vectors.shape == (21, 4)
    assert not has_signal[20]
    assert has_signal[:20].all()


def test_communities_are_closer_inside():
    rows, cols, counts = block_counts()
    vectors, _ = item_vectors_from_counts(rows, cols, counts, 21, dim=2, seed=0, weighting="log")
    unit = vectors[:20] / np.linalg.norm(vectors[:20], axis=1, keepdims=True)
    similarity = unit @ unit.T
    inside = similarity[1:10, 1:10][np.triu_indices(9, 1)].mean()
    across = similarity[1:10, 11:20].mean()
    assert inside > across


def test_unknown_weighting_raises():
    rows, cols, counts = block_counts()
    with pytest.raises(ValueError, match="weighting='tfidf' is invalid"):
        weight_counts(cooccurrence_matrix(rows, cols, counts, 21), "tfidf")
