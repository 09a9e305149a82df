"""Options of ResidualKMeans: k-means++ init, cosine residuals, balanced levels, bad input."""

import json

import numpy as np
import pytest

from sid.errors import QuantizerError
from sid.quantize import ResidualKMeans, encode_residual, kmeans_plus_plus, load_quantizer


def clustered(n=2000, dim=8, centers=20, seed=0, skew=False):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=5.0, size=(centers, dim))
    weights = np.arange(1, centers + 1, dtype=float) ** (-2.0 if skew else 0.0)
    labels = rng.choice(centers, size=n, p=weights / weights.sum())
    return (means[labels] + rng.normal(size=(n, dim))).astype(np.float32)


def reference_encode(vectors, codebooks, *, cosine=False):
    """Slow per-row loop: argmin per level (of unit vectors when cosine), lowest index on ties."""
    codes = np.zeros((len(vectors), len(codebooks)), dtype=np.int64)
    for row, vector in enumerate(vectors.astype(np.float64)):
        residual = vector.copy()
        for level, codebook in enumerate(codebooks):
            best, best_distance = 0, np.inf
            for code, centroid in enumerate(codebook.astype(np.float64)):
                left, right = residual, centroid
                if cosine:
                    left = residual / (np.linalg.norm(residual) or 1.0)
                    right = centroid / (np.linalg.norm(centroid) or 1.0)
                distance = float(np.sum((left - right) ** 2))
                if distance < best_distance - 1e-12:
                    best, best_distance = code, distance
            codes[row, level] = best
            residual = residual - codebook[best]
    return codes


@pytest.fixture(scope="module")
def data():
    return clustered()


@pytest.mark.parametrize("options", [
    {"init": "kmeans++"},
    {"normalize_residuals": True},
    {"balance": "sinkhorn"},
    {"balance": "capacity", "balance_levels": [0]},
])
def test_options_encode_matches_reference(data, options):
    quantizer = ResidualKMeans(codebook_sizes=[8, 8], seed=1, kmeans_iterations=10, **options).fit(data)
    sample = data[:150]
    cosine = options.get("normalize_residuals", False)
    assert np.array_equal(quantizer.encode(sample).codes, reference_encode(sample, quantizer.codebooks, cosine=cosine))


def test_options_save_load_round_trip(data, tmp_path):
    quantizer = ResidualKMeans(codebook_sizes=[8, 4], seed=2, init="kmeans++", normalize_residuals=True,
                               balance="sinkhorn", balance_levels=[1], kmeans_iterations=5).fit(data)
    quantizer.save(tmp_path / "q")
    loaded = load_quantizer(tmp_path / "q")
    assert isinstance(loaded, ResidualKMeans)
    assert (loaded.init, loaded.normalize_residuals, loaded.balance, loaded.balance_levels) == (
        "kmeans++", True, "sinkhorn", (1,))
    for left, right in zip(quantizer.codebooks, loaded.codebooks):
        assert np.array_equal(left, right)
    result, again = quantizer.encode(data, top_k=3), loaded.encode(data, top_k=3)
    assert np.array_equal(result.candidate_codes, again.candidate_codes)
    assert np.array_equal(result.candidate_distances, again.candidate_distances)


def test_cosine_decode_is_sum_of_codewords(data):
    quantizer = ResidualKMeans(codebook_sizes=[8, 8], normalize_residuals=True, seed=0, kmeans_iterations=5).fit(data)
    codes = quantizer.encode(data[:20]).codes
    expected = quantizer.codebooks[0][codes[:, 0]] + quantizer.codebooks[1][codes[:, 1]]
    np.testing.assert_allclose(quantizer.decode(codes), expected, rtol=1e-6)


def test_balanced_level_spreads_skewed_usage():
    data = clustered(n=3000, centers=12, skew=True, seed=4)
    plain = ResidualKMeans(codebook_sizes=[16], seed=0, kmeans_iterations=10).fit(data)
    balanced = ResidualKMeans(codebook_sizes=[16], seed=0, kmeans_iterations=10, balance="capacity").fit(data)
    largest_plain = np.bincount(plain.encode(data).codes[:, 0], minlength=16).max()
    largest_balanced = np.bincount(balanced.encode(data).codes[:, 0], minlength=16).max()
    assert largest_balanced < largest_plain


