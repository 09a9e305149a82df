"""FORGE capped re-assignment: hand-computed cases, the fallback chain and input checks."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from sid.codes import priority_hash
from sid.quantize.residual import encode_residual
from sid.resolve import ForgeResolver, resolve_forge, resolve_items, summarize_resolution

# One dimension keeps every distance easy to check by hand. Level 0 has codes at 0, 10, 20
# and 30; level 1 splits the residual into codes 0, 1, 2 and 3. Both levels have 4 codes
# because encode_residual caps top_k at the smallest codebook.
CODEBOOKS = [np.array([[0.0], [10.0], [20.0], [30.0]]), np.array([[0.0], [1.0], [2.0], [3.0]])]


def make_items(values: list[float], *, top_k: int = 4, codebooks=CODEBOOKS) -> pd.DataFrame:
    """Items a, b, c, ... with popularity descending, so the priority order is a, b, c, ..."""
    vectors = np.array(values, dtype=np.float64).reshape(len(values), -1)
    encoded = encode_residual(vectors, codebooks, top_k=top_k)
    item_ids = [chr(ord("a") + index) for index in range(len(values))]
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "raw_codes": [row.tolist() for row in encoded.codes],
            "popularity": list(range(len(values), 0, -1)),
            "priority_hash": [priority_hash(item_id, 0) for item_id in item_ids],
            "candidate_codes": [row.tolist() for row in encoded.candidate_codes],
            "candidate_distances": [row.tolist() for row in encoded.candidate_distances],
            "embedding": [row.tolist() for row in vectors],
        }
    )


def codes_by_item(resolved: pd.DataFrame) -> dict[str, tuple[int, ...]]:
    return {item_id: tuple(codes) for item_id, codes in zip(resolved["item_id"], resolved["codes"])}


def test_forge_unique_moves_to_nearest_free_codes():
    resolved = resolve_forge(make_items([0.1, 0.2, 0.3, 0.4]))

    assert codes_by_item(resolved) == {"a": (0, 0), "b": (0, 1), "c": (0, 2), "d": (0, 3)}
    assert resolved["step"].tolist() == ["keep", "reassign", "reassign", "reassign"]
    assert resolved["collided"].all()
    assert resolved["moved"].tolist() == [False, True, True, True]
    assert resolved["levels_changed"].tolist() == [0, 1, 1, 1]


def test_forge_distance_increase_from_candidates():
    resolved = resolve_forge(make_items([0.1, 0.2]).drop(columns=["embedding"]))

    # b: ||0.2 - 1||^2 - ||0.2 - 0||^2 = 0.64 - 0.04, from candidate_distances alone.
    assert resolved["distance_increase"].tolist() == pytest.approx([0.0, 0.6], abs=1e-6)


def test_forge_capacity_two_keeps_two_per_sid():
    resolved = resolve_forge(make_items([0.1, 0.2, 0.3, 0.4]), capacity=2)

    assert codes_by_item(resolved) == {"a": (0, 0), "b": (0, 0), "c": (0, 1), "d": (0, 1)}
    assert resolved["collided"].all()


def test_forge_group_of_one_keeps_raw_codes():
    resolved = resolve_forge(make_items([0.1]))

    assert codes_by_item(resolved) == {"a": (0, 0)}
    assert not resolved["collided"].iloc[0]
    assert resolved["step"].iloc[0] == "keep"


def test_forge_never_reuses_taken_sids():
    resolved = resolve_forge(make_items([0.1, 0.2, 0.3, 0.4]), taken=[(0, 1)])

    assert codes_by_item(resolved) == {"a": (0, 0), "b": (0, 2), "c": (0, 3), "d": (0, 0)}
    assert resolved["step"].tolist() == ["keep", "reassign", "reassign", "pending"]


def test_forge_appends_code_without_codebooks():
    items = make_items([0.1, 0.2, 0.3, 0.4])

    resolved = resolve_items(items, ForgeResolver(), taken=[(0, 1)])

    assert codes_by_item(resolved)["d"] == (0, 0, 0)
    assert resolved.set_index("item_id").loc["d", "step"] == "append"
    assert summarize_resolution(resolved).steps["append"] == 1


def test_forge_moves_parent_level_with_codebooks():
    items = make_items([0.1, 0.2, 0.3, 0.4])

    resolved = resolve_items(items, ForgeResolver(), taken=[(0, 1)], codebooks=CODEBOOKS).set_index("item_id")

    # Every (0, *) SID is full, so d (x = 0.4) moves to level-0 code 10 and the last code
    # nearest to its residual -9.6, which is 0.
    assert tuple(resolved.loc["d", "codes"]) == (1, 0)
    assert resolved.loc["d", "step"] == "move_parent"
    assert resolved.loc["d", "levels_changed"] == 1
    assert resolved.loc["d", "distance_increase"] == pytest.approx((0.4 - 10.0) ** 2 - 0.4**2)


def test_forge_widens_beyond_candidate_list():
    items = make_items([0.1, 0.2, 0.3], top_k=2)

    resolved = resolve_forge(items, codebooks=CODEBOOKS)

    # Only one alternative is listed per item, so c finds code 2 in the widened search.
    assert codes_by_item(resolved) == {"a": (0, 0), "b": (0, 1), "c": (0, 2)}
    assert resolved["step"].tolist() == ["keep", "reassign", "widen"]


def test_forge_random_draws_seeded_codes():
    codebooks = [np.zeros((1, 1)), np.linspace(0.0, 1.0, 1000).reshape(-1, 1)]
    items = make_items([0.0, 0.0], top_k=1, codebooks=codebooks)

    resolved = resolve_forge(items, variant="random", seed=7, codebooks=codebooks)

    digest = hashlib.sha256(b"7:b:0").hexdigest()
    expected = int(digest[:16], 16) % 1000
    assert expected != 0
    assert codes_by_item(resolved) == {"a": (0, 0), "b": (0, expected)}
    assert resolved["step"].tolist() == ["keep", "reassign"]


def test_forge_random_is_deterministic():
    codebooks = [np.zeros((1, 1)), np.linspace(0.0, 1.0, 50).reshape(-1, 1)]
    items = make_items([0.0] * 8, top_k=1, codebooks=codebooks)

    first = resolve_forge(items, variant="random", seed=3, codebooks=codebooks)
    second = resolve_forge(items.iloc[::-1], variant="random", seed=3, codebooks=codebooks)

    assert codes_by_item(first) == codes_by_item(second)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"capacity": 0}, "capacity=0 should be >= 1"),
        ({"variant": "nearest"}, "variant='nearest' is not supported"),
        ({"alternatives": 0}, "alternatives=0 should be >= 1"),
        ({"widen_factor": 1}, "widen_factor=1 should be >= 2"),
    ],
)
def test_forge_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        ForgeResolver(**options)


def test_forge_random_needs_codebooks():
    with pytest.raises(ValueError, match="variant='random' needs codebooks"):
        resolve_forge(make_items([0.1, 0.2]), variant="random")


def test_forge_rejects_missing_columns():
    with pytest.raises(ValueError, match=r"missing columns \['candidate_codes'\]"):
        resolve_forge(make_items([0.1]).drop(columns=["candidate_codes"]))


def test_forge_rejects_duplicate_item_ids():
    items = make_items([0.1, 0.2]).assign(item_id=["a", "a"])

    with pytest.raises(ValueError, match="item_id must be unique"):
        resolve_forge(items)
