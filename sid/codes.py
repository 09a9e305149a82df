"""Semantic ID representations: code tuples, token strings and priority keys."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence

__all__ = ["format_sid", "level_letter", "priority_hash"]


def level_letter(level: int) -> str:
    """Return the token prefix of a level: a, b, c, ... z, then aa, ab, ..."""
    letters = string.ascii_lowercase
    if level < len(letters):
        return letters[level]
    return letters[level // len(letters) - 1] + letters[level % len(letters)]


def format_sid(codes: Sequence[int]) -> str:
    """Return the token string of a code tuple: (17, 203, 5) -> '<a_17><b_203><c_5>'."""
    return "".join(f"<{level_letter(level)}_{int(code)}>" for level, code in enumerate(codes))


def priority_hash(item_id: str, seed: int) -> str:
    """Return the seeded tie-break key of an item: sha256 of "seed:item_id" in hex.

    Spark computes the same value with ``sha2(concat('<seed>:', item_id), 256)``, so the
    priority order is identical in the library, in tests and in distributed stages.
    """
    return hashlib.sha256(f"{seed}:{item_id}".encode("utf-8")).hexdigest()
