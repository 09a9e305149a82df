"""Collaborative item vectors from co-occurrence counts: weighting and seeded truncated SVD.

Items that co-occur in user sequences get close vectors. GPTRec (Petrov and Macdonald,
arXiv 2306.11114) takes item vectors from an SVD of the user-item matrix. Here the item-item
co-occurrence matrix is factorized instead, because its counts aggregate in Spark without a
row per user. The SVD is the randomized algorithm of Halko, Martinsson and Tropp ("Finding
structure with randomness", 2011) with a seeded Gaussian start, so the same counts and seed
give the same vectors.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["cooccurrence_matrix", "item_vectors_from_counts", "truncated_svd", "weight_counts"]

Weighting = Literal["ppmi", "log"]


def cooccurrence_matrix(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, n_items: int):
    """Return a symmetric scipy CSR matrix (n_items, n_items), float64, from (row, col, count).

    Each unordered pair may be given once or in both directions; both directions end in
    the matrix. Duplicated entries are summed.
    """
    from scipy import sparse

    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    upper = sparse.coo_matrix((counts, (rows, cols)), shape=(n_items, n_items)).tocsr()
    symmetric = upper + upper.T
    symmetric.setdiag(0)
    symmetric.eliminate_zeros()
    return symmetric.tocsr()


def weight_counts(matrix, weighting: Weighting):
    """Return the co-occurrence matrix re-weighted: PPMI or log(1 + count), CSR float64.

    PPMI(i, j) = max(0, log(c_ij * total / (c_i * c_j))), the standard count weighting of
    distributional semantics; it stops popular items from dominating every direction.
    """
    matrix = matrix.tocoo()
    if weighting == "log":
        values = np.log1p(matrix.data)
    elif weighting == "ppmi":
        row_sums = np.asarray(matrix.sum(axis=1)).ravel()
        total = row_sums.sum()
        with np.errstate(divide="ignore"):
            pmi = np.log(matrix.data * total / (row_sums[matrix.row] * row_sums[matrix.col]))
        values = np.maximum(pmi, 0.0)
    else:
        raise ValueError(f"weighting={weighting!r} is invalid; choose 'ppmi' or 'log'")
    from scipy import sparse

    weighted = sparse.coo_matrix((values, (matrix.row, matrix.col)), shape=matrix.shape).tocsr()
    weighted.eliminate_zeros()
    return weighted


def truncated_svd(matrix, dim: int, *, seed: int, oversampling: int = 10,
                  power_iterations: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Return (U (n, dim), singular values (dim,)) of the top ``dim`` singular triplets, float64.

    Randomized range finder with ``power_iterations`` QR-stabilized power steps. Each
    column of U has its sign fixed so that its largest-magnitude entry is positive.
    """
    n_rows, n_cols = matrix.shape
    rank = min(dim + oversampling, n_rows, n_cols)
    if dim > rank:
        raise ValueError(f"dim={dim} exceeds the matrix size {matrix.shape}; lower embed.collaborative.dim")
    rng = np.random.default_rng(seed)
    sketch = matrix @ rng.standard_normal((n_cols, rank))
    basis, _ = np.linalg.qr(sketch)
    for _ in range(power_iterations):
        basis, _ = np.linalg.qr(matrix.T @ basis)
        basis, _ = np.linalg.qr(matrix @ basis)
    small = (matrix.T @ basis).T
    u_small, singular_values, _ = np.linalg.svd(small, full_matrices=False)
    u = basis @ u_small[:, :dim]
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(dim)])
    return u * np.where(signs == 0, 1.0, signs), singular_values[:dim]


def item_vectors_from_counts(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, n_items: int, *,
                             dim: int, seed: int, weighting: Weighting = "ppmi", oversampling: int = 10,
                             power_iterations: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Return (float32 (n_items, dim) vectors, bool (n_items,) has-signal mask).

    Vectors are ``U * sqrt(singular values)``, the symmetric split of the factorization.
    An item whose weighted row is empty (no co-occurrence left after weighting) or whose
    vector is zero gets False in the mask. ``dim`` is capped at n_items - 1.
    """
    matrix = weight_counts(cooccurrence_matrix(rows, cols, counts, n_items), weighting)
    has_signal = np.diff(matrix.indptr) > 0
    dim = min(dim, max(1, n_items - 1))
    u, singular_values = truncated_svd(matrix, dim, seed=seed, oversampling=oversampling,
                                       power_iterations=power_iterations)
    vectors = u * np.sqrt(singular_values)
    has_signal &= np.linalg.norm(vectors, axis=1) > 0
    return vectors.astype(np.float32), has_signal
