"""Embedding hit rate@K: how well SID reconstructions keep co-occurring items close.

FORGE (arXiv 2509.20904) reports an "embedding hitrate" as a SID quality metric, but its
public code contains no implementation of it. This project reads it as follows. Take held-out pairs (i, j) of
items that co-occur, such as consecutive items of one user sequence. Represent every item by
its SID's reconstruction vector and rank every item except i by cosine similarity to i's
vector. Score a hit when j is among the first K. The same function on the raw embeddings
gives the ceiling that the SIDs can reach.

Tie rule: items are ordered by cosine similarity descending, then by the priority order
(popularity descending, then priority_hash ascending). Items that share a SID are scored once
per SID, so they tie exactly and the priority order alone places them. The query item i is
never a candidate, even when other items share its SID.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from sid.metrics import _similarity

__all__ = ["DEFAULT_HIT_RATE_KS", "embedding_hit_rate", "sample_consecutive_pairs", "target_ranks"]

# The cutoffs that the project reports for catalogs below a million items. Larger catalogs
# also report 500 and 1000.
DEFAULT_HIT_RATE_KS = (10, 20, 100)


def target_ranks(
    vectors: np.ndarray,
    pairs: np.ndarray,
    *,
    popularity: np.ndarray,
    priority_hash: np.ndarray,
    sids: np.ndarray | None = None,
) -> np.ndarray:
    """Return int64 (n_pairs,): the 0-based position of j in the ranked list of query i.

    vectors: float (n_items, dim), one row per item. For SIDs pass each item's SID
        reconstruction; for the ceiling pass the raw embeddings.
    pairs: int (n_pairs, 2), rows (i, j) of item row indices with i != j.
    popularity: numeric (n_items,); priority_hash: str (n_items,), unique per item.
    sids: optional (n_items,) or (n_items, levels) SID of each item. Items with equal SIDs
        tie. Without it, items with bit-identical vectors tie.

    Position p means p items other than i come before j under the tie rule of this module.
    The cost is one (n_pairs x n_items x dim) matrix product, computed in blocks of
    SCORE_BLOCK_CELLS scores, so no top-K index is needed and boundary ties are exact.
    """
    unit, item_group = _similarity.grouped_unit_vectors(vectors, sids=sids, name="vectors")
    n_items = item_group.shape[0]
    rank = _similarity.priority_rank(popularity, priority_hash, n_items=n_items)
    pairs = _check_pairs(pairs, n_items=n_items)

    positions = np.empty(pairs.shape[0], dtype=np.int64)
    block = _similarity.block_rows(n_items)
    for start in range(0, pairs.shape[0], block):
        queries = pairs[start : start + block, 0]
        targets = pairs[start : start + block, 1]
        rows = np.arange(queries.shape[0])
        scores = _similarity.item_scores(unit, item_group, queries)

        # An item comes before j when it scores higher, or scores the same with a better priority.
        target_score = scores[rows, targets][:, None]
        target_rank = rank[targets][:, None]
        ahead = (scores > target_score) | ((scores == target_score) & (rank[None, :] < target_rank))

        # The query itself is not a candidate, so it never pushes j down.
        positions[start : start + block] = ahead.sum(axis=1) - ahead[rows, queries]
    return positions


def embedding_hit_rate(
    vectors: np.ndarray,
    pairs: np.ndarray,
    *,
    popularity: np.ndarray,
    priority_hash: np.ndarray,
    ks: Sequence[int] = DEFAULT_HIT_RATE_KS,
    sids: np.ndarray | None = None,
) -> dict[str, float]:
    """Return {"hit_rate@K": share of pairs whose j is in the first K, ..., "pairs": n_pairs}.

    Arguments are those of :func:`target_ranks`; ``ks`` lists positive cutoffs. The result
    is a function of the inputs. Items of one SID always tie exactly, but two different SIDs
    that score within float32 rounding of each other may swap places under another BLAS build.
    """
    cutoffs = _check_ks(ks)
    positions = target_ranks(vectors, pairs, popularity=popularity, priority_hash=priority_hash, sids=sids)
    metrics = {f"hit_rate@{k}": float(np.mean(positions < k)) for k in cutoffs}
    metrics["pairs"] = float(positions.shape[0])
    return metrics


def sample_consecutive_pairs(
    sequences: Iterable[Sequence[int]],
    *,
    max_pairs: int | None = None,
    seed: int = 0,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Return int64 (n_pairs, 2): distinct (previous, next) item pairs from user sequences.

    sequences: each a user's item row indices in interaction order. Map item_id to the row
        of the vectors array before calling.
    max_pairs: sample this many pairs without replacement; None keeps all of them.
    seed: seed of the sample. The same set of pairs and seed give the same output, whatever
        the order of the sequences.
    exclude: int (m, 2) pairs to leave out in either order, such as pairs that trained the
        quantizer, so the remaining pairs are held out.

    Repeats of one item (i, i) are skipped. Pairs are returned in lexicographic order.
    """
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs={max_pairs} should be >= 1, or None to keep every pair")

    # Collect the distinct ordered pairs of neighbouring items.
    chunks = []
    for sequence in sequences:
        items = np.asarray(sequence, dtype=np.int64).reshape(-1)
        if items.size > 1:
            chunks.append(np.stack([items[:-1], items[1:]], axis=1))
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks)
    pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)

    # Drop excluded pairs in both orders.
    if exclude is not None:
        excluded = np.asarray(exclude, dtype=np.int64).reshape(-1, 2)
        excluded = np.concatenate([excluded, excluded[:, ::-1]])
        keep = ~_rows_in(pairs, excluded)
        pairs = pairs[keep]

    if max_pairs is None or pairs.shape[0] <= max_pairs:
        return pairs
    chosen = np.random.default_rng(seed).choice(pairs.shape[0], size=max_pairs, replace=False)
    return pairs[np.sort(chosen)]


def _rows_in(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Return bool (len(rows),): whether each int64 row of two columns occurs in reference."""
    as_pairs = np.dtype([("i", np.int64), ("j", np.int64)])
    left = np.ascontiguousarray(rows).view(as_pairs).reshape(-1)
    right = np.ascontiguousarray(reference).view(as_pairs).reshape(-1)
    return np.isin(left, right)


def _check_pairs(pairs: np.ndarray, *, n_items: int) -> np.ndarray:
    array = np.asarray(pairs)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise ValueError(f"pairs must be a non-empty int array of shape (n_pairs, 2), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"pairs must hold integer item row indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.min() < 0 or array.max() >= n_items:
        raise ValueError(
            f"pairs must index items in [0, {n_items}), got values from {array.min()} to {array.max()}"
        )
    if (array[:, 0] == array[:, 1]).any():
        raise ValueError("pairs contains (i, i) rows; an item is never its own candidate, so drop them")
    return array


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    cutoffs = tuple(int(k) for k in ks)
    if not cutoffs or min(cutoffs) < 1:
        raise ValueError(f"ks={list(ks)} should be a non-empty list of cutoffs >= 1")
    return tuple(sorted(set(cutoffs)))
