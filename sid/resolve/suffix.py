"""TIGER-style baseline: disambiguate colliding SIDs with one extra code.

TIGER ("Recommender Systems with Generative Retrieval", arXiv 2305.05065) appends a code
to every SID that counts the earlier items sharing the same raw codes. Here "earlier" is the
priority order (popularity descending, then a seeded hash of item_id), never the input row
order, so the result does not depend on partitioning.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import pandas as pd

__all__ = ["SUFFIX_COLUMNS", "resolve_suffix", "sort_by_priority"]

SUFFIX_COLUMNS = ["item_id", "codes", "collided"]


def sort_by_priority(items: pd.DataFrame) -> pd.DataFrame:
    """Sort by popularity descending, then priority_hash ascending (the project's priority order)."""
    return items.sort_values(["popularity", "priority_hash"], ascending=[False, True], kind="mergesort")


def resolve_suffix(
    group: pd.DataFrame,
    *,
    taken: Iterable[tuple[int, ...]] = (),
    mode: Literal["all", "colliding"] = "all",
) -> pd.DataFrame:
    """Give each item of one raw-SID group a unique SID by appending a disambiguation code.

    ``group`` holds items that share one raw code tuple, with columns item_id, raw_codes
    (sequence of int), popularity (int) and priority_hash (str). ``taken`` lists full SIDs
    that must not be handed out again. In mode "all" every item gets the extra code (0 for
    the first free slot), so all SIDs have L+1 codes; in mode "colliding" a group of one
    item keeps its raw codes unless they are taken.

    Returns a frame with columns item_id, codes (list of int) and collided (bool), one row
    per input row.
    """
    ordered = sort_by_priority(group)
    taken_set = {tuple(int(code) for code in sid) for sid in taken}
    raw = tuple(int(code) for code in ordered["raw_codes"].iloc[0]) if len(ordered) else ()
    collided = len(ordered) > 1

    if mode == "colliding" and not collided and raw not in taken_set:
        return pd.DataFrame({"item_id": ordered["item_id"].tolist(), "codes": [list(raw)], "collided": [False]})

    codes = []
    suffix = 0
    for _ in range(len(ordered)):
        while raw + (suffix,) in taken_set:
            suffix += 1
        codes.append(list(raw + (suffix,)))
        suffix += 1
    return pd.DataFrame({"item_id": ordered["item_id"].tolist(), "codes": codes, "collided": collided})
