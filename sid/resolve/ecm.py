"""ECM (Exhaustive Candidate Matching) from "Purely Semantic Indexing" (arXiv 2509.16446).

An item whose greedy SID is owned by a higher-priority item scores every tuple of its
candidate tree and takes the best free one. The score is the sum over levels of
||r_l - C_l[c_l]||, lower first. Unlike the paper's code, each candidate's residual is
computed along its own prefix, so the score is exact. That costs one distance matrix per
internal node, at most 1 + 5 + 25 nodes per item for the default pass 2 with L = 3.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from sid.resolve._residual_search import ResidualSearchResolver
from sid.resolve._tree import SearchOrder

__all__ = ["EcmResolver", "resolve_ecm"]


@dataclasses.dataclass(frozen=True)
class EcmResolver(ResidualSearchResolver):
    """ECM options; see ResidualSearchResolver for the fields and the two stages."""

    order: ClassVar[SearchOrder] = "score"


def resolve_ecm(
    group: pd.DataFrame,
    *,
    codebooks: Sequence[np.ndarray],
    taken: Iterable[Sequence[int]] = (),
    schedules: Sequence[Sequence[int]] | None = None,
) -> pd.DataFrame:
    """Run ECM's per-group stage on one prefix group; see :meth:`EcmResolver.resolve_group`."""
    return EcmResolver(schedules=schedules).resolve_group(group, codebooks=codebooks, taken=taken)
