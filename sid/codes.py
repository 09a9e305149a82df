"""Semantic ID representations: code tuples, token strings and priority keys."""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Sequence

__all__ = ["format_sid", "level_letter", "parse_sid", "priority_hash"]

# One token of a SID string: <letters_code>, such as <a_17>.
SID_TOKEN = re.compile(r"<([a-z]+)_(\d+)>")
# Plain codes separated by commas, whitespace or hyphens, such as 17,203,5.
CODE_LIST = re.compile(r"\d+(?:\s*[,\s-]\s*\d+)*")


def level_letter(level: int) -> str:
    """Return the token prefix of a level: a, b, c, ... z, then aa, ab, ..."""
    letters = string.ascii_lowercase
    if level < len(letters):
        return letters[level]
    return letters[level // len(letters) - 1] + letters[level % len(letters)]


def format_sid(codes: Sequence[int]) -> str:
    """Return the token string of a code tuple: (17, 203, 5) -> '<a_17><b_203><c_5>'."""
    return "".join(f"<{level_letter(level)}_{int(code)}>" for level, code in enumerate(codes))


def parse_sid(text: str) -> list[int]:
    """Return the code tuple of a SID string: '<a_17><b_203><c_5>' -> [17, 203, 5].

    Also accepts codes separated by commas, spaces or hyphens, such as '17,203,5'. Raises
    ValueError when the text is empty, mixes other characters in, or names levels out of
    order, so a typo never turns into a different SID.
    """
    stripped = text.strip()
    if stripped.startswith("<"):
        tokens = SID_TOKEN.findall(stripped)
        if not tokens or "".join(f"<{letter}_{code}>" for letter, code in tokens) != stripped:
            raise ValueError(f"invalid SID string {text!r}; expected tokens like <a_17><b_203><c_5>")
        letters = [letter for letter, _ in tokens]
        expected = [level_letter(level) for level in range(len(tokens))]
        if letters != expected:
            raise ValueError(f"SID string {text!r} has level letters {letters}; expected {expected}")
        return [int(code) for _, code in tokens]

    if not CODE_LIST.fullmatch(stripped):
        raise ValueError(f"invalid SID string {text!r}; expected <a_17><b_203><c_5> or 17,203,5")
    return [int(part) for part in re.findall(r"\d+", stripped)]


def priority_hash(item_id: str, seed: int) -> str:
    """Return the seeded tie-break key of an item: sha256 of "seed:item_id" in hex.

    Spark computes the same value with ``sha2(concat('<seed>:', item_id), 256)``, so the
    priority order is identical in the library, in tests and in distributed stages.
    """
    return hashlib.sha256(f"{seed}:{item_id}".encode("utf-8")).hexdigest()
