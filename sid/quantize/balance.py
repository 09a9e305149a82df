"""Balanced code assignment: Sinkhorn-Knopp and capacity-constrained nearest codes.

Plain argmin assignment lets a few codes take most items when the data is skewed, which is
the root cause of SID collisions. Both functions here take a float (n, K) matrix of squared
distances and return int64 (n,) codes whose counts are close to n / K.
"""

from __future__ import annotations

import numpy as np

__all__ = ["capacity_assign", "sinkhorn_assign"]

# Slack over the even share n / K that capacity_assign allows each code.
DEFAULT_CAPACITY_SLACK = 1.1


def sinkhorn_assign(distances: np.ndarray, *, epsilon: float = 0.1, iterations: int = 5) -> np.ndarray:
    """Return int64 (n,) codes from an entropy-regularized balanced transport plan.

    Following FORGE's training-time assignment (arXiv 2509.20904): standardize the
    distances (subtract the mean, divide by the standard deviation, subtract the minimum),
    take Q = exp(-D / epsilon), then alternate ``iterations`` column and row normalizations
    so that every code receives about the same mass; each row takes its argmax. Ties go
    to the lower code. Works in float64.
    """
    scores = np.asarray(distances, dtype=np.float64)
    spread = scores.std()
    scaled = (scores - scores.mean()) / (spread if spread > 0 else 1.0)
    scaled -= scaled.min()
    plan = np.exp(-scaled / epsilon)
    for _ in range(iterations):
        plan /= np.maximum(plan.sum(axis=0, keepdims=True), np.finfo(np.float64).tiny)
        plan /= np.maximum(plan.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    return np.argmax(plan, axis=1).astype(np.int64)


def capacity_assign(distances: np.ndarray, *, slack: float = DEFAULT_CAPACITY_SLACK) -> np.ndarray:
    """Return int64 (n,) codes where no code takes more than ceil(slack * n / K) rows.

    Rounds of proposals: every unassigned row proposes its nearest code that still has room,
    and each code accepts its closest proposers up to its remaining capacity (ties by row
    index). The result is deterministic and each row gets its nearest code whenever that
    code is not full.
    """
    scores = np.asarray(distances, dtype=np.float64)
    n, k = scores.shape
    capacity = np.full(k, int(np.ceil(slack * n / k)), dtype=np.int64)
    codes = np.full(n, -1, dtype=np.int64)
    open_scores = scores.copy()

    while (codes < 0).any():
        pending = np.flatnonzero(codes < 0)
        proposals = np.argmin(open_scores[pending], axis=1)
        proposal_distance = open_scores[pending, proposals]
        # Closest proposers first within each code; stable on the row index.
        order = np.lexsort((pending, proposal_distance, proposals))
        sorted_codes = proposals[order]
        starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
        rank = np.arange(len(order)) - starts
        accepted = rank < capacity[sorted_codes]
        codes[pending[order[accepted]]] = sorted_codes[accepted]
        np.subtract.at(capacity, sorted_codes[accepted], 1)
        # Full codes are closed to every row still waiting.
        open_scores[:, capacity <= 0] = np.inf
    return codes
