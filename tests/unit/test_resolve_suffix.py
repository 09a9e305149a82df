import pandas as pd

from sid.codes import format_sid, priority_hash
from sid.resolve import resolve_suffix


def group(rows):
    return pd.DataFrame(
        [
            {"item_id": item, "raw_codes": [1, 2, 3], "popularity": pop, "priority_hash": priority_hash(item, 7)}
            for item, pop in rows
        ]
    )


def test_popularity_decides_suffix_order():
    result = resolve_suffix(group([("a", 1), ("b", 9), ("c", 5)]))
    assert dict(zip(result["item_id"], result["codes"])) == {
        "b": [1, 2, 3, 0], "c": [1, 2, 3, 1], "a": [1, 2, 3, 2],
    }
    assert result["collided"].all()


def test_equal_popularity_uses_seeded_hash():
    result = resolve_suffix(group([("a", 1), ("b", 1)]))
    first = min(["a", "b"], key=lambda item: priority_hash(item, 7))
    assert result.iloc[0]["item_id"] == first
    assert result.iloc[0]["codes"] == [1, 2, 3, 0]


def test_input_order_does_not_matter():
    rows = [(f"item{i}", i % 3) for i in range(20)]
    forward = resolve_suffix(group(rows))
    backward = resolve_suffix(group(rows[::-1]))
    assert dict(zip(forward["item_id"], map(tuple, forward["codes"]))) == dict(
        zip(backward["item_id"], map(tuple, backward["codes"]))
    )


def test_taken_sids_are_skipped():
    result = resolve_suffix(group([("a", 2), ("b", 1)]), taken=[(1, 2, 3, 0), (1, 2, 3, 2)])
    assert result["codes"].tolist() == [[1, 2, 3, 1], [1, 2, 3, 3]]


def test_all_mode_appends_to_single_items():
    result = resolve_suffix(group([("a", 1)]), mode="all")
    assert result["codes"].tolist() == [[1, 2, 3, 0]]
    assert not result["collided"].any()


def test_colliding_mode_keeps_unique_raw_sid():
    result = resolve_suffix(group([("a", 1)]), mode="colliding")
    assert result["codes"].tolist() == [[1, 2, 3]]


def test_colliding_mode_moves_taken_raw_sid():
    result = resolve_suffix(group([("a", 1)]), mode="colliding", taken=[(1, 2, 3)])
    assert result["codes"].tolist() == [[1, 2, 3, 0]]


def test_format_sid():
    assert format_sid([17, 203, 5]) == "<a_17><b_203><c_5>"


def test_priority_hash_is_sha256_of_seed_and_id():
    import hashlib

    assert priority_hash("B004756YJA", 42) == hashlib.sha256(b"42:B004756YJA").hexdigest()
