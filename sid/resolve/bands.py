"""Resolve a whole item set in two stages: per prefix group, then globally for the leftovers.

A prefix group (band) is the set of items that share their first L-1 raw codes. Moves of
the last level stay inside a band, so a distributed job can run ``resolve_group`` per band
(Spark ``groupBy(band).applyInPandas``) and then ``resolve_pending`` once, on the driver,
over the few items marked ``pending``. :func:`resolve_items` is that composition on one
process, for tests and small catalogs.

NOTE: ``resolve_pending`` holds every SID assigned in the first stage in one Python set,
so the global stage is sized for catalogs whose SIDs fit the driver's memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from sid.resolve._items import as_sid_set
from sid.resolve.result import RESOLVED_COLUMNS, STEP_PENDING, empty_resolved
from sid.resolve.suffix import sort_by_priority

__all__ = ["Resolver", "band_key", "resolve_items"]


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


def band_key(raw_codes: Sequence[int]) -> tuple[int, ...]:
    """Return the first L-1 codes of a raw SID, the key of its prefix group."""
    return tuple(int(code) for code in raw_codes[:-1])


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
        finished = resolver.resolve_pending(
            pending_items,
            assigned=[tuple(codes) for codes in resolved["codes"]],
            taken=taken_set,
            codebooks=codebooks,
        )
        resolved = pd.concat([resolved, finished], ignore_index=True)

    order = sort_by_priority(items)["item_id"].astype(str)
    return resolved.set_index("item_id").loc[order].reset_index()[RESOLVED_COLUMNS]
