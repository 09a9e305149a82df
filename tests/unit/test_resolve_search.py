"""ECM and RRS: hand-computed cases and the fast search against a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sid.codes import priority_hash
from sid.quantize.residual import encode_residual
from sid.resolve import EcmResolver, RrsResolver, resolve_ecm, resolve_items, resolve_rrs

# In one dimension: level 0 has codes at 0 and 4, level 1 at 0, 1 and -2.2. Item x = 1.9
# encodes greedily to (0, 1) with residual norms 1.9 + 0.9 = 2.8, but the tuple (1, 2)
# reconstructs it as 4 - 2.2 = 1.8 with norms 2.1 + 0.1 = 2.2, so ECM prefers it.
CODEBOOKS = [np.array([[0.0], [4.0]]), np.array([[0.0], [1.0], [-2.2]])]


def make_items(vectors: np.ndarray, codebooks, *, popularity=None, prefix: str = "i") -> pd.DataFrame:
    vectors = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    codes = encode_residual(vectors, codebooks).codes
    item_ids = [f"{prefix}{index}" for index in range(len(vectors))]
    if popularity is None:
        popularity = list(range(len(vectors), 0, -1))
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "raw_codes": [row.tolist() for row in codes],
            "popularity": popularity,
            "priority_hash": [priority_hash(item_id, 0) for item_id in item_ids],
            "embedding": [row.tolist() for row in vectors],
        }
    )


def codes_by_item(resolved: pd.DataFrame) -> dict[str, tuple[int, ...]]:
    return {item_id: tuple(codes) for item_id, codes in zip(resolved["item_id"], resolved["codes"])}


def test_ecm_prefers_lowest_score_tuple():
    items = make_items([1.0, 1.9], CODEBOOKS)

    resolved = resolve_items(items, EcmResolver(schedules=[(2, 2)]), codebooks=CODEBOOKS).set_index("item_id")

    assert tuple(resolved.loc["i0", "codes"]) == (0, 1)
    assert tuple(resolved.loc["i1", "codes"]) == (1, 2)
    assert resolved.loc["i1", "levels_changed"] == 2
    assert resolved.loc["i1", "distance_increase"] == pytest.approx((1.9 - 1.8) ** 2 - (1.9 - 1.0) ** 2)


def test_rrs_takes_first_free_leaf_depth_first():
    items = make_items([1.0, 1.9], CODEBOOKS)

    resolved = resolve_items(items, RrsResolver(schedules=[(2, 2)]), codebooks=CODEBOOKS).set_index("item_id")

    # Depth first under level-0 code 0: code 1 is owned, code 0 is the next nearest to 1.9.
    assert tuple(resolved.loc["i1", "codes"]) == (0, 0)
    assert resolved.loc["i1", "levels_changed"] == 1
    assert resolved.loc["i1", "distance_increase"] == pytest.approx(1.9**2 - 0.9**2)


@pytest.mark.parametrize("resolve", [resolve_ecm, resolve_rrs])
def test_group_stage_runs_last_level_pass(resolve):
    items = make_items([1.0, 1.9], CODEBOOKS)

    resolved = resolve(items, codebooks=CODEBOOKS)

    # The default pass 1 is (1, 3) here; both orders pick the nearest free last code.
    assert codes_by_item(resolved) == {"i0": (0, 1), "i1": (0, 0)}
    assert resolved["step"].tolist() == ["keep", "reassign"]
    assert resolved["collided"].tolist() == [True, True]


@pytest.mark.parametrize("resolve", [resolve_ecm, resolve_rrs])
def test_group_stage_leaves_cross_group_pass_pending(resolve):
    items = make_items([1.0, 1.9], CODEBOOKS)

    resolved = resolve(items, codebooks=CODEBOOKS, schedules=[(2, 2)])

    assert codes_by_item(resolved) == {"i0": (0, 1), "i1": (0, 1)}
    assert resolved["step"].tolist() == ["keep", "pending"]


@pytest.mark.parametrize("resolver", [EcmResolver(), RrsResolver()])
def test_search_never_reuses_taken_sids(resolver):
    items = make_items([1.0, 1.9], CODEBOOKS)

    resolved = resolve_items(items, resolver, codebooks=CODEBOOKS, taken=[(0, 1), (0, 0)])

    assert codes_by_item(resolved) == {"i0": (0, 2), "i1": (1, 2)}


@pytest.mark.parametrize("resolver", [EcmResolver(), RrsResolver()])
def test_search_appends_code_when_space_is_full(resolver):
    codebooks = [np.array([[0.0]]), np.array([[0.0], [1.0]])]
    items = make_items([0.1, 0.2, 0.3], codebooks)

    resolved = resolve_items(items, resolver, codebooks=codebooks)

    assert codes_by_item(resolved) == {"i0": (0, 0), "i1": (0, 1), "i2": (0, 0, 0)}
    assert resolved["step"].tolist() == ["keep", "reassign", "append"]


def test_search_rejects_missing_embedding():
    items = make_items([1.0], CODEBOOKS).drop(columns=["embedding"])

    with pytest.raises(ValueError, match=r"missing columns \['embedding'\]"):
        resolve_ecm(items, codebooks=CODEBOOKS)


def test_search_rejects_schedule_of_wrong_length():
    items = make_items([1.0], CODEBOOKS)

    with pytest.raises(ValueError, match=r"schedule \(1, 2, 3\) must give one width >= 1 for each of the 2 levels"):
        resolve_rrs(items, codebooks=CODEBOOKS, schedules=[(1, 2, 3)])


def test_search_rejects_codebook_count_mismatch():
    items = make_items([1.0], CODEBOOKS)

    with pytest.raises(ValueError, match="got 1 codebooks for raw codes of 2 levels"):
        resolve_ecm(items, codebooks=CODEBOOKS[:1])


# Slow reference: the sequential algorithm written with plain loops and recursion.


def slow_candidates(vector, codebooks, widths, order):
    """Return the candidate tuples of one item: depth-first (RRS) or by score (ECM)."""
    leaves = []

    def visit(residual, level, prefix, score):
        if level == len(codebooks):
            leaves.append((score, prefix))
            return
        distances = [float(np.sum((residual - centroid) ** 2)) for centroid in codebooks[level]]
        ranked = sorted(range(len(distances)), key=lambda code: (distances[code], code))
        for code in ranked[: widths[level]]:
            visit(residual - codebooks[level][code], level + 1, prefix + (code,), score + math.sqrt(distances[code]))

    visit(np.asarray(vector, dtype=np.float64), 0, (), 0.0)
    if order == "score":
        leaves.sort(key=lambda leaf: leaf[0])
    return [prefix for _, prefix in leaves]


def slow_resolve(items, codebooks, schedules, order, taken=(), widen_factor=2, parent_width=16):
    sizes = [len(codebook) for codebook in codebooks]

    def cap(widths):
        return tuple(min(width, size) for width, size in zip(widths, sizes))

    passes = [cap(widths) for widths in schedules]
    widest = cap([width * widen_factor for width in passes[-1]])
    passes.append(widest)
    if len(sizes) >= 2:
        passes.append(cap((1,) * (len(sizes) - 2) + (parent_width, widest[-1])))

    rows = sorted(items.itertuples(), key=lambda row: (-row.popularity, row.priority_hash))
    used = set(taken)
    final = {}
    todo = []
    for row in rows:
        raw = tuple(row.raw_codes)
        if raw in used:
            todo.append(row)
        else:
            used.add(raw)
            final[row.item_id] = raw

    for widths in passes:
        left = []
        for row in todo:
            for sid in slow_candidates(row.embedding, codebooks, widths, order):
                if sid not in used:
                    used.add(sid)
                    final[row.item_id] = sid
                    break
            else:
                left.append(row)
        todo = left

    for row in todo:
        extra = 0
        while tuple(row.raw_codes) + (extra,) in used:
            extra += 1
        used.add(tuple(row.raw_codes) + (extra,))
        final[row.item_id] = tuple(row.raw_codes) + (extra,)
    return final


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 40),
    sizes=st.lists(st.integers(2, 4), min_size=1, max_size=3),
    order=st.sampled_from(["score", "depth_first"]),
)
def test_fast_search_matches_slow_reference(seed, count, sizes, order):
    rng = np.random.default_rng(seed)
    codebooks = [rng.normal(size=(size, 3)) * 0.5**level for level, size in enumerate(sizes)]
    items = make_items(rng.normal(size=(count, 3)), codebooks, popularity=rng.integers(0, 3, count).tolist())
    schedules = [(1,) * (len(sizes) - 1) + (3,), (2,) * (len(sizes) - 1) + (4,)]
    taken = {tuple(codes) for codes in items["raw_codes"].iloc[: count // 4]}
    resolver = EcmResolver(schedules=schedules) if order == "score" else RrsResolver(schedules=schedules)

    resolved = resolve_items(items, resolver, codebooks=codebooks, taken=taken)

    assert codes_by_item(resolved) == slow_resolve(items, codebooks, schedules, order, taken=taken)


@pytest.mark.parametrize("order", ["score", "depth_first"])
def test_fast_search_matches_slow_reference_default_schedules(order):
    rng = np.random.default_rng(11)
    codebooks = [rng.normal(size=(6, 4)), rng.normal(size=(6, 4)) * 0.5, rng.normal(size=(24, 4)) * 0.25]
    items = make_items(rng.normal(size=(120, 4)) * 0.3, codebooks, popularity=rng.integers(0, 5, 120).tolist())
    schedules = [(1, 1, 10), (5, 5, 20)]
    resolver = EcmResolver() if order == "score" else RrsResolver()

    resolved = resolve_items(items, resolver, codebooks=codebooks)

    assert resolved["moved"].sum() > 0
    assert codes_by_item(resolved) == slow_resolve(items, codebooks, schedules, order)
