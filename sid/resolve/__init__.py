"""Collision resolution strategies that make every SID unique."""

from sid.resolve.suffix import SUFFIX_COLUMNS, resolve_suffix, sort_by_priority

__all__ = ["SUFFIX_COLUMNS", "resolve_suffix", "sort_by_priority"]
