"""Properties of the two-stage resolution shared by FORGE, ECM and RRS, and its stats."""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sid.codes import priority_hash
from sid.quantize.residual import encode_residual
from sid.resolve import (
    RESOLVED_COLUMNS,
    EcmResolver,
    ForgeResolver,
    RrsResolver,
    band_key,
    resolve_items,
    summarize_resolution,
    within_bands,
)
from sid.resolve.result import STEP_PENDING


def make_catalog(seed: int, count: int, sizes: list[int]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Seeded items over small codebooks, so that many raw SIDs collide."""
    rng = np.random.default_rng(seed)
    codebooks = [rng.normal(size=(size, 2)) * 0.5**level for level, size in enumerate(sizes)]
    vectors = rng.normal(size=(count, 2))
    encoded = encode_residual(vectors, codebooks, top_k=max(sizes))
    item_ids = [f"item-{index}" for index in range(count)]
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "raw_codes": [row.tolist() for row in encoded.codes],
            "popularity": rng.integers(0, 3, count).tolist(),
            "priority_hash": [priority_hash(item_id, seed) for item_id in item_ids],
            "candidate_codes": [row.tolist() for row in encoded.candidate_codes],
            "candidate_distances": [row.tolist() for row in encoded.candidate_distances],
            "embedding": [row.tolist() for row in vectors],
        }
    )
    return items, codebooks


RESOLVERS = {
    "forge_knn": ForgeResolver(),
    "forge_knn_cap2": ForgeResolver(capacity=2),
    "forge_random": ForgeResolver(variant="random", seed=5),
    "ecm": EcmResolver(),
    "rrs": RrsResolver(),
}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 30),
    sizes=st.lists(st.integers(2, 3), min_size=1, max_size=3),
    name=st.sampled_from(sorted(RESOLVERS)),
    taken_share=st.sampled_from([0.0, 0.3]),
)
def test_resolution_properties(seed, count, sizes, name, taken_share):
    items, codebooks = make_catalog(seed, count, sizes)
    resolver = RESOLVERS[name]
    taken = {tuple(codes) for codes in items["raw_codes"].iloc[: int(count * taken_share)]}

    resolved = resolve_items(items, resolver, taken=taken, codebooks=codebooks)
    shuffled_items = items.sample(frac=1.0, random_state=seed % 1000)
    shuffled = resolve_items(shuffled_items, resolver, taken=taken, codebooks=codebooks)

    # No item lost or duplicated.
    assert list(resolved.columns) == RESOLVED_COLUMNS
    assert sorted(resolved["item_id"]) == sorted(items["item_id"])

    # Capacity holds (1 means unique) and taken SIDs stay unused.
    capacity = getattr(resolver, "capacity", 1)
    final = [tuple(codes) for codes in resolved["codes"]]
    assert max(collections.Counter(final).values()) <= capacity
    assert not set(final) & taken

    # Flags agree with the codes; only the append step lengthens a SID.
    raw = dict(zip(items["item_id"], map(tuple, items["raw_codes"])))
    for row in resolved.itertuples():
        assert row.moved == (tuple(row.codes) != raw[row.item_id])
        assert (len(row.codes) == len(sizes) + 1) == (row.step == "append")
    assert (resolved["step"] != "pending").all()

    # The input row order does not matter.
    assert dict(zip(resolved["item_id"], map(tuple, resolved["codes"]))) == dict(
        zip(shuffled["item_id"], map(tuple, shuffled["codes"]))
    )


@pytest.mark.parametrize("name", sorted(RESOLVERS))
def test_resolution_accepts_spark_arrays(name):
    items, codebooks = make_catalog(3, 40, [3, 3])
    # Spark's applyInPandas hands array columns over as numpy arrays, nested ones as object arrays.
    spark_like = items.assign(
        raw_codes=[np.asarray(codes, dtype=np.int32) for codes in items["raw_codes"]],
        candidate_codes=[
            np.array([np.asarray(level, dtype=np.int32) for level in row], dtype=object)
            for row in items["candidate_codes"]
        ],
        embedding=[np.asarray(vector, dtype=np.float32) for vector in items["embedding"]],
    )

    expected = resolve_items(items, RESOLVERS[name], codebooks=codebooks)
    resolved = resolve_items(spark_like, RESOLVERS[name], codebooks=codebooks)

    assert resolved["codes"].tolist() == expected["codes"].tolist()


def first_stage(items: pd.DataFrame, resolver, codebooks, taken) -> pd.DataFrame:
    """Run resolve_group on every band of ``items``, as the Spark stage does."""
    groups = items.groupby(items["raw_codes"].map(lambda codes: str(band_key(codes))))
    return pd.concat([resolver.resolve_group(group, taken=taken, codebooks=codebooks) for _, group in groups],
                     ignore_index=True)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(2, 80),
    sizes=st.lists(st.integers(2, 12), min_size=1, max_size=3),
    name=st.sampled_from(sorted(RESOLVERS)),
    taken_share=st.sampled_from([0.0, 0.3]),
)
def test_reachable_bands_keep_result(seed, count, sizes, name, taken_share):
    items, codebooks = make_catalog(seed, count, sizes)
    resolver = RESOLVERS[name]
    taken = {tuple(codes) + (0,) for codes in items["raw_codes"].iloc[: int(count * taken_share)]}
    taken |= {tuple(codes) for codes in items["raw_codes"].iloc[int(count * taken_share) : int(count * taken_share * 2)]}

    banded = first_stage(items, resolver, codebooks, taken)
    is_pending = banded["step"] == STEP_PENDING
    pending = items[items["item_id"].isin(set(banded.loc[is_pending, "item_id"]))]
    assigned = [tuple(codes) for codes in banded.loc[~is_pending, "codes"]]
    bands = resolver.reachable_bands(pending, codebooks=codebooks)

    full = resolver.resolve_pending(pending, assigned=assigned, taken=taken, codebooks=codebooks)
    restricted = resolver.resolve_pending(pending, assigned=within_bands(assigned, bands),
                                          taken=within_bands(taken, bands), codebooks=codebooks)

    pd.testing.assert_frame_equal(restricted, full)


@pytest.mark.parametrize("name", sorted(RESOLVERS))
def test_reachable_bands_leave_out_far_sids(name):
    # 16 x 16 bands with 2 last-level codes each: a few bands overflow, and their pending
    # items cannot reach every other band.
    items, codebooks = make_catalog(11, 400, [16, 16, 2])
    resolver = RESOLVERS[name]

    banded = first_stage(items, resolver, codebooks, set())
    is_pending = banded["step"] == STEP_PENDING
    pending = items[items["item_id"].isin(set(banded.loc[is_pending, "item_id"]))]
    assigned = [tuple(codes) for codes in banded.loc[~is_pending, "codes"]]
    bands = resolver.reachable_bands(pending, codebooks=codebooks)
    nearby = within_bands(assigned, bands)

    assert len(pending) > 0
    assert {band_key(codes) for codes in pending["raw_codes"]} <= bands
    assert len(nearby) > 0
    assert len(nearby) < len(assigned)
    full = resolver.resolve_pending(pending, assigned=assigned, codebooks=codebooks)
    restricted = resolver.resolve_pending(pending, assigned=nearby, codebooks=codebooks)
    pd.testing.assert_frame_equal(restricted, full)


@pytest.mark.parametrize("name", sorted(RESOLVERS))
def test_search_blocks_keep_result(name, monkeypatch):
    from sid.resolve import _tree

    items, codebooks = make_catalog(4, 300, [4, 4, 3])
    whole = resolve_items(items, RESOLVERS[name], codebooks=codebooks)

    # Blocks of one or a few items instead of all pending items at once.
    monkeypatch.setattr(_tree, "MAX_CANDIDATE_ENTRIES", 50)
    blocked = resolve_items(items, RESOLVERS[name], codebooks=codebooks)

    assert (whole["step"] != "keep").any()
    pd.testing.assert_frame_equal(blocked, whole)


def test_group_stage_keeps_last_level_moves_in_band():
    items, codebooks = make_catalog(8, 60, [3, 3, 3])

    for _, group in items.groupby(items["raw_codes"].map(lambda codes: str(band_key(codes)))):
        resolved = ForgeResolver().resolve_group(group, codebooks=codebooks)
        bands = {band_key(codes) for codes in resolved["codes"]}
        assert bands == {band_key(group["raw_codes"].iloc[0])}


def test_stats_count_each_step():
    items, codebooks = make_catalog(1, 80, [2, 2, 2])

    resolved = resolve_items(items, EcmResolver(), codebooks=codebooks)
    stats = summarize_resolution(resolved)

    assert stats.items == 80
    assert sum(stats.steps.values()) == 80
    assert stats.moved == int(resolved["moved"].sum())
    # 8 SIDs of 3 levels hold 8 items; the other 72 need a fourth code.
    assert stats.steps["append"] == 72
    assert stats.distance_increase_unknown == 0
    metrics = stats.to_metrics()
    assert metrics["resolve/fallback/append"] == 72.0
    assert metrics["resolve/items"] == 80.0


def test_stats_distance_increase_matches_reconstruction():
    items, codebooks = make_catalog(2, 50, [3, 3])

    resolved = resolve_items(items, RrsResolver(), codebooks=codebooks).set_index("item_id")

    vectors = np.array(items["embedding"].tolist())
    moved = resolved[resolved["moved"] & (resolved["step"] != "append")]
    assert len(moved) > 0
    for item_id, row in moved.iterrows():
        vector = vectors[items.index[items["item_id"] == item_id][0]]
        raw = items.set_index("item_id").loc[item_id, "raw_codes"]
        before = np.sum((vector - sum(codebook[code] for codebook, code in zip(codebooks, raw))) ** 2)
        after = np.sum((vector - sum(codebook[code] for codebook, code in zip(codebooks, row["codes"]))) ** 2)
        assert row["distance_increase"] == pytest.approx(after - before)


def test_summarize_rejects_foreign_frame():
    with pytest.raises(ValueError, match="resolved frame is missing columns"):
        summarize_resolution(pd.DataFrame({"item_id": ["a"]}))


def test_resolve_items_empty_input():
    items, codebooks = make_catalog(0, 1, [2])

    resolved = resolve_items(items.iloc[:0], EcmResolver(), codebooks=codebooks)

    assert list(resolved.columns) == RESOLVED_COLUMNS
    assert resolved.empty
