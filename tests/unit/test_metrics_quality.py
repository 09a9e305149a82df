"""Entropy ratio, unique item share, prefix purity, neighbour recall and reconstruction error."""

import math

import numpy as np
import pytest

from sid.metrics import (
    bucket_stats,
    entropy_ratio,
    neighbour_recall,
    prefix_purity,
    reconstruction_error,
    unique_item_share,
)


def test_entropy_ratio_hand_computed():
    # p = 1/4, 1/4, 1/2 gives H = 1.5 ln 2; the maximum for 4 items is ln 4 = 2 ln 2.
    assert entropy_ratio(np.array([1, 1, 2])) == pytest.approx(0.75)


def test_entropy_ratio_edge_cases():
    assert entropy_ratio(np.array([1, 1, 1, 1])) == pytest.approx(1.0)
    assert entropy_ratio(np.array([4])) == pytest.approx(0.0)
    assert entropy_ratio(np.array([0, 1, 0, 1, 2])) == pytest.approx(0.75)
    assert entropy_ratio(np.array([1])) == 1.0
    assert entropy_ratio(np.array([], dtype=np.int64)) == 0.0


def test_unique_item_share_hand_computed():
    assert unique_item_share(np.array([1, 1, 2])) == pytest.approx(0.5)
    assert unique_item_share(np.array([3])) == 0.0
    assert unique_item_share(np.array([1, 1, 0])) == 1.0
    assert unique_item_share(np.array([], dtype=np.int64)) == 0.0


def test_unique_item_share_matches_collision_rate():
    sizes = np.array([1, 1, 2, 4, 1, 3])
    sizes_found, sids = np.unique(sizes, return_counts=True)
    stats = bucket_stats(dict(zip(sizes_found.tolist(), sids.tolist())))
    assert unique_item_share(sizes) == pytest.approx(1.0 - stats["collision_rate"])


@pytest.fixture
def purity_catalog():
    codes = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [1, 0], [1, 1]])
    paths = [["A", "x"], ["A", "y"], ["B", "x"], ["B", "x"], ["B", "y"], ["A"]]
    return codes, paths


def test_prefix_purity_level_one(purity_catalog):
    codes, paths = purity_catalog
    # Prefix 0 contains A, A, B and prefix 1 contains B, B, A: majorities 2 + 2 of 6 items.
    assert prefix_purity(codes, paths, prefix_levels=1, category_depth=1) == pytest.approx(4 / 6)


def test_prefix_purity_level_two(purity_catalog):
    codes, paths = purity_catalog
    # Every full SID contains one top-level category.
    assert prefix_purity(codes, paths, prefix_levels=2, category_depth=1) == pytest.approx(1.0)


def test_prefix_purity_depth_two(purity_catalog):
    codes, paths = purity_catalog
    # Item 5 has no depth-2 category and is not counted. "A > x" and "B > x" are different
    # categories, so prefix 0 contains three categories of one item each.
    assert prefix_purity(codes, paths, prefix_levels=1, category_depth=2) == pytest.approx(2 / 5)
    assert prefix_purity(codes, paths, prefix_levels=2, category_depth=2) == pytest.approx(3 / 5)


def test_prefix_purity_without_categories_warns(purity_catalog):
    codes, _ = purity_catalog
    with pytest.warns(UserWarning, match="depth 1"):
        purity = prefix_purity(codes, [None, [], [], None, [], []], prefix_levels=1)
    assert math.isnan(purity)


def test_prefix_purity_rejects_bad_input(purity_catalog):
    codes, paths = purity_catalog
    with pytest.raises(ValueError, match="prefix_levels=3"):
        prefix_purity(codes, paths, prefix_levels=3)
    with pytest.raises(ValueError, match="category_depth=0"):
        prefix_purity(codes, paths, prefix_levels=1, category_depth=0)
    with pytest.raises(ValueError, match="5 entries"):
        prefix_purity(codes, paths[:5], prefix_levels=1)


