"""Two-stage driver shared by ECM and RRS: per prefix group first, then a global pass.

Both strategies of "Purely Semantic Indexing" (arXiv 2509.16446) run passes of widening
candidate trees over the items whose greedy SID is already owned. A pass that keeps the
first L-1 codes (widths 1 there) cannot touch another prefix group, so it runs inside
``resolve_group``. Every later pass and the fallback chain cross groups and run in
``resolve_pending`` over the few items left, against every SID assigned so far.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from sid.resolve import _tree
from sid.resolve._items import (
    Assignment,
    Occupancy,
    append_disambiguation,
    keep_raw_codes,
    parse_items,
    prepare_codebooks,
    resolved_frame,
)
from sid.resolve.result import STEP_MOVE_PARENT, STEP_REASSIGN, STEP_WIDEN, empty_resolved


@dataclasses.dataclass(frozen=True)
class ResidualSearchResolver:
    """Options of an exact residual search strategy; subclasses fix the candidate order.

    schedules: per-level widths of each pass, e.g. ((1, 1, 10), (5, 5, 20)); None uses
        PSI's defaults for the codebooks at hand. Widths are capped at the codebook sizes.
    widen_factor: fallback step 1 reruns the last pass with every width times this factor.
    parent_width: level L-1 codes tried by fallback step 2 (move_parent).
    """

    schedules: Sequence[Sequence[int]] | None = None
    widen_factor: int = 2
    parent_width: int = _tree.DEFAULT_PARENT_WIDTH
    order: ClassVar[_tree.SearchOrder]

    def __post_init__(self) -> None:
        if self.widen_factor < 2:
            raise ValueError(f"widen_factor={self.widen_factor} should be >= 2, or widening changes nothing")
        if self.parent_width < 1:
            raise ValueError(f"parent_width={self.parent_width} should be >= 1")

    def resolve_group(
        self,
        group: pd.DataFrame,
        *,
        codebooks: Sequence[np.ndarray],
        taken: Iterable[Sequence[int]] = (),
    ) -> pd.DataFrame:
        """Resolve the items of one prefix group (same first L-1 raw codes) as far as the group allows.

        ``group`` has columns item_id, raw_codes, popularity, priority_hash and embedding
        (float (d,)). ``taken`` SIDs are never handed out. Returns ``RESOLVED_COLUMNS`` in
        the priority order; items marked ``pending`` go to :meth:`resolve_pending`. The
        result is deterministic and independent of the row order.
        """
        if group.empty:
            return empty_resolved()
        assignment, prepared, schedules = self._start(group, codebooks, taken, ())
        collided = keep_raw_codes(assignment)

        for widths in self._band_passes(schedules):
            _tree.search_and_place(assignment, prepared, widths, order=self.order, step=STEP_REASSIGN)
        return resolved_frame(assignment, collided, prepared)

    def resolve_pending(
        self,
        pending: pd.DataFrame,
        *,
        codebooks: Sequence[np.ndarray],
        assigned: Iterable[Sequence[int]] = (),
        taken: Iterable[Sequence[int]] = (),
    ) -> pd.DataFrame:
        """Finish the items that :meth:`resolve_group` left pending, across all prefix groups.

        ``pending`` has the input columns of those items. ``assigned`` lists the SID of every
        item already resolved in this run, and ``taken`` the published SIDs. Runs the passes
        that move upper levels, then the fallback chain, so every item ends with a unique SID.
        """
        if pending.empty:
            return empty_resolved()
        assignment, prepared, schedules = self._start(pending, codebooks, taken, assigned)
        for widths, step in self._pending_passes(schedules, [len(codebook) for codebook in prepared]):
            _tree.search_and_place(assignment, prepared, widths, order=self.order, step=step)
        append_disambiguation(assignment)
        return resolved_frame(assignment, np.ones(len(assignment.codes), dtype=bool), prepared)

    def reachable_bands(self, pending: pd.DataFrame, *, codebooks: Sequence[np.ndarray]) -> set[tuple[int, ...]]:
        """Return the first L-1 codes of every SID that :meth:`resolve_pending` may try for ``pending``.

        Only SIDs in these bands can change its result, so a caller may pass ``assigned`` and
        ``taken`` restricted to them.
        """
        if pending.empty:
            return set()
        assignment, prepared, schedules = self._start(pending, codebooks, (), ())
        passes = self._pending_passes(schedules, [len(codebook) for codebook in prepared])
        items = assignment.items
        return _tree.reachable_bands(items.embeddings, prepared, [widths for widths, _ in passes], items.raw)

    def _pending_passes(
        self, schedules: tuple[tuple[int, ...], ...], sizes: list[int]
    ) -> list[tuple[tuple[int, ...], str]]:
        """Return the (widths, step) searches of the global stage, before the append fallback."""
        passes = [(widths, STEP_REASSIGN) for widths in schedules[len(self._band_passes(schedules)) :]]

        # Fallback chain: widen the last pass once, move level L-1, then append a code.
        widest = _tree.widened(schedules[-1], self.widen_factor, sizes)
        passes.append((widest, STEP_WIDEN))
        if len(sizes) >= 2:
            passes.append((_tree.parent_widths(widest[-1], self.parent_width, sizes), STEP_MOVE_PARENT))
        return passes

    def _start(
        self,
        frame: pd.DataFrame,
        codebooks: Sequence[np.ndarray],
        taken: Iterable[Sequence[int]],
        assigned: Iterable[Sequence[int]],
    ) -> tuple[Assignment, list[np.ndarray], tuple[tuple[int, ...], ...]]:
        items = parse_items(frame, require=("embedding",))
        prepared = prepare_codebooks(codebooks, items)
        if prepared is None:
            raise ValueError(f"{type(self).__name__} needs codebooks, one (K_l, d) array per level")
        schedules = _tree.check_schedules(self.schedules, [len(codebook) for codebook in prepared])
        return Assignment(items, Occupancy(1, taken, assigned)), prepared, schedules

    @staticmethod
    def _band_passes(schedules: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
        # Only the leading band-local passes run per group; a later band-local pass must
        # wait for the cross-group passes before it so that the pass order stays global.
        count = 0
        while count < len(schedules) and _tree.is_band_local(schedules[count]):
            count += 1
        return schedules[:count]
