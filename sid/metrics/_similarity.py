"""Cosine scoring shared by the retrieval metrics: unit vectors, item groups and priority.

Items whose vectors must tie (items sharing a SID) are scored once per group and the score
is copied to every member, so their scores are bit-identical and the tie rule, not float
rounding, decides their order.
"""

from __future__ import annotations

import numpy as np

# Cells of one (queries x items) float32 score matrix: 64 MiB, so a 100k-item catalog is
# scored 167 queries at a time. Peak memory measured with tracemalloc at 100k items of 64
# dimensions: about 240 MiB for target_ranks and 360 MiB for neighbour_recall.
SCORE_BLOCK_CELLS = 1 << 24

# Largest absolute difference allowed between the vectors of items that share a SID. A SID's
# reconstruction decoded once per item in float32 can differ in the last bits between batches.
SID_VECTOR_TOLERANCE = 1e-5


def priority_rank(popularity: np.ndarray, priority_hash: np.ndarray, *, n_items: int) -> np.ndarray:
    """Return int64 (n_items,): each item's position in the priority order, 0 first.

    The project's priority order is popularity descending, then priority_hash ascending.
    priority_hash must be unique, because otherwise two items could not be ordered.
    """
    popularity = np.asarray(popularity)
    hashes = np.asarray(priority_hash).astype(str)
    if popularity.shape != (n_items,) or hashes.shape != (n_items,):
        raise ValueError(
            f"popularity and priority_hash must have shape ({n_items},), one value per item, "
            f"got {popularity.shape} and {hashes.shape}"
        )
    if not np.issubdtype(popularity.dtype, np.number):
        raise TypeError(f"popularity must be numeric, got dtype {popularity.dtype}")
    if np.unique(hashes).size != n_items:
        raise ValueError(
            "priority_hash contains duplicate values, so the tie order is undefined; "
            "use sid.codes.priority_hash(item_id, seed), which is unique per item_id"
        )

    order = np.lexsort((hashes, -popularity.astype(np.float64)))
    rank = np.empty(n_items, dtype=np.int64)
    rank[order] = np.arange(n_items, dtype=np.int64)
    return rank


def check_matrix(vectors: np.ndarray, *, name: str) -> np.ndarray:
    """Return ``vectors`` as a float32 (n, d) array with finite values, or raise ValueError."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (n_items, dim), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; repair or drop those items first")
    return array


def grouped_unit_vectors(
    vectors: np.ndarray, *, sids: np.ndarray | None, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return (unit, item_group): one L2-normalised float32 row per group and each item's group.

    With ``sids`` (shape (n,) or (n, levels)), items with equal SIDs form a group and the
    group is represented by its first item's vector. Without it, items with bit-identical
    vectors form a group. Raises ValueError for a zero vector, which has no cosine, or when
    the vectors inside one SID differ by more than SID_VECTOR_TOLERANCE.
    """
    array = check_matrix(vectors, name=name)
    n_items = array.shape[0]

    # Group the items, keeping the first member of each group as its representative.
    if sids is None:
        _, first, item_group = np.unique(array, axis=0, return_index=True, return_inverse=True)
    else:
        keys = np.asarray(sids)
        if keys.shape[0] != n_items or keys.ndim not in (1, 2):
            raise ValueError(f"sids must have shape ({n_items},) or ({n_items}, levels), got {keys.shape}")
        axis = 0 if keys.ndim == 2 else None
        _, first, item_group = np.unique(keys, axis=axis, return_index=True, return_inverse=True)
    item_group = item_group.reshape(-1)
    representatives = array[first]

    # Items of one SID must carry that SID's vector, or the SID grouping is mislabelled.
    if sids is not None:
        spread = float(np.abs(array - representatives[item_group]).max())
        if spread > SID_VECTOR_TOLERANCE:
            raise ValueError(
                f"{name} of items sharing a SID differ by up to {spread:.3g} "
                f"(tolerance {SID_VECTOR_TOLERANCE}); give every item its SID's reconstruction"
            )

    norms = np.linalg.norm(representatives, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} contains zero vectors, which have no cosine similarity; drop those items")
    return representatives / norms, item_group


def item_scores(unit: np.ndarray, item_group: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Return float32 (len(queries), n_items): cosine of each query item to every item."""
    group_scores = unit[item_group[queries]] @ unit.T
    return group_scores[:, item_group]


def block_rows(n_items: int) -> int:
    """Return how many query rows one score block holds for a catalog of ``n_items``."""
    return max(1, SCORE_BLOCK_CELLS // max(n_items, 1))
