"""Gini, bucket statistics and perplexity on hand-computed counts."""

import math

import numpy as np
import pytest

from sid.metrics import (
    bucket_stats,
    entropy_ratio,
    entropy_ratio_from_histogram,
    gini_coefficient,
    gini_from_histogram,
    lorenz_curve,
    perplexity,
)


def forge_script_gini(counts):
    """Reference Gini: FORGE's (arXiv 2509.20904) script formula, written out term by term.

    G = (N+1)/N - 2 * sum_{i=1..N} (N+1-i) * x_(i) / (N*T) over the ascending counts of
    occupied SIDs.
    """
    ordered = sorted(count for count in counts if count > 0)
    n = len(ordered)
    total = sum(ordered)
    weighted = 0
    for i, count in enumerate(ordered, start=1):
        weighted += (n + 1 - i) * count
    return (n + 1) / n - 2 * weighted / (n * total)


def test_gini_hand_computed_value():
    # Sorted counts 1, 1, 2, 4: N=4, T=8, weighted sum 4*1 + 3*1 + 2*2 + 1*4 = 15.
    assert gini_coefficient(np.array([4, 1, 2, 1])) == pytest.approx(1.25 - 2 * 15 / 32)
    assert gini_coefficient(np.array([4, 1, 2, 1])) == pytest.approx(0.3125)


def test_gini_matches_forge_script_reference():
    counts = [4, 1, 2, 1]
    assert gini_coefficient(np.array(counts)) == pytest.approx(forge_script_gini(counts), abs=1e-12)

    rng = np.random.default_rng(7)
    for _ in range(20):
        sample = rng.integers(1, 50, size=int(rng.integers(1, 200)))
        expected = forge_script_gini(sample.tolist())
        assert gini_coefficient(sample) == pytest.approx(expected, abs=1e-12)


def test_gini_ignores_empty_sids():
    assert gini_coefficient(np.array([0, 4, 1, 0, 2, 1])) == pytest.approx(0.3125)


def test_gini_equal_buckets_is_zero():
    assert gini_coefficient(np.array([3, 3, 3])) == pytest.approx(0.0)
    assert gini_coefficient(np.array([], dtype=np.int64)) == 0.0


def test_gini_histogram_matches_counts():
    assert gini_from_histogram({1: 2, 2: 1, 4: 1}) == pytest.approx(0.3125)

    rng = np.random.default_rng(11)
    sample = rng.integers(1, 6, size=300)
    sizes, sids = np.unique(sample, return_counts=True)
    histogram = dict(zip(sizes.tolist(), sids.tolist()))
    assert gini_from_histogram(histogram) == pytest.approx(forge_script_gini(sample.tolist()), abs=1e-12)


def test_bucket_stats_hand_computed():
    stats = bucket_stats({1: 2, 2: 1, 4: 1})
    assert stats["items"] == 8.0
    assert stats["occupied_sids"] == 4.0
    assert stats["distinct_sid_share"] == pytest.approx(0.5)
    assert stats["collision_rate"] == pytest.approx(0.75)
    assert stats["largest_bucket"] == 4.0
    assert stats["gini"] == pytest.approx(0.3125)


def test_perplexity_hand_computed():
    # p = 1/4, 1/4, 1/2 gives entropy 1.5 ln 2, so perplexity 2 ** 1.5.
    assert perplexity(np.array([1, 1, 2])) == pytest.approx(2**1.5)
    assert perplexity(np.array([5, 5, 5, 5, 0])) == pytest.approx(4.0)
    assert perplexity(np.array([0, 0])) == 0.0
    assert math.isfinite(perplexity(np.array([1])))


def test_entropy_ratio_from_histogram_hand_computed():
    # Sizes 1, 1, 2 of T=4 items: H = 2 * (1/4) ln 4 + (1/2) ln 2 = 1.5 ln 2, and log T = 2 ln 2.
    assert entropy_ratio_from_histogram({1: 2, 2: 1}) == pytest.approx(0.75)


def test_entropy_ratio_from_histogram_matches_bucket_sizes():
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 9, size=300)
    values, counts = np.unique(sizes, return_counts=True)
    histogram = dict(zip(values.tolist(), counts.tolist()))
    assert entropy_ratio_from_histogram(histogram) == pytest.approx(entropy_ratio(sizes), abs=1e-12)


def test_entropy_ratio_from_histogram_edge_cases():
    assert entropy_ratio_from_histogram({}) == 0.0
    assert entropy_ratio_from_histogram({1: 1}) == 1.0
    assert entropy_ratio_from_histogram({1: 50}) == pytest.approx(1.0)
    assert entropy_ratio_from_histogram({50: 1}) == pytest.approx(0.0)


def test_lorenz_curve_hand_computed():
    sid_share, item_share = lorenz_curve({2: 1, 1: 2})
    np.testing.assert_allclose(sid_share, [0.0, 2 / 3, 1.0])
    np.testing.assert_allclose(item_share, [0.0, 0.5, 1.0])


def test_lorenz_area_gives_gini():
    histogram = {1: 40, 2: 7, 5: 3, 11: 1}
    sid_share, item_share = lorenz_curve(histogram)
    area = np.sum((sid_share[1:] - sid_share[:-1]) * (item_share[1:] + item_share[:-1]) / 2)
    assert 1 - 2 * area == pytest.approx(gini_from_histogram(histogram), abs=1e-12)


def test_lorenz_curve_of_no_items_is_diagonal():
    sid_share, item_share = lorenz_curve({})
    np.testing.assert_allclose(sid_share, [0.0, 1.0])
    np.testing.assert_allclose(item_share, [0.0, 1.0])
