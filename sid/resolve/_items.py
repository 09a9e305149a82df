"""Input parsing, SID occupancy and output rows shared by the re-assignment strategies."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from sid.resolve.result import STEP_APPEND, STEP_KEEP, STEP_PENDING
from sid.resolve.suffix import sort_by_priority

REQUIRED_COLUMNS = ("item_id", "raw_codes", "popularity", "priority_hash")

Sid = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ParsedItems:
    """One input frame as arrays, rows in the priority order.

    raw: int64 (n, L). embeddings: float64 (n, d) or None. candidate_codes: int64 (n, L, k)
    or None. candidate_distances: float64 (n, L, k) or None.
    """

    item_ids: list[str]
    raw: np.ndarray
    embeddings: np.ndarray | None
    candidate_codes: np.ndarray | None
    candidate_distances: np.ndarray | None

    @property
    def levels(self) -> int:
        return int(self.raw.shape[1])

    def raw_sid(self, index: int) -> Sid:
        return tuple(int(code) for code in self.raw[index])


def parse_items(frame: pd.DataFrame, *, require: Sequence[str] = ()) -> ParsedItems:
    """Validate ``frame`` and return its rows as arrays in the priority order.

    ``require`` names optional columns (embedding, candidate_codes) the caller cannot do
    without. The frame must not be empty.
    """
    missing = [column for column in (*REQUIRED_COLUMNS, *require) if column not in frame.columns]
    if missing:
        raise ValueError(
            f"items are missing columns {missing}; give item_id, raw_codes, popularity, priority_hash"
            f"{' and ' + ', '.join(require) if require else ''}"
        )
    duplicated = frame["item_id"][frame["item_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"item_id must be unique, found {len(duplicated)} repeats (first {duplicated.iloc[0]!r})")

    ordered = sort_by_priority(frame)
    raw = _stack(ordered["raw_codes"], "raw_codes", np.int64, nested=False)
    candidate_codes = candidate_distances = embeddings = None
    if "embedding" in ordered.columns:
        embeddings = _stack(ordered["embedding"], "embedding", np.float64, nested=False)
        if not np.isfinite(embeddings).all():
            raise ValueError("embedding contains NaN or infinite values; repair those items before resolving")
    if "candidate_codes" in ordered.columns:
        candidate_codes = _stack(ordered["candidate_codes"], "candidate_codes", np.int64, nested=True)
        if "candidate_distances" in ordered.columns:
            candidate_distances = _stack(ordered["candidate_distances"], "candidate_distances", np.float64, nested=True)
        if candidate_codes.shape[:2] != raw.shape:
            raise ValueError(
                f"candidate_codes must have shape (L, k) = ({raw.shape[1]}, k) per item, "
                f"got {candidate_codes.shape[1:]}"
            )
    return ParsedItems(ordered["item_id"].astype(str).tolist(), raw, embeddings, candidate_codes, candidate_distances)


def _stack(column: pd.Series, name: str, dtype: type, *, nested: bool) -> np.ndarray:
    # Spark hands arrays to pandas as numpy object arrays of numpy arrays; stack them level by level.
    try:
        if nested:
            return np.stack([np.stack([np.asarray(level, dtype=dtype) for level in row]) for row in column])
        return np.stack([np.asarray(row, dtype=dtype) for row in column])
    except ValueError as error:
        raise ValueError(f"{name} must have the same length in every row: {error}") from error


def prepare_codebooks(codebooks: Sequence[np.ndarray] | None, items: ParsedItems) -> list[np.ndarray] | None:
    """Return the codebooks as float64 (K_l, d) arrays after checking them against ``items``."""
    if codebooks is None:
        return None
    prepared = [np.asarray(codebook, dtype=np.float64) for codebook in codebooks]
    if len(prepared) != items.levels:
        raise ValueError(f"got {len(prepared)} codebooks for raw codes of {items.levels} levels; pass one per level")
    for level, codebook in enumerate(prepared):
        if codebook.ndim != 2 or len(codebook) == 0:
            raise ValueError(f"codebook {level} must be a non-empty (K, d) array, got shape {codebook.shape}")
        if codebook.shape[1] != prepared[0].shape[1]:
            raise ValueError(
                f"codebook {level} has dimension {codebook.shape[1]}, codebook 0 has {prepared[0].shape[1]}"
            )
        if items.raw.size and (items.raw[:, level].min() < 0 or items.raw[:, level].max() >= len(codebook)):
            raise ValueError(
                f"raw codes at level {level} must lie in [0, {len(codebook)}); encode with these codebooks"
            )
    if items.embeddings is not None and items.embeddings.shape[1] != prepared[0].shape[1]:
        raise ValueError(
            f"embeddings have dimension {items.embeddings.shape[1]} but the codebooks expect {prepared[0].shape[1]}"
        )
    return prepared


def as_sid_set(sids: Iterable[Sequence[int]]) -> set[Sid] | frozenset[Sid]:
    """Return ``sids`` as a set of int tuples; a set or frozenset of tuples passes unchanged."""
    if isinstance(sids, (set, frozenset)):
        return sids
    return {tuple(int(code) for code in sid) for sid in sids}


class Occupancy:
    """Items per SID against a capacity; SIDs in ``taken`` count as full.

    ``assigned`` lists SIDs already given to items of this run, one entry per item.
    """

    def __init__(self, capacity: int, taken: Iterable[Sequence[int]], assigned: Iterable[Sequence[int]] = ()) -> None:
        self.capacity = capacity
        self._taken = as_sid_set(taken)
        self._counts: collections.Counter[Sid] = collections.Counter(
            tuple(int(code) for code in sid) for sid in assigned
        )

    def is_taken(self, sid: Sid) -> bool:
        return sid in self._taken

    def has_room(self, sid: Sid) -> bool:
        return sid not in self._taken and self._counts[sid] < self.capacity

    def add(self, sid: Sid) -> None:
        self._counts[sid] += 1


class Assignment:
    """Final SID and step of each item of a ParsedItems, filled in by the strategy steps."""

    def __init__(self, items: ParsedItems, occupancy: Occupancy) -> None:
        self.items = items
        self.occupancy = occupancy
        self.codes: list[Sid | None] = [None] * len(items.item_ids)
        self.steps = [STEP_PENDING] * len(items.item_ids)

    def unplaced(self) -> list[int]:
        """Return the indices of items without a SID, in the priority order."""
        return [index for index, sid in enumerate(self.codes) if sid is None]

    def place(self, index: int, sid: Sid, step: str) -> None:
        self.occupancy.add(sid)
        self.codes[index] = sid
        self.steps[index] = step

    def place_first_free(self, index: int, candidates: Iterable[Sid], step: str) -> bool:
        """Give item ``index`` the first candidate with room; return whether one had room."""
        for sid in candidates:
            if self.occupancy.has_room(sid):
                self.place(index, sid, step)
                return True
        return False


def keep_raw_codes(assignment: Assignment) -> np.ndarray:
    """Let items keep their raw SID while it has room, in the priority order.

    Returns bool (n,): whether more items wanted the item's raw SID than it had room for,
    counting a taken SID as full.
    """
    items = assignment.items
    for index in range(len(items.item_ids)):
        assignment.place_first_free(index, [items.raw_sid(index)], STEP_KEEP)

    demand = collections.Counter(items.raw_sid(index) for index in range(len(items.item_ids)))
    occupancy = assignment.occupancy
    return np.array(
        [
            demand[sid] > occupancy.capacity or occupancy.is_taken(sid)
            for sid in (items.raw_sid(index) for index in range(len(items.item_ids)))
        ],
        dtype=bool,
    )


def append_disambiguation(assignment: Assignment) -> None:
    """Give each unplaced item its raw SID plus the smallest extra code with room (the last fallback)."""
    for index in assignment.unplaced():
        raw = assignment.items.raw_sid(index)
        extra = 0
        while not assignment.occupancy.has_room(raw + (extra,)):
            extra += 1
        assignment.place(index, raw + (extra,), STEP_APPEND)


def resolved_frame(assignment: Assignment, collided: np.ndarray, codebooks: list[np.ndarray] | None) -> pd.DataFrame:
    """Return the output rows (``RESOLVED_COLUMNS``) of ``assignment``, in the priority order."""
    items = assignment.items
    raw_sids = [items.raw_sid(index) for index in range(len(items.item_ids))]
    final = [sid if sid is not None else raw for sid, raw in zip(assignment.codes, raw_sids)]
    levels = items.levels
    return pd.DataFrame(
        {
            "item_id": items.item_ids,
            "codes": [list(sid) for sid in final],
            "collided": collided.tolist(),
            "moved": [sid != raw for sid, raw in zip(final, raw_sids)],
            "levels_changed": [sum(a != b for a, b in zip(sid[:levels], raw)) for sid, raw in zip(final, raw_sids)],
            "distance_increase": _distance_increase(items, final, codebooks).tolist(),
            "step": assignment.steps,
        }
    )


def _distance_increase(items: ParsedItems, final: list[Sid], codebooks: list[np.ndarray] | None) -> np.ndarray:
    """Return float64 (n,): ||x - recon(final)||^2 - ||x - recon(raw)||^2, NaN where unknown.

    An appended code is not a codeword, so only the first L codes are reconstructed.
    """
    levels = items.levels
    heads = np.array([sid[:levels] for sid in final], dtype=np.int64).reshape(items.raw.shape)
    unchanged = (heads == items.raw).all(axis=1)

    if codebooks is not None and items.embeddings is not None:
        increase = _squared_error(items.embeddings, heads, codebooks) - _squared_error(
            items.embeddings, items.raw, codebooks
        )
    else:
        increase = np.full(len(final), np.nan)
        # candidate_distances[i, L-1, j] is ||x - recon(raw[:L-1] + (candidate_codes[i, L-1, j],))||^2,
        # so a move of the last level alone has an exact cost without the embedding.
        if items.candidate_codes is not None and items.candidate_distances is not None:
            last_only = ~unchanged & (heads[:, :-1] == items.raw[:, :-1]).all(axis=1)
            for index in np.flatnonzero(last_only):
                matches = np.flatnonzero(items.candidate_codes[index, -1] == heads[index, -1])
                if len(matches):
                    distances = items.candidate_distances[index, -1]
                    increase[index] = float(distances[matches[0]]) - float(distances[0])
    increase[unchanged] = 0.0
    return increase


def _squared_error(vectors: np.ndarray, codes: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    reconstruction = sum(codebook[codes[:, level]] for level, codebook in enumerate(codebooks))
    return ((vectors - reconstruction) ** 2).sum(axis=1)
