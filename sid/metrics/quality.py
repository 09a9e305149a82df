"""SID quality metrics beyond balance: uniqueness, semantics and fidelity to the embeddings.

Distribution metrics (entropy ratio, unique item share) take bucket sizes, the number of
items of each occupied SID, like :mod:`sid.metrics.distribution`. The others take per-item
arrays and need no Spark.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from sid.metrics import _similarity

__all__ = [
    "entropy_ratio",
    "neighbour_recall",
    "prefix_purity",
    "reconstruction_error",
    "unique_item_share",
]


def entropy_ratio(bucket_sizes: np.ndarray) -> float:
    """Return H / log(T): the entropy of the SID distribution over its maximum.

    With T items and x_s items in SID s, p_s = x_s / T and H = -sum_s p_s log p_s. H reaches
    log(T) only when every item has its own SID, so the ratio is 1.0 for unique SIDs and falls
    as items crowd into fewer SIDs. Empty SIDs (size 0) are ignored. One item gives 1.0 and
    no items give 0.0.
    """
    sizes = np.asarray(bucket_sizes, dtype=np.float64)
    sizes = sizes[sizes > 0]
    total = sizes.sum()
    if total == 0:
        return 0.0
    if total == 1:
        return 1.0
    probabilities = sizes / total
    entropy = -np.sum(probabilities * np.log(probabilities))
    return float(entropy / np.log(total))


def unique_item_share(bucket_sizes: np.ndarray) -> float:
    """Return the share of items that are alone in their SID, so the SID identifies them.

    It equals 1 - collision_rate of :func:`sid.metrics.bucket_stats`. No items give 0.0.
    """
    sizes = np.asarray(bucket_sizes, dtype=np.int64)
    total = sizes[sizes > 0].sum()
    if total == 0:
        return 0.0
    return float((sizes == 1).sum() / total)


def prefix_purity(
    codes: np.ndarray,
    category_paths: Sequence[Iterable[str] | None],
    *,
    prefix_levels: int,
    category_depth: int = 1,
) -> float:
    """Return the item-weighted share of items that fall in their SID prefix's majority category.

    codes: int (n_items, levels), the SID of each item.
    category_paths: one category path per item, broadest first, such as
        ["Beauty", "Makeup", "Face"]. The category of an item at depth d is its first d names,
        so equal leaf names under different parents stay apart.
    prefix_levels: how many leading codes form the prefix (1 for level-1 prefixes).
    category_depth: the depth d compared against.

    purity = sum over prefixes of (items in the prefix's most common category) / items
    counted. Items whose path has fewer than d names are not counted. A prefix holding one
    item is pure by definition, so compare runs only at equal prefix counts. When no item has
    a category at depth d, the function warns and returns NaN.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be an int array of shape (n_items, levels), got {codes.dtype} {codes.shape}")
    if not 1 <= prefix_levels <= codes.shape[1]:
        raise ValueError(f"prefix_levels={prefix_levels} should be between 1 and the {codes.shape[1]} SID levels")
    if category_depth < 1:
        raise ValueError(f"category_depth={category_depth} should be >= 1")
    if len(category_paths) != codes.shape[0]:
        raise ValueError(f"category_paths has {len(category_paths)} entries but codes has {codes.shape[0]} items")

    # Give each category (the path cut at category_depth) an integer label; -1 means too shallow.
    label_ids: dict[tuple[str, ...], int] = {}
    labels = np.full(codes.shape[0], -1, dtype=np.int64)
    for row, path in enumerate(category_paths):
        names = tuple(str(name) for name in (path if path is not None else ()))
        if len(names) >= category_depth:
            labels[row] = label_ids.setdefault(names[:category_depth], len(label_ids))
    counted = labels >= 0
    if not counted.any():
        warnings.warn(
            f"no item has a category path of depth {category_depth}; prefix purity is NaN",
            UserWarning,
            stacklevel=2,
        )
        return float("nan")

    # Count items per (prefix, category) and keep each prefix's largest count.
    _, prefix_ids = np.unique(codes[counted, :prefix_levels], axis=0, return_inverse=True)
    prefix_ids = prefix_ids.reshape(-1)
    cells, cell_sizes = np.unique(prefix_ids * len(label_ids) + labels[counted], return_counts=True)
    majority = np.zeros(int(prefix_ids.max()) + 1, dtype=np.int64)
    np.maximum.at(majority, cells // len(label_ids), cell_sizes)
    return float(majority.sum() / counted.sum())


def neighbour_recall(
    raw_vectors: np.ndarray,
    reconstructions: np.ndarray,
    *,
    k: int,
    popularity: np.ndarray,
    priority_hash: np.ndarray,
    sids: np.ndarray | None = None,
    queries: np.ndarray | None = None,
) -> float:
    """Return the mean share of each item's k nearest items by raw embedding that stay among its
    k nearest by SID reconstruction.

    raw_vectors, reconstructions: float (n_items, dim), row r describes the same item in both.
    k: neighbours per item, between 1 and n_items - 1.
    popularity, priority_hash, sids: as in :func:`sid.metrics.embedding_hit_rate`. Both
        neighbour lists use cosine similarity and that function's tie rule, so items of one
        SID enter the reconstruction list in priority order.
    queries: int item rows to evaluate; None evaluates every item. The cost is two
        (n_queries x n_items x dim) matrix products, so sample queries for large catalogs.
    """
    raw_unit, raw_group = _similarity.grouped_unit_vectors(raw_vectors, sids=None, name="raw_vectors")
    rec_unit, rec_group = _similarity.grouped_unit_vectors(reconstructions, sids=sids, name="reconstructions")
    n_items = raw_group.shape[0]
    if rec_group.shape[0] != n_items:
        raise ValueError(f"reconstructions has {rec_group.shape[0]} rows but raw_vectors has {n_items}")
    if not 1 <= k <= n_items - 1:
        raise ValueError(f"k={k} should be between 1 and n_items - 1 = {n_items - 1}")
    rank = _similarity.priority_rank(popularity, priority_hash, n_items=n_items)
    query_rows = np.arange(n_items) if queries is None else _check_queries(queries, n_items=n_items)

    # Score columns in priority order, so the first tied columns are the ones the tie rule keeps.
    by_priority = np.argsort(rank)
    overlap = np.empty(query_rows.shape[0], dtype=np.int64)
    block = _similarity.block_rows(n_items)
    for start in range(0, query_rows.shape[0], block):
        batch = query_rows[start : start + block]
        raw_top = _top_k_mask(_similarity.item_scores(raw_unit, raw_group, batch)[:, by_priority], rank[batch], k)
        rec_top = _top_k_mask(_similarity.item_scores(rec_unit, rec_group, batch)[:, by_priority], rank[batch], k)
        overlap[start : start + block] = (raw_top & rec_top).sum(axis=1)
    return float(overlap.mean() / k)


def reconstruction_error(embeddings: np.ndarray, reconstructions: np.ndarray) -> dict[str, float]:
    """Return reconstruction_mse and reconstruction_relative of float (n_items, dim) arrays.

    reconstruction_mse: mean of (x - x_hat)^2 over every item and dimension.
    reconstruction_relative: sum ||x - x_hat||^2 / sum ||x||^2, the share of the embeddings'
    energy the SIDs lose (0 is perfect). It is NaN when every embedding is zero.
    """
    original = _similarity.check_matrix(embeddings, name="embeddings").astype(np.float64)
    decoded = _similarity.check_matrix(reconstructions, name="reconstructions").astype(np.float64)
    if original.shape != decoded.shape:
        raise ValueError(f"reconstructions has shape {decoded.shape} but embeddings has {original.shape}")

    squared_error = np.square(original - decoded).sum()
    energy = np.square(original).sum()
    return {
        "reconstruction_mse": float(squared_error / original.size),
        "reconstruction_relative": float(squared_error / energy) if energy > 0 else float("nan"),
    }


def _top_k_mask(scores: np.ndarray, query_columns: np.ndarray, k: int) -> np.ndarray:
    """Return bool like ``scores``: the k best columns per row, ties going to earlier columns.

    ``query_columns`` gives each row's own column, which is never chosen.
    """
    scores = scores.copy()
    scores[np.arange(scores.shape[0]), query_columns] = -np.inf
    n_columns = scores.shape[1]
    threshold = np.partition(scores, n_columns - k, axis=1)[:, n_columns - k][:, None]
    above = scores > threshold
    tied = scores == threshold
    room = k - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room))


def _check_queries(queries: np.ndarray, *, n_items: int) -> np.ndarray:
    rows = np.asarray(queries)
    if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"queries must be a non-empty 1-D int array of item rows, got {rows.dtype} {rows.shape}")
    if rows.min() < 0 or rows.max() >= n_items:
        raise ValueError(f"queries must lie in [0, {n_items}), got values from {rows.min()} to {rows.max()}")
    return rows.astype(np.int64)
