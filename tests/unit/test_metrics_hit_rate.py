"""Embedding hit rate@K, its tie rule and the held-out pair sampler."""

import numpy as np
import pytest

from sid.metrics import _similarity, embedding_hit_rate, sample_consecutive_pairs, target_ranks


def unit_at(degrees):
    radians = np.deg2rad(degrees)
    return np.array([np.cos(radians), np.sin(radians)], dtype=np.float32)


@pytest.fixture
def tie_catalog():
    """Seven items whose ranked list for query 0 is known by hand.

    SID A (0 degrees): items 0 and 6. SID B (30 degrees): items 1, 2, 3. SID C (10 degrees):
    item 4. SID D (90 degrees): item 5. Inside SID B the priority order is item 2
    (popularity 7), item 3 (popularity 3, hash "a"), item 1 (popularity 3, hash "b").
    """
    angles = {0: 0, 6: 0, 1: 30, 2: 30, 3: 30, 4: 10, 5: 90}
    vectors = np.stack([unit_at(angles[item]) for item in range(7)])
    sids = np.array([0, 1, 1, 1, 2, 3, 0])
    popularity = np.array([1, 3, 7, 3, 1, 1, 1])
    priority_hash = np.array(["q", "b", "c", "a", "d", "e", "f"])
    return vectors, sids, popularity, priority_hash


def test_target_ranks_tie_rule(tie_catalog):
    vectors, sids, popularity, priority_hash = tie_catalog
    pairs = np.array([[0, 6], [0, 4], [0, 2], [0, 3], [0, 1], [0, 5]])

    positions = target_ranks(vectors, pairs, popularity=popularity, priority_hash=priority_hash, sids=sids)

    # Item 6 shares the query's SID (cosine 1), then item 4, then SID B in priority order, then item 5.
    assert positions.tolist() == [0, 1, 2, 3, 4, 5]


def test_target_ranks_ties_without_sids(tie_catalog):
    vectors, _, popularity, priority_hash = tie_catalog
    pairs = np.array([[0, 2], [0, 3], [0, 1]])

    positions = target_ranks(vectors, pairs, popularity=popularity, priority_hash=priority_hash)

    # Bit-identical vectors form the same groups as the SIDs did.
    assert positions.tolist() == [2, 3, 4]


def test_target_ranks_query_is_not_a_candidate(tie_catalog):
    vectors, sids, popularity, priority_hash = tie_catalog
    # Item 6 (hash "f") comes before item 0 (hash "q") in the priority order, so if query 6
    # were its own candidate, item 0 would sit at position 1 instead of 0.
    positions = target_ranks(
        vectors, np.array([[6, 0], [6, 4]]), popularity=popularity, priority_hash=priority_hash, sids=sids
    )
    assert positions.tolist() == [0, 1]


def test_hit_rate_several_cutoffs(tie_catalog):
    vectors, sids, popularity, priority_hash = tie_catalog
    pairs = np.array([[0, 6], [0, 4], [0, 2], [0, 3], [0, 1], [0, 5]])

    metrics = embedding_hit_rate(
        vectors, pairs, popularity=popularity, priority_hash=priority_hash, ks=(5, 1, 2), sids=sids
    )

    assert metrics["hit_rate@1"] == pytest.approx(1 / 6)
    assert metrics["hit_rate@2"] == pytest.approx(2 / 6)
    assert metrics["hit_rate@5"] == pytest.approx(5 / 6)
    assert metrics["pairs"] == 6.0
    assert set(metrics) == {"hit_rate@1", "hit_rate@2", "hit_rate@5", "pairs"}


def test_hit_rate_boundary_inside_sid_group(tie_catalog):
    vectors, sids, popularity, priority_hash = tie_catalog

    metrics = embedding_hit_rate(
        vectors, np.array([[0, 3]]), popularity=popularity, priority_hash=priority_hash, ks=(3, 4), sids=sids
    )

    # Item 3 is second of the three tied items of SID B, at position 3.
    assert metrics["hit_rate@3"] == 0.0
    assert metrics["hit_rate@4"] == 1.0


def test_hit_rate_priority_change_moves_target(tie_catalog):
    vectors, sids, popularity, priority_hash = tie_catalog
    popularity = popularity.copy()
    popularity[1] = 10

    positions = target_ranks(
        vectors, np.array([[0, 1], [0, 2]]), popularity=popularity, priority_hash=priority_hash, sids=sids
    )

    assert positions.tolist() == [2, 3]


def slow_target_ranks(vectors, sids, popularity, priority_hash, pairs):
    """Reference: sort every candidate by (-cosine of its SID, popularity desc, hash asc)."""
    first_of_sid = {}
    for item, sid in enumerate(sids):
        first_of_sid.setdefault(sid, item)
    unit = vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    positions = []
    for query, target in pairs:
        query_vector = unit[first_of_sid[sids[query]]]
        candidates = [item for item in range(len(sids)) if item != query]
        ordered = sorted(
            candidates,
            key=lambda item: (
                -float(unit[first_of_sid[sids[item]]] @ query_vector),
                -popularity[item],
                priority_hash[item],
            ),
        )
        positions.append(ordered.index(target))
    return positions


