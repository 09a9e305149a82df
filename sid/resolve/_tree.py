"""Exact residual search over a tree of candidate prefixes, shared by ECM, RRS and FORGE's fallbacks.

The tree follows "Purely Semantic Indexing" (arXiv 2509.16446): at level l each node keeps
the ``widths[l]`` nearest codes to its own residual, so every score is the true residual
along the node's prefix (not the greedy path's approximation). A leaf's score is the sum
over levels of ||r_l - C_l[c_l]||, the paper's score negated, so lower is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from sid.quantize.residual import _nearest_sorted, _squared_distances
from sid.resolve._items import Assignment

SearchOrder = Literal["score", "depth_first"]

# Default schedules of the PSI code (arXiv 2509.16446): pass 1 moves only the last level
# among its 10 nearest codes, pass 2 tries 5 codes per upper level and 20 at the last.
PASS1_LAST_WIDTH = 10
PASS2_WIDTH = 5
PASS2_LAST_WIDTH = 20
# Level L-1 codes tried by the move_parent fallback. 16 keeps the cost per item at
# 16 x K_L distances while reaching well past pass 2's 5 parents.
DEFAULT_PARENT_WIDTH = 16
# One search chunk holds at most this many (node, code) distances: 2**24 float64 = 128 MiB.
MAX_DISTANCE_ENTRIES = 1 << 24
# Candidate codes per block of searched items (2**24 int64 = 128 MiB), unless one item has more.
MAX_CANDIDATE_ENTRIES = 1 << 24


def default_schedules(codebook_sizes: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Return PSI's two passes, (1,...,1,10) and (5,...,5,20), capped at each codebook size."""
    levels = len(codebook_sizes)
    pass1 = (1,) * (levels - 1) + (PASS1_LAST_WIDTH,)
    pass2 = (PASS2_WIDTH,) * (levels - 1) + (PASS2_LAST_WIDTH,)
    return tuple(_cap(widths, codebook_sizes) for widths in (pass1, pass2))


def check_schedules(
    schedules: Sequence[Sequence[int]] | None, codebook_sizes: Sequence[int]
) -> tuple[tuple[int, ...], ...]:
    """Validate per-level widths against the codebooks and cap each at its codebook size."""
    if schedules is None:
        return default_schedules(codebook_sizes)
    if not schedules:
        raise ValueError("schedules is empty; give at least one pass, e.g. [(1, 1, 10), (5, 5, 20)]")
    checked = []
    for widths in schedules:
        widths = tuple(int(width) for width in widths)
        if len(widths) != len(codebook_sizes) or min(widths) < 1:
            raise ValueError(
                f"schedule {widths} must give one width >= 1 for each of the {len(codebook_sizes)} levels"
            )
        checked.append(_cap(widths, codebook_sizes))
    return tuple(checked)


def _cap(widths: Sequence[int], codebook_sizes: Sequence[int]) -> tuple[int, ...]:
    return tuple(min(width, size) for width, size in zip(widths, codebook_sizes))


def is_band_local(widths: Sequence[int]) -> bool:
    """Return whether a pass keeps the first L-1 codes, so it can run per prefix group.

    Width 1 at a level picks the nearest code to the true residual, which is the greedy code.
    """
    return all(width == 1 for width in widths[:-1])


def widened(widths: Sequence[int], factor: int, codebook_sizes: Sequence[int]) -> tuple[int, ...]:
    """Return ``widths`` times ``factor``, capped at each codebook size."""
    return _cap([width * factor for width in widths], codebook_sizes)


def parent_widths(last_width: int, parent_width: int, codebook_sizes: Sequence[int]) -> tuple[int, ...]:
    """Return the move_parent schedule: levels < L-1 fixed, ``parent_width`` codes at L-1."""
    levels = len(codebook_sizes)
    return _cap((1,) * (levels - 2) + (parent_width, last_width), codebook_sizes)


