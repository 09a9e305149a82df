"""Output contract shared by the re-assignment strategies (FORGE, ECM, RRS) and its summary.

Every strategy returns one row per input item with the columns in ``RESOLVED_COLUMNS``.
The ``step`` column names how the item got its final SID:

- ``keep``: the item kept its raw SID;
- ``reassign``: the strategy's normal candidate search moved it;
- ``widen``, ``move_parent``, ``append``: the fallback chain that runs when the normal
  search finds no free SID. First the search is widened once, then level L-1 may move, and
  last a disambiguation code is appended (SID length L+1);
- ``pending``: the per-group stage could not place the item, and the global stage
  (``resolve_pending``) must finish it. Its ``codes`` are still the raw codes.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

__all__ = [
    "FALLBACK_STEPS",
    "RESOLVED_COLUMNS",
    "RESOLVED_SCHEMA",
    "STEPS",
    "ResolveStats",
    "summarize_resolution",
]

STEP_KEEP = "keep"
STEP_REASSIGN = "reassign"
STEP_WIDEN = "widen"
STEP_MOVE_PARENT = "move_parent"
STEP_APPEND = "append"
STEP_PENDING = "pending"
STEPS = (STEP_KEEP, STEP_REASSIGN, STEP_WIDEN, STEP_MOVE_PARENT, STEP_APPEND, STEP_PENDING)
FALLBACK_STEPS = (STEP_WIDEN, STEP_MOVE_PARENT, STEP_APPEND)

RESOLVED_COLUMNS = ["item_id", "codes", "collided", "moved", "levels_changed", "distance_increase", "step"]
# Spark DDL of the same columns, for applyInPandas.
RESOLVED_SCHEMA = (
    "item_id STRING, codes ARRAY<INT>, collided BOOLEAN, moved BOOLEAN, "
    "levels_changed INT, distance_increase DOUBLE, step STRING"
)


@dataclasses.dataclass(frozen=True)
class ResolveStats:
    """Counts and costs of one resolution run, computed from its output rows.

    distance_increase is ||x - recon(final)||^2 - ||x - recon(raw)||^2 in the quantizer's
    input space, summed over moved items whose increase is known. It is unknown (NaN in
    the rows) where neither the codebooks nor a matching candidate distance were given.
    The increase can be negative, because exact residual search may find a tuple that
    reconstructs the item better than the greedy one.
    """

    items: int
    collided: int
    moved: int
    pending: int
    # Moved items by the number of the first L levels that changed. Appended items count
    # under 0 because their first L codes are the raw codes.
    levels_changed: dict[int, int]
    mean_levels_changed: float
    distance_increase_total: float
    distance_increase_mean: float
    distance_increase_unknown: int
    steps: dict[str, int]

    def to_metrics(self, prefix: str = "resolve") -> dict[str, float]:
        """Flatten into metric keys such as ``resolve/moved`` and ``resolve/fallback/widen``."""
        metrics = {
            f"{prefix}/items": float(self.items),
            f"{prefix}/collided": float(self.collided),
            f"{prefix}/moved": float(self.moved),
            f"{prefix}/pending": float(self.pending),
            f"{prefix}/mean_levels_changed": self.mean_levels_changed,
            f"{prefix}/distance_increase_total": self.distance_increase_total,
            f"{prefix}/distance_increase_mean": self.distance_increase_mean,
            f"{prefix}/distance_increase_unknown": float(self.distance_increase_unknown),
        }
        for count, items in sorted(self.levels_changed.items()):
            metrics[f"{prefix}/levels_changed/{count}"] = float(items)
        for step in FALLBACK_STEPS:
            metrics[f"{prefix}/fallback/{step}"] = float(self.steps.get(step, 0))
        return metrics


def summarize_resolution(resolved: pd.DataFrame) -> ResolveStats:
    """Aggregate the rows returned by a strategy (columns ``RESOLVED_COLUMNS``) into stats."""
    missing = [column for column in RESOLVED_COLUMNS if column not in resolved.columns]
    if missing:
        raise ValueError(f"resolved frame is missing columns {missing}; pass the frame a resolve_* function returned")

    moved = resolved[resolved["moved"].astype(bool)]
    levels_changed = {int(count): int(items) for count, items in moved["levels_changed"].value_counts().items()}
    known = moved["distance_increase"].dropna()
    steps = {step: int((resolved["step"] == step).sum()) for step in STEPS}
    return ResolveStats(
        items=len(resolved),
        collided=int(resolved["collided"].astype(bool).sum()),
        moved=len(moved),
        pending=steps[STEP_PENDING],
        levels_changed=levels_changed,
        mean_levels_changed=float(moved["levels_changed"].mean()) if len(moved) else 0.0,
        distance_increase_total=float(known.sum()),
        distance_increase_mean=float(known.mean()) if len(known) else math.nan,
        distance_increase_unknown=len(moved) - len(known),
        steps=steps,
    )


def empty_resolved() -> pd.DataFrame:
    """Return a frame with the ``RESOLVED_COLUMNS`` and no rows."""
    return pd.DataFrame({column: pd.Series(dtype=object) for column in RESOLVED_COLUMNS})
