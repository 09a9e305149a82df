"""Collision resolution strategies that make every SID unique, or cap the items per SID."""

from sid.resolve.bands import Resolver, band_key, resolve_items, within_bands
from sid.resolve.ecm import EcmResolver, resolve_ecm
from sid.resolve.forge import ForgeResolver, resolve_forge
from sid.resolve.result import (
    FALLBACK_STEPS,
    RESOLVED_COLUMNS,
    RESOLVED_SCHEMA,
    STEPS,
    ResolveStats,
    summarize_resolution,
)
from sid.resolve.rrs import RrsResolver, resolve_rrs
from sid.resolve.suffix import SUFFIX_COLUMNS, resolve_suffix, sort_by_priority

__all__ = [
    "FALLBACK_STEPS",
    "RESOLVED_COLUMNS",
    "RESOLVED_SCHEMA",
    "STEPS",
    "SUFFIX_COLUMNS",
    "EcmResolver",
    "ForgeResolver",
    "ResolveStats",
    "Resolver",
    "RrsResolver",
    "band_key",
    "resolve_ecm",
    "resolve_forge",
    "resolve_items",
    "resolve_rrs",
    "resolve_suffix",
    "sort_by_priority",
    "summarize_resolution",
    "within_bands",
]