def search_tree(
    vectors: np.ndarray,
    codebooks: Sequence[np.ndarray],
    widths: Sequence[int],
    *,
    order: SearchOrder,
) -> np.ndarray:
    """Return int64 (n, prod(widths), L): each item's candidate tuples, most preferred first.

    ``vectors`` is float64 (n, d) and ``codebooks`` are float64 (K_l, d) with widths[l] <= K_l.
    Order "depth_first" lists leaves as a recursive search visits them (nearest child
    first), which is RRS's order. Order "score" sorts them by the sum of residual norms,
    ties kept in depth-first order, which is ECM's order.
    """
    internal_nodes = int(np.prod(widths[:-1], dtype=np.int64))
    largest = max(len(codebook) for codebook in codebooks)
    chunk = max(1, MAX_DISTANCE_ENTRIES // (internal_nodes * largest))
    leaves = int(np.prod(widths, dtype=np.int64))
    paths = np.empty((len(vectors), leaves, len(codebooks)), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        paths[start : start + chunk] = _search_chunk(vectors[start : start + chunk], codebooks, widths, order)
    return paths


def _search_chunk(
    vectors: np.ndarray, codebooks: Sequence[np.ndarray], widths: Sequence[int], order: SearchOrder
) -> np.ndarray:
    n, dim = vectors.shape
    residuals = vectors[:, None, :]
    paths = np.zeros((n, 1, 0), dtype=np.int64)
    scores = np.zeros((n, 1))

    # Expand every node into its nearest children. Child j of node p lands at p * width + j,
    # so the leaves end up in depth-first order.
    for level, (codebook, width) in enumerate(zip(codebooks, widths)):
        nodes = residuals.shape[1]
        flat = residuals.reshape(n * nodes, dim)
        distances = _squared_distances(flat, codebook)
        nearest = _nearest_sorted(distances, width)
        norms = np.sqrt(np.take_along_axis(distances, nearest, axis=1))
        paths = np.concatenate([np.repeat(paths, width, axis=1), nearest.reshape(n, nodes * width, 1)], axis=2)
        scores = np.repeat(scores, width, axis=1) + norms.reshape(n, nodes * width)
        if level + 1 < len(codebooks):
            residuals = (flat[:, None, :] - codebook[nearest]).reshape(n, nodes * width, dim)

    if order == "score":
        ranking = np.argsort(scores, axis=1, kind="stable")
        paths = np.take_along_axis(paths, ranking[:, :, None], axis=1)
    return paths


def reachable_bands(
    vectors: np.ndarray | None,
    codebooks: Sequence[np.ndarray] | None,
    schedules: Sequence[Sequence[int]],
    raw: np.ndarray,
    *,
    chunk: int = 4096,
) -> set[tuple[int, ...]]:
    """Return the first L-1 codes of every candidate that a search with ``schedules`` can offer.

    ``raw`` is int64 (n, L): each item's own band is included, because the append fallback
    extends the raw SID. The first L-1 codes of a search path do not depend on the last
    level, so the search runs over the upper codebooks only.
    """
    levels = raw.shape[1]
    bands = set(map(tuple, np.unique(raw[:, : levels - 1], axis=0).tolist()))
    if levels < 2 or vectors is None or codebooks is None:
        return bands
    for widths in schedules:
        for start in range(0, len(vectors), chunk):
            paths = search_tree(vectors[start : start + chunk], codebooks[:-1], widths[:-1], order="depth_first")
            bands.update(map(tuple, np.unique(paths.reshape(-1, levels - 1), axis=0).tolist()))
    return bands


def search_and_place(
    assignment: Assignment,
    codebooks: Sequence[np.ndarray],
    widths: Sequence[int],
    *,
    order: SearchOrder,
    step: str,
) -> None:
    """Give each unplaced item, in the priority order, its first candidate tuple with room."""
    pending = assignment.unplaced()
    # An item's candidates do not depend on the other items, so searching a block of items
    # at a time bounds the candidate array (MAX_CANDIDATE_ENTRIES codes) and keeps the order.
    leaves = int(np.prod(widths, dtype=np.int64))
    block = max(1, MAX_CANDIDATE_ENTRIES // (leaves * len(codebooks)))
    for start in range(0, len(pending), block):
        indices = pending[start : start + block]
        candidates = search_tree(assignment.items.embeddings[indices], codebooks, widths, order=order)
        for index, paths in zip(indices, candidates):
            assignment.place_first_free(index, map(tuple, paths.tolist()), step)
