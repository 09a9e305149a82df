"""RRS (Recursive Residual Searching) from "Purely Semantic Indexing" (arXiv 2509.16446).

A depth-first search over the candidate tree: at each level the nearest codes to the
true residual of the current prefix are tried nearest first, and the first free leaf
wins. The deepest level therefore changes first and the coarse prefix last. The tree is
expanded with vectorised distance matrices, and the first free leaf in depth-first order
is the same tuple a recursive search returns. The paper's code repeats each pass until a
sweep assigns nothing; one sweep suffices here, because the set of used SIDs only grows,
so an item that found no free leaf cannot find one in a later sweep of the same pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from sid.resolve._residual_search import ResidualSearchResolver
from sid.resolve._tree import SearchOrder

__all__ = ["RrsResolver", "resolve_rrs"]


@dataclasses.dataclass(frozen=True)
class RrsResolver(ResidualSearchResolver):
    """RRS options; see ResidualSearchResolver for the fields and the two stages."""

    order: ClassVar[SearchOrder] = "depth_first"


def resolve_rrs(
    group: pd.DataFrame,
    *,
    codebooks: Sequence[np.ndarray],
    taken: Iterable[Sequence[int]] = (),
    schedules: Sequence[Sequence[int]] | None = None,
) -> pd.DataFrame:
    """Run RRS's per-group stage on one prefix group; see :meth:`RrsResolver.resolve_group`."""
    return RrsResolver(schedules=schedules).resolve_group(group, codebooks=codebooks, taken=taken)
