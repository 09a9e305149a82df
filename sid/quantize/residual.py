"""Greedy residual encoding shared by every residual quantizer.

Residual quantization (as in TIGER, "Recommender Systems with Generative Retrieval",
arXiv 2305.05065, and FORGE, arXiv 2509.20904): r_1 = x, c_l = argmin_j ||r_l - C_l[j]||^2,
r_{l+1} = r_l - C_l[c_l]. Distances are computed in float64 so that an item's codes do not
depend on which other rows share its batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from sid.errors import QuantizerError

__all__ = ["EncodeResult", "check_vectors", "decode_residual", "encode_residual"]

# Rows encoded together, so that a block's (rows x K) float64 distance matrix stays in the
# CPU cache. On 40,000 vectors of 64 or 256 dims with 3 levels of 256 codes, blocks of 4096
# rows encoded 1.3x (top-1) to 2.2x (top-10) faster than one matrix for the whole batch.
# That was measured on one thread of a shared 2-core AMD EPYC VM. Each row is encoded on
# its own, so the block size does not change any code.
ENCODE_BLOCK_ROWS = 4096


@dataclasses.dataclass(frozen=True)
class EncodeResult:
    """Codes of n items over L levels, with the top-k candidates of each level.

    codes: int64 (n, L), the greedy nearest code per level.
    candidate_codes: int64 (n, L, k), the k nearest codes to the item's greedy residual at
        each level, nearest first; candidate_codes[:, :, 0] == codes.
    candidate_distances: float32 (n, L, k), squared L2 distances matching candidate_codes.
    """

    codes: np.ndarray
    candidate_codes: np.ndarray
    candidate_distances: np.ndarray


def check_vectors(vectors: np.ndarray, *, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous float32 (n, d) array, or raise QuantizerError."""
    array = np.asarray(vectors)
    if array.ndim != 2:
        raise QuantizerError(f"{name} must be a 2-D array (n, dim), got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise QuantizerError(
            f"{name} have dimension {array.shape[1]} but the codebooks expect {dim}; "
            "encode with the codebooks trained on embeddings of the same model"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad_rows = ~np.isfinite(array).all(axis=1)
    if bad_rows.any():
        first = int(np.flatnonzero(bad_rows)[0])
        raise QuantizerError(
            f"{name} contain NaN or infinite values in {int(bad_rows.sum())} rows (first row {first}); "
            "quarantine or repair those embeddings before quantizing"
        )
    return array


def encode_residual(
    vectors: np.ndarray,
    codebooks: Sequence[np.ndarray],
    *,
    top_k: int = 1,
    normalize_residuals: bool = False,
) -> EncodeResult:
    """Encode float (n, d) ``vectors`` greedily through ``codebooks`` [(K_l, d), ...].

    ``top_k`` is capped per level at that level's codebook size. Ties are broken by the
    lower code index, so the result is a pure function of each row. With
    ``normalize_residuals`` each level compares the L2-normalized residual with the
    L2-normalized codewords (cosine assignment) and reports those distances, while the
    residual still subtracts the codeword itself, so that decoding stays a plain sum.
    """
    vectors = np.asarray(vectors)
    n = vectors.shape[0]
    k_max = max(1, min(top_k, min(len(codebook) for codebook in codebooks)))
    codes = np.zeros((n, len(codebooks)), dtype=np.int64)
    candidate_codes = np.zeros((n, len(codebooks), k_max), dtype=np.int64)
    candidate_distances = np.zeros((n, len(codebooks), k_max), dtype=np.float32)
    # (codewords compared with, codewords subtracted) per level.
    levels = []
    for codebook in codebooks:
        centroids = np.asarray(codebook, dtype=np.float64)
        levels.append((_unit_rows(centroids) if normalize_residuals else centroids, centroids))

    for start in range(0, n, ENCODE_BLOCK_ROWS):
        block = slice(start, min(n, start + ENCODE_BLOCK_ROWS))
        residual = np.array(vectors[block], dtype=np.float64)
        for level, (targets, centroids) in enumerate(levels):
            points = _unit_rows(residual) if normalize_residuals else residual
            distances = _squared_distances(points, targets)
            nearest = _nearest_sorted(distances, k_max)
            codes[block, level] = nearest[:, 0]
            candidate_codes[block, level] = nearest
            candidate_distances[block, level] = np.take_along_axis(distances, nearest, axis=1)
            residual -= centroids[nearest[:, 0]]
    return EncodeResult(codes, candidate_codes, candidate_distances)


def decode_residual(codes: np.ndarray, codebooks: Sequence[np.ndarray]) -> np.ndarray:
    """Return float32 (n, d): the sum over levels of the chosen codewords."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] != len(codebooks):
        raise QuantizerError(f"codes must have shape (n, {len(codebooks)}), got {codes.shape}")
    total = np.zeros((codes.shape[0], codebooks[0].shape[1]), dtype=np.float64)
    for level, codebook in enumerate(codebooks):
        column = codes[:, level]
        if column.size and (column.min() < 0 or column.max() >= len(codebook)):
            raise QuantizerError(
                f"codes at level {level} must lie in [0, {len(codebook)}), "
                f"got values from {column.min()} to {column.max()}"
            )
        total += np.asarray(codebook, dtype=np.float64)[column]
    return total.astype(np.float32)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Return ``matrix`` with every non-zero row scaled to unit L2 norm; zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, clipped at 0 against rounding. The in-place
    # steps round exactly as (||x||^2 - 2 x.c) + ||c||^2 does, without temporary matrices.
    distances = points @ centroids.T
    distances *= -2.0
    distances += (points * points).sum(axis=1, keepdims=True)
    distances += (centroids * centroids).sum(axis=1)
    np.maximum(distances, 0.0, out=distances)
    return distances


def _nearest_sorted(distances: np.ndarray, k: int) -> np.ndarray:
    """Return the k smallest columns per row, by distance then by column index."""
    rows, columns = distances.shape
    if k < columns:
        # Every column at or below the k-th smallest distance of its row is a candidate. A row
        # with exactly k candidates needs no tie-breaking to pick its set.
        kth = np.partition(distances, k - 1, axis=1)[:, k - 1:k]
        below = distances <= kth
        exact = below.sum(axis=1) == k
        part = np.empty((rows, k), dtype=np.int64)
        # np.nonzero walks the rows in order, so each row yields its k columns in index order.
        if exact.all():
            part[:] = np.nonzero(below)[1].reshape(rows, k)
        else:
            part[exact] = np.nonzero(below[exact])[1].reshape(-1, k)
            # A tie at the k-th distance (or a NaN) goes to the lowest column indices.
            part[~exact] = np.argsort(distances[~exact], axis=1, kind="stable")[:, :k]
    else:
        part = np.tile(np.arange(columns), (rows, 1))
    part_distances = np.take_along_axis(distances, part, axis=1)
    order = np.lexsort((part, part_distances), axis=1)
    return np.take_along_axis(part, order, axis=1)
