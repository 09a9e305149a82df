import numpy as np

from sid.quantize import capacity_assign, sinkhorn_assign


def skewed_distances(n=400, k=8, seed=0):
    rng = np.random.default_rng(seed)
    distances = rng.uniform(1.0, 2.0, size=(n, k))
    distances[:, 0] -= 1.0  # code 0 is nearest for every row
    return distances


def test_capacity_assign_respects_capacity():
    codes = capacity_assign(skewed_distances(), slack=1.0)
    assert np.bincount(codes, minlength=8).max() == 50


def test_capacity_assign_keeps_nearest_when_room():
    distances = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert capacity_assign(distances, slack=1.0).tolist() == [0, 1, 0, 1]


def test_capacity_assign_closest_rows_win():
    distances = np.array([[0.5, 1.0], [0.1, 1.0], [0.3, 1.0], [0.2, 1.0]])
    codes = capacity_assign(distances, slack=1.0)
    assert codes.tolist() == [1, 0, 1, 0]


def test_sinkhorn_balances_skewed_usage():
    distances = skewed_distances()
    plain = np.bincount(np.argmin(distances, axis=1), minlength=8).max()
    balanced = np.bincount(sinkhorn_assign(distances, epsilon=0.05, iterations=20), minlength=8).max()
    assert plain == 400
    assert balanced < 100


def test_sinkhorn_is_row_independent_of_order():
    distances = skewed_distances(seed=3)
    order = np.random.default_rng(1).permutation(len(distances))
    codes = sinkhorn_assign(distances)
    assert np.array_equal(sinkhorn_assign(distances[order]), codes[order])
