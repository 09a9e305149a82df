"""Corpus-level statistics of how items spread over SIDs and codes.

All functions take aggregates (bucket sizes or their histogram), never per-item data, so a
Spark job can compute them from a groupBy result on the driver.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "bucket_stats",
    "entropy_ratio_from_histogram",
    "gini_coefficient",
    "gini_from_histogram",
    "lorenz_curve",
    "perplexity",
]


def gini_coefficient(bucket_sizes: np.ndarray) -> float:
    """Return the Gini coefficient of items per occupied SID.

    FORGE (arXiv 2509.20904, SID_generation/scripts/gini_coefficient.md in its code): with
    counts sorted ascending x_(1) <= ... <= x_(N) and T = sum x,
    G = (N+1)/N - 2 * sum_i (N+1-i) * x_(i) / (N*T). Empty SIDs are not counted; 0 means
    every occupied SID holds the same number of items.
    """
    sizes = np.sort(np.asarray(bucket_sizes, dtype=np.float64))
    sizes = sizes[sizes > 0]
    n = sizes.size
    if n == 0:
        return 0.0
    total = sizes.sum()
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float((n + 1) / n - 2.0 * np.sum((n + 1 - ranks) * sizes) / (n * total))


def gini_from_histogram(histogram: Mapping[int, int]) -> float:
    """Return the same Gini as :func:`gini_coefficient` from {bucket size: number of SIDs}.

    Each block of equal sizes occupies consecutive ranks a..b, whose weights (N+1-i) sum to
    m*(N+1) - m*(a+b)/2 for a block of m SIDs.
    """
    blocks = sorted((int(size), int(count)) for size, count in histogram.items() if size > 0 and count > 0)
    n = sum(count for _, count in blocks)
    if n == 0:
        return 0.0
    total = float(sum(size * count for size, count in blocks))
    weighted = 0.0
    first_rank = 1
    for size, count in blocks:
        last_rank = first_rank + count - 1
        weighted += size * (count * (n + 1) - count * (first_rank + last_rank) / 2.0)
        first_rank = last_rank + 1
    return (n + 1) / n - 2.0 * weighted / (n * total)


def perplexity(code_counts: np.ndarray) -> float:
    """Return exp(entropy) of a code usage distribution: the effective number of codes used."""
    counts = np.asarray(code_counts, dtype=np.float64)
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0
    probabilities = counts / counts.sum()
    return float(np.exp(-np.sum(probabilities * np.log(probabilities))))


def bucket_stats(histogram: Mapping[int, int]) -> dict[str, float]:
    """Summarise {bucket size: number of SIDs with that many items}.

    Returns items, occupied_sids, distinct_sid_share (occupied SIDs / items),
    collision_rate (share of items whose SID is shared with another item),
    largest_bucket and gini.
    """
    items = sum(int(size) * int(count) for size, count in histogram.items())
    occupied = sum(int(count) for count in histogram.values())
    colliding = sum(int(size) * int(count) for size, count in histogram.items() if int(size) > 1)
    return {
        "items": float(items),
        "occupied_sids": float(occupied),
        "distinct_sid_share": occupied / items if items else 0.0,
        "collision_rate": colliding / items if items else 0.0,
        "largest_bucket": float(max((int(size) for size in histogram), default=0)),
        "gini": gini_from_histogram(histogram),
    }


def entropy_ratio_from_histogram(histogram: Mapping[int, int]) -> float:
    """Return :func:`sid.metrics.entropy_ratio` from {bucket size: number of SIDs}.

    Each of the n_j SIDs of size j contributes -(j/T) log(j/T) to the entropy H, and the
    ratio is H / log(T) for T items: 1.0 for unique SIDs, 0.0 for no items.
    """
    blocks = [(int(size), int(count)) for size, count in histogram.items() if size > 0 and count > 0]
    total = sum(size * count for size, count in blocks)
    if total == 0:
        return 0.0
    if total == 1:
        return 1.0
    entropy = -sum(count * (size / total) * np.log(size / total) for size, count in blocks)
    return float(entropy / np.log(total))


def lorenz_curve(histogram: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return (sid_share, item_share), float64 arrays of the Lorenz curve of items per SID.

    Occupied SIDs are sorted by size ascending. Point i gives the share of SIDs up to the
    end of the i-th block of equal sizes and the share of items they hold. Both arrays
    start at 0.0 and end at 1.0, and the area between the curve and the diagonal is half
    the Gini coefficient.
    """
    blocks = sorted((int(size), int(count)) for size, count in histogram.items() if size > 0 and count > 0)
    sids = sum(count for _, count in blocks)
    items = sum(size * count for size, count in blocks)
    if sids == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    sid_share = np.cumsum([0] + [count for _, count in blocks]) / sids
    item_share = np.cumsum([0] + [size * count for size, count in blocks]) / items
    return sid_share.astype(np.float64), item_share.astype(np.float64)