def test_target_ranks_match_slow_reference(monkeypatch):
    rng = np.random.default_rng(3)
    n_items, n_sids = 60, 15
    centroids = rng.normal(size=(n_sids, 8)).astype(np.float32)
    sids = rng.integers(0, n_sids, size=n_items)
    vectors = centroids[sids]
    popularity = rng.integers(0, 4, size=n_items)
    priority_hash = np.array([f"{value:08x}" for value in rng.permutation(n_items)])
    pairs = np.array([[q, t] for q in range(0, n_items, 3) for t in range(1, n_items, 7) if q != t])

    # A tiny block size makes the scoring loop run over many blocks.
    monkeypatch.setattr(_similarity, "SCORE_BLOCK_CELLS", 2 * n_items)
    positions = target_ranks(vectors, pairs, popularity=popularity, priority_hash=priority_hash, sids=sids)

    expected = slow_target_ranks(vectors, sids.tolist(), popularity.tolist(), priority_hash.tolist(), pairs)
    assert positions.tolist() == expected


def test_raw_embeddings_give_the_ceiling():
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(200, 16)).astype(np.float32)
    pairs = np.array([[i, i + 1] for i in range(0, 198, 2)])
    raw[pairs[:, 1]] = raw[pairs[:, 0]] + 0.05 * rng.normal(size=(len(pairs), 16)).astype(np.float32)
    popularity = np.zeros(200, dtype=np.int64)
    priority_hash = np.array([f"{item:04d}" for item in range(200)])

    # A crude quantizer: four SIDs from the signs of two coordinates, each reconstructed by its mean.
    sids = (raw[:, 0] > 0).astype(np.int64) * 2 + (raw[:, 1] > 0)
    means = np.stack([raw[sids == sid].mean(axis=0) for sid in range(4)])
    reconstructions = means[sids]

    ceiling = embedding_hit_rate(raw, pairs, popularity=popularity, priority_hash=priority_hash, ks=(1, 10))
    quantized = embedding_hit_rate(
        reconstructions, pairs, popularity=popularity, priority_hash=priority_hash, ks=(1, 10), sids=sids
    )

    assert ceiling["hit_rate@1"] == 1.0
    assert quantized["hit_rate@1"] < ceiling["hit_rate@1"]
    assert quantized["hit_rate@10"] <= ceiling["hit_rate@10"]


def test_hit_rate_rejects_bad_input(tie_catalog):
    vectors, sids, popularity, priority_hash = tie_catalog
    arguments = {"popularity": popularity, "priority_hash": priority_hash}

    with pytest.raises(ValueError, match=r"\(i, i\)"):
        embedding_hit_rate(vectors, np.array([[1, 1]]), **arguments)
    with pytest.raises(ValueError, match="must index items in"):
        embedding_hit_rate(vectors, np.array([[0, 7]]), **arguments)
    with pytest.raises(ValueError, match="cutoffs >= 1"):
        embedding_hit_rate(vectors, np.array([[0, 1]]), ks=(0,), **arguments)
    with pytest.raises(ValueError, match="duplicate"):
        embedding_hit_rate(
            vectors, np.array([[0, 1]]), popularity=popularity, priority_hash=np.array(["a"] * 7)
        )
    with pytest.raises(ValueError, match="zero vectors"):
        embedding_hit_rate(np.zeros((7, 2)), np.array([[0, 1]]), **arguments)
    with pytest.raises(ValueError, match="sharing a SID differ"):
        embedding_hit_rate(vectors, np.array([[0, 1]]), sids=np.zeros(7, dtype=np.int64), **arguments)


def test_consecutive_pairs_hand_computed():
    sequences = [[0, 1, 2], [2, 1], [1, 1, 3], [0, 1]]

    pairs = sample_consecutive_pairs(sequences)

    # (1, 1) is a repeat and the second (0, 1) a duplicate.
    assert pairs.tolist() == [[0, 1], [1, 2], [1, 3], [2, 1]]
    assert pairs.dtype == np.int64


def test_consecutive_pairs_exclude_both_orders():
    pairs = sample_consecutive_pairs([[0, 1, 2], [2, 1], [1, 3]], exclude=np.array([[2, 1]]))
    assert pairs.tolist() == [[0, 1], [1, 3]]


def test_consecutive_pairs_sample_is_seeded():
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 50, size=12).tolist() for _ in range(30)]
    everything = {tuple(pair) for pair in sample_consecutive_pairs(sequences).tolist()}

    first = sample_consecutive_pairs(sequences, max_pairs=20, seed=4)
    again = sample_consecutive_pairs(list(reversed(sequences)), max_pairs=20, seed=4)
    other = sample_consecutive_pairs(sequences, max_pairs=20, seed=5)

    assert first.shape == (20, 2)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert {tuple(pair) for pair in first.tolist()} <= everything
    assert first.tolist() == sorted(first.tolist())


def test_consecutive_pairs_edge_cases():
    assert sample_consecutive_pairs([[4], []]).shape == (0, 2)
    with pytest.raises(ValueError, match="max_pairs=0"):
        sample_consecutive_pairs([[0, 1]], max_pairs=0)