def test_kmeans_plus_plus_is_seeded_and_picks_points(data):
    first = kmeans_plus_plus(data[:500], 10, seed=3)
    second = kmeans_plus_plus(data[:500], 10, seed=3)
    assert np.array_equal(first, second)
    assert all(any(np.array_equal(seed_row, row) for row in data[:500]) for seed_row in first)


def test_kmeans_plus_plus_beats_random_seeds():
    # 32 tight, well separated clusters of very different sizes: random points as seeds
    # land mostly in the big clusters, so after one iteration some clusters share a
    # centroid; k-means++ seeds one point per cluster. faiss splits empty clusters, so the
    # difference shows in the error rather than in dead codes.
    rng = np.random.default_rng(0)
    means = rng.normal(scale=50.0, size=(32, 4))
    sizes = np.maximum(4, (400 / np.arange(1, 33) ** 1.3).astype(int))
    data = np.concatenate([mean + 0.01 * rng.normal(size=(size, 4)) for mean, size in zip(means, sizes)]).astype(
        np.float32)
    random_init = ResidualKMeans(codebook_sizes=[32], seed=0, kmeans_iterations=1).fit(data)
    plus_plus = ResidualKMeans(codebook_sizes=[32], seed=0, kmeans_iterations=1, init="kmeans++").fit(data)
    assert plus_plus.fit_stats_["reconstruction_mse"] < 0.01 * random_init.fit_stats_["reconstruction_mse"]


def test_zero_training_vectors_rejected():
    with pytest.raises(QuantizerError, match="all 40 training vectors are zero vectors"):
        ResidualKMeans(codebook_sizes=[4]).fit(np.zeros((40, 3), dtype=np.float32))


def test_some_zero_vectors_warn(caplog, data):
    with_zeros = data.copy()
    with_zeros[:5] = 0.0
    ResidualKMeans(codebook_sizes=[8], seed=0, kmeans_iterations=3).fit(with_zeros)
    assert "zero_vectors=5" in caplog.text


def test_infinite_vectors_rejected(data):
    bad = data.copy()
    bad[3, 0] = np.inf
    with pytest.raises(QuantizerError, match="NaN or infinite values in 1 rows \\(first row 3\\)"):
        ResidualKMeans(codebook_sizes=[4]).fit(bad)


def test_wrong_dimension_against_saved_codebooks(data, tmp_path):
    ResidualKMeans(codebook_sizes=[4], seed=0, kmeans_iterations=3).fit(data).save(tmp_path / "q")
    with pytest.raises(QuantizerError, match="dimension 5 but the codebooks expect 8"):
        load_quantizer(tmp_path / "q").encode(np.ones((2, 5), dtype=np.float32))


def test_codebook_from_other_version_rejected(data, tmp_path):
    ResidualKMeans(codebook_sizes=[4], seed=0, kmeans_iterations=3).fit(data).save(tmp_path / "q")
    meta_path = tmp_path / "q" / "quantizer.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(QuantizerError, match="format_version=1.*retrain the codebooks"):
        ResidualKMeans.load(tmp_path / "q")


def test_missing_folder_rejected(tmp_path):
    with pytest.raises(QuantizerError, match="no quantizer.json"):
        load_quantizer(tmp_path / "absent")


def test_invalid_options_rejected():
    with pytest.raises(QuantizerError, match="init='random' is invalid"):
        ResidualKMeans(codebook_sizes=[4], init="random")
    with pytest.raises(QuantizerError, match="balance='even' is invalid"):
        ResidualKMeans(codebook_sizes=[4], balance="even")


def test_cosine_reference_with_zero_residual():
    codebooks = [np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)]
    result = encode_residual(np.zeros((1, 2), dtype=np.float32), codebooks, normalize_residuals=True)
    assert result.codes[0, 0] == 0
