"""FORGE capped re-assignment (arXiv 2509.20904): move overflow items to nearby last-level codes.

FORGE keeps at most ``capacity`` items per SID (5 in its released script; 1 makes SIDs
unique). Only the last level moves, so every item stays in its prefix group (first L-1
codes). The released SQL shuffles items at random; here the priority order (popularity
descending, then priority_hash) decides who keeps a SID and who moves first. Candidates
are handed out in rounds by rank as in the SQL: every overflow item tries its nearest
alternative before any item tries its second nearest.

Variant "knn" takes the alternatives from the item's candidate_codes at the last level.
Variant "random" draws pseudo-random last codes from sha256 of seed and item_id, so reruns
give the same codes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from sid.resolve import _tree
from sid.resolve._items import (
    Assignment,
    Occupancy,
    ParsedItems,
    Sid,
    append_disambiguation,
    keep_raw_codes,
    parse_items,
    prepare_codebooks,
    resolved_frame,
)
from sid.resolve.result import STEP_MOVE_PARENT, STEP_REASSIGN, STEP_WIDEN, empty_resolved

__all__ = ["ForgeResolver", "resolve_forge"]

# Alternative last-level codes per overflow item: FORGE's SQL keeps list positions 2..201.
DEFAULT_ALTERNATIVES = 200
# Hex digits of sha256 read as the random draw: 64 bits make the modulo bias negligible.
_DRAW_HEX_DIGITS = 16


@dataclasses.dataclass(frozen=True)
class ForgeResolver:
    """FORGE options and its two stages.

    capacity: items allowed per SID; 1 gives unique SIDs.
    variant: "knn" moves to the nearest free alternatives, "random" to seeded random codes.
    seed: seeds the random draws.
    alternatives: last-level codes tried per item; "knn" uses at most the k-1 alternatives
        in candidate_codes.
    widen_factor: fallback step 1 tries ``widen_factor`` times as many last-level codes.
        For "knn" this needs codebooks and embeddings, and is skipped without them.
    parent_width: level L-1 codes tried by fallback step 2 (move_parent), which also
        needs codebooks and embeddings.
    """

    capacity: int = 1
    variant: Literal["knn", "random"] = "knn"
    seed: int = 0
    alternatives: int = DEFAULT_ALTERNATIVES
    widen_factor: int = 2
    parent_width: int = _tree.DEFAULT_PARENT_WIDTH

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"capacity={self.capacity} should be >= 1 (1 gives unique SIDs)")
        if self.variant not in ("knn", "random"):
            raise ValueError(f"variant={self.variant!r} is not supported; use 'knn' or 'random'")
        if self.alternatives < 1:
            raise ValueError(f"alternatives={self.alternatives} should be >= 1")
        if self.widen_factor < 2:
            raise ValueError(f"widen_factor={self.widen_factor} should be >= 2, or widening changes nothing")
        if self.parent_width < 1:
            raise ValueError(f"parent_width={self.parent_width} should be >= 1")

    def resolve_group(
        self,
        group: pd.DataFrame,
        *,
        taken: Iterable[Sequence[int]] = (),
        codebooks: Sequence[np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """Cap the items of one prefix group (same first L-1 raw codes), moving only the last level.

        ``group`` has columns item_id, raw_codes, popularity, priority_hash, candidate_codes
        ((L, k) ints, nearest first, raw code first) and optionally candidate_distances and
        embedding. ``codebooks`` [(K_l, d), ...] are required by "random" and enable the
        widen step of "knn" and exact distance increases. ``taken`` SIDs count as full.

        Returns ``RESOLVED_COLUMNS`` in the priority order; items marked ``pending`` go to
        :meth:`resolve_pending`. Deterministic and independent of the row order.
        """
        if group.empty:
            return empty_resolved()
        items = parse_items(group, require=("candidate_codes",) if self.variant == "knn" else ())
        prepared = prepare_codebooks(codebooks, items)
        if self.variant == "random" and prepared is None:
            raise ValueError("variant='random' needs codebooks to know the last codebook size")
        assignment = Assignment(items, Occupancy(self.capacity, taken))
        collided = keep_raw_codes(assignment)

        # Normal candidates, handed out in rounds by rank.
        first = self._alternatives(items, assignment.unplaced(), prepared, start=0, count=self.alternatives)
        _place_by_rank(assignment, first, STEP_REASSIGN)

        # Fallback step 1: widen the last-level search once.
        wider = self._widened(items, assignment.unplaced(), prepared)
        _place_by_rank(assignment, wider, STEP_WIDEN)
        return resolved_frame(assignment, collided, prepared)

    def resolve_pending(
        self,
        pending: pd.DataFrame,
        *,
        assigned: Iterable[Sequence[int]] = (),
        taken: Iterable[Sequence[int]] = (),
        codebooks: Sequence[np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """Finish the items that :meth:`resolve_group` left pending.

        ``assigned`` lists the SID of every item already resolved in this run (one entry
        per item, so that capacity counts), ``taken`` the published SIDs. Level L-1 moves
        when codebooks and embeddings are given (fallback step 2); the rest get a
        disambiguation code appended (step 3), so every item ends within capacity.
        """
        if pending.empty:
            return empty_resolved()
        items = parse_items(pending)
        prepared = prepare_codebooks(codebooks, items)
        assignment = Assignment(items, Occupancy(self.capacity, taken, assigned))

        for widths in self._pending_schedules(items, prepared):
            _tree.search_and_place(assignment, prepared, widths, order="score", step=STEP_MOVE_PARENT)
        append_disambiguation(assignment)
        return resolved_frame(assignment, np.ones(len(assignment.codes), dtype=bool), prepared)

    def reachable_bands(
        self, pending: pd.DataFrame, *, codebooks: Sequence[np.ndarray] | None = None
    ) -> set[tuple[int, ...]]:
        """Return the first L-1 codes of every SID that :meth:`resolve_pending` may try for ``pending``.

        Only SIDs in these bands can change its result, so a caller may pass ``assigned`` and
        ``taken`` restricted to them.
        """
        if pending.empty:
            return set()
        items = parse_items(pending)
        prepared = prepare_codebooks(codebooks, items)
        return _tree.reachable_bands(items.embeddings, prepared, self._pending_schedules(items, prepared), items.raw)

    def _pending_schedules(self, items: ParsedItems, codebooks: list[np.ndarray] | None) -> list[tuple[int, ...]]:
        """Return the widths of the move_parent search (fallback step 2), or none without codebooks and embeddings."""
        if codebooks is None or items.embeddings is None or items.levels < 2:
            return []
        sizes = [len(codebook) for codebook in codebooks]
        return [_tree.parent_widths(self._widest_last_width(items, codebooks), self.parent_width, sizes)]

    def _alternatives(
        self, items: ParsedItems, indices: list[int], codebooks: list[np.ndarray] | None, *, start: int, count: int
    ) -> dict[int, list[Sid]]:
        """Return the candidate SIDs of each item, ranks ``start`` to ``start + count - 1``."""
        candidates = {}
        for index in indices:
            prefix = items.raw_sid(index)[:-1]
            if self.variant == "knn":
                # Position 0 of candidate_codes is the item's own raw code, which is full.
                codes = items.candidate_codes[index, -1, 1 + start : 1 + start + count].tolist()
            else:
                codes = _random_codes(items.item_ids[index], self.seed, start, count, len(codebooks[-1]))
            candidates[index] = [prefix + (int(code),) for code in codes]
        return candidates

    def _widened(
        self, items: ParsedItems, indices: list[int], codebooks: list[np.ndarray] | None
    ) -> dict[int, list[Sid]]:
        if not indices:
            return {}
        if self.variant == "random":
            extra = (self.widen_factor - 1) * self.alternatives
            return self._alternatives(items, indices, codebooks, start=self.alternatives, count=extra)
        if codebooks is None or items.embeddings is None:
            return {}
        widths = (1,) * (items.levels - 1) + (self._widest_last_width(items, codebooks),)
        paths = _tree.search_tree(items.embeddings[indices], codebooks, widths, order="score")
        return {index: list(map(tuple, rows.tolist())) for index, rows in zip(indices, paths)}

    def _widest_last_width(self, items: ParsedItems, codebooks: list[np.ndarray]) -> int:
        listed = items.candidate_codes.shape[2] - 1 if items.candidate_codes is not None else self.alternatives
        return min(len(codebooks[-1]), self.widen_factor * (1 + min(self.alternatives, listed)))


def _place_by_rank(assignment: Assignment, candidates: dict[int, list[Sid]], step: str) -> None:
    # Round r offers every still unplaced item its r-th candidate, in the priority order,
    # as FORGE's SQL ranks proposals to one SID by candidate rank first.
    rounds = max((len(sids) for sids in candidates.values()), default=0)
    for rank in range(rounds):
        for index, sids in candidates.items():
            if assignment.codes[index] is None and rank < len(sids):
                assignment.place_first_free(index, [sids[rank]], step)


def _random_codes(item_id: str, seed: int, start: int, count: int, codebook_size: int) -> list[int]:
    """Return draws ``start`` .. ``start + count - 1`` of the item's seeded random codes."""
    codes = []
    for draw in range(start, start + count):
        digest = hashlib.sha256(f"{seed}:{item_id}:{draw}".encode("utf-8")).hexdigest()
        codes.append(int(digest[:_DRAW_HEX_DIGITS], 16) % codebook_size)
    return codes


def resolve_forge(
    group: pd.DataFrame,
    *,
    capacity: int = 1,
    taken: Iterable[Sequence[int]] = (),
    variant: Literal["knn", "random"] = "knn",
    seed: int = 0,
    codebooks: Sequence[np.ndarray] | None = None,
    alternatives: int = DEFAULT_ALTERNATIVES,
) -> pd.DataFrame:
    """Run FORGE's per-group stage on one prefix group; see :meth:`ForgeResolver.resolve_group`."""
    resolver = ForgeResolver(capacity=capacity, variant=variant, seed=seed, alternatives=alternatives)
    return resolver.resolve_group(group, taken=taken, codebooks=codebooks)