def unit_at(degrees):
    radians = np.deg2rad(degrees)
    return np.array([np.cos(radians), np.sin(radians)], dtype=np.float32)


@pytest.fixture
def neighbour_catalog():
    """Raw items at 0, 10, 25 and 90 degrees. Items 0 and 1 share a SID reconstructed at 5 degrees.

    Raw nearest neighbours (k=1): 0->1, 1->0, 2->1, 3->2. By reconstruction, item 2 is equally
    close to items 0 and 1, and item 3 has item 2 first, then a tie between 0 and 1.
    """
    raw = np.stack([unit_at(angle) for angle in (0, 10, 25, 90)])
    reconstructions = np.stack([unit_at(angle) for angle in (5, 5, 25, 90)])
    priority_hash = np.array(["a", "b", "c", "d"])
    return raw, reconstructions, priority_hash


def test_neighbour_recall_tie_follows_priority(neighbour_catalog):
    raw, reconstructions, priority_hash = neighbour_catalog
    item_1_first = np.array([5, 9, 1, 1])
    item_0_first = np.array([9, 5, 1, 1])

    def recall(popularity, k, **options):
        return neighbour_recall(
            raw, reconstructions, k=k, popularity=popularity, priority_hash=priority_hash, **options
        )

    # k=1: only item 2's tie can miss, and only when item 0 wins it.
    assert recall(item_1_first, 1) == pytest.approx(1.0)
    assert recall(item_0_first, 1) == pytest.approx(3 / 4)
    # k=2: raw lists {1,2}, {0,2}, {1,0}, {2,1}; only item 3's second slot depends on the tie.
    assert recall(item_1_first, 2) == pytest.approx(1.0)
    assert recall(item_0_first, 2) == pytest.approx(7 / 8)
    assert recall(item_0_first, 2, queries=np.array([3])) == pytest.approx(0.5)
    assert recall(item_0_first, 2, sids=np.array([7, 7, 8, 9])) == pytest.approx(7 / 8)


def test_neighbour_recall_identical_vectors_is_one():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(40, 6)).astype(np.float32)
    popularity = np.zeros(40, dtype=np.int64)
    priority_hash = np.array([f"{item:02d}" for item in range(40)])

    recall = neighbour_recall(raw, raw.copy(), k=5, popularity=popularity, priority_hash=priority_hash)

    assert recall == pytest.approx(1.0)


def test_neighbour_recall_rejects_bad_input(neighbour_catalog):
    raw, reconstructions, priority_hash = neighbour_catalog
    popularity = np.zeros(4, dtype=np.int64)
    with pytest.raises(ValueError, match="k=4"):
        neighbour_recall(raw, reconstructions, k=4, popularity=popularity, priority_hash=priority_hash)
    with pytest.raises(ValueError, match="3 rows"):
        neighbour_recall(raw, reconstructions[:3], k=1, popularity=popularity, priority_hash=priority_hash)
    with pytest.raises(ValueError, match="queries must lie"):
        neighbour_recall(
            raw, reconstructions, k=1, popularity=popularity, priority_hash=priority_hash, queries=np.array([4])
        )


def test_reconstruction_error_hand_computed():
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0]])
    reconstructions = np.array([[1.0, 1.0], [0.0, 1.0]])

    errors = reconstruction_error(embeddings, reconstructions)

    # Squared errors 0, 1, 0, 1 over 4 cells; energy 1 + 4.
    assert errors["reconstruction_mse"] == pytest.approx(0.5)
    assert errors["reconstruction_relative"] == pytest.approx(0.4)


def test_reconstruction_error_edge_cases():
    perfect = reconstruction_error(np.ones((3, 2)), np.ones((3, 2)))
    assert perfect["reconstruction_mse"] == 0.0
    assert perfect["reconstruction_relative"] == 0.0
    assert math.isnan(reconstruction_error(np.zeros((2, 2)), np.ones((2, 2)))["reconstruction_relative"])
    with pytest.raises(ValueError, match="shape"):
        reconstruction_error(np.ones((3, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        reconstruction_error(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
