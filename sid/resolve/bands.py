"""Resolve a whole item set in two stages: per prefix group, then globally for the leftovers.

A prefix group (band) is the set of items that share their first L-1 raw codes. Moves of
the last level stay inside a band, so a distributed job can run ``resolve_group`` per band
(Spark ``groupBy(band).applyInPandas``) and then ``resolve_pending`` once, on the driver,
over the few items marked ``pending``. :func:`resolve_items` is that composition on one
process, for tests and small catalogs.

The global stage only needs the SIDs in the bands that the pending items can reach
(``reachable_bands``). When the pending items reach most bands, that is still every SID,
held in one Python set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from sid.resolve._items import as_sid_set
from sid.resolve.result import RESOLVED_COLUMNS, STEP_PENDING, empty_resolved
from sid.resolve.suffix import sort_by_priority

__all__ = ["Resolver", "band_key", "resolve_items", "within_bands"]


class Resolver(Protocol):
    """A strategy with a per-band stage and a global stage (ForgeResolver, EcmResolver, RrsResolver)."""

    def resolve_group(
        self, group: pd.DataFrame, *, taken: Iterable[Sequence[int]], codebooks: Sequence[np.ndarray]
    ) -> pd.DataFrame: ...

    def resolve_pending(
        self,
        pending: pd.DataFrame,
        *,
        assigned: Iterable[Sequence[int]],
        taken: Iterable[Sequence[int]],
        codebooks: Sequence[np.ndarray],
    ) -> pd.DataFrame: ...

    def reachable_bands(self, pending: pd.DataFrame, *, codebooks: Sequence[np.ndarray]) -> set[tuple[int, ...]]: ...


def band_key(raw_codes: Sequence[int]) -> tuple[int, ...]:
    """Return the first L-1 codes of a raw SID, the key of its prefix group."""
    return tuple(int(code) for code in raw_codes[:-1])


def within_bands(sids: Iterable[Sequence[int]], bands: set[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Return the SIDs of ``sids`` whose first L-1 codes are in ``bands`` (L from the band length)."""
    length = len(next(iter(bands))) if bands else 0
    return [sid for sid in map(tuple, sids) if tuple(int(code) for code in sid[:length]) in bands]


def resolve_items(
    items: pd.DataFrame,
    resolver: Resolver,
    *,
    taken: Iterable[Sequence[int]] = (),
    codebooks: Sequence[np.ndarray] | None = None,
) -> pd.DataFrame:
    """Resolve every item of ``items`` with ``resolver``; return ``RESOLVED_COLUMNS`` in the priority order.

    ``items`` carries the columns the resolver needs (see its resolve_group). ``taken``
    SIDs are never handed out. The result does not depend on the row order of ``items``.
    """
    if items.empty:
        return empty_resolved()
    taken_set = as_sid_set(taken)

    # Stage 1: each prefix group on its own, as Spark would run it.
    positions: dict[tuple[int, ...], list[int]] = {}
    for position, raw_codes in enumerate(items["raw_codes"]):
        positions.setdefault(band_key(raw_codes), []).append(position)
    banded = pd.concat(
        [
            resolver.resolve_group(items.iloc[rows], taken=taken_set, codebooks=codebooks)
            for _, rows in sorted(positions.items())
        ],
        ignore_index=True,
    )

    # Stage 2: the leftovers, against every SID the first stage assigned.
    is_pending = banded["step"] == STEP_PENDING
    resolved = banded[~is_pending]
    if is_pending.any():
        pending_items = items[items["item_id"].astype(str).isin(set(banded.loc[is_pending, "item_id"]))]
        bands = resolver.reachable_bands(pending_items, codebooks=codebooks)
        finished = resolver.resolve_pending(
            pending_items,
            assigned=within_bands((tuple(codes) for codes in resolved["codes"]), bands),
            taken=within_bands(taken_set, bands),
            codebooks=codebooks,
        )
        resolved = pd.concat([resolved, finished], ignore_index=True)

    order = sort_by_priority(items)["item_id"].astype(str)
    return resolved.set_index("item_id").loc[order].reset_index()[RESOLVED_COLUMNS]
