import numpy as np
import pytest

from sid.errors import QuantizerError
from sid.quantize import ResidualKMeans, decode_residual, encode_residual


def clustered(n=3000, dim=16, centers=24, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(centers, dim))
    labels = rng.integers(0, centers, size=n)
    return (means[labels] + rng.normal(size=(n, dim))).astype(np.float32)


def reference_encode(vectors, codebooks):
    """Slow per-row loop: argmin of squared L2 at each level, lowest index on ties."""
    codes = np.zeros((len(vectors), len(codebooks)), dtype=np.int64)
    for row, vector in enumerate(vectors.astype(np.float64)):
        residual = vector.copy()
        for level, codebook in enumerate(codebooks):
            distances = [float(np.sum((residual - centroid) ** 2)) for centroid in codebook.astype(np.float64)]
            codes[row, level] = int(np.argmin(distances))
            residual = residual - codebook[codes[row, level]]
    return codes


@pytest.fixture(scope="module")
def data():
    return clustered()


@pytest.fixture(scope="module")
def fitted(data):
    return ResidualKMeans(codebook_sizes=[16, 16, 16], seed=3).fit(data)


def test_encode_matches_reference(fitted, data):
    sample = data[:200]
    assert np.array_equal(fitted.encode(sample).codes, reference_encode(sample, fitted.codebooks))


def test_candidates_sorted_and_first_is_code(fitted, data):
    result = fitted.encode(data[:100], top_k=5)
    assert result.candidate_codes.shape == (100, 3, 5)
    assert np.array_equal(result.candidate_codes[:, :, 0], result.codes)
    assert np.all(np.diff(result.candidate_distances, axis=2) >= 0)


def test_more_levels_lower_reconstruction_error(data):
    errors = []
    for levels in (1, 2, 3):
        quantizer = ResidualKMeans(codebook_sizes=[16] * levels, seed=3).fit(data)
        reconstruction = quantizer.decode(quantizer.encode(data).codes)
        errors.append(float(np.mean((data - reconstruction) ** 2)))
    assert errors[0] > errors[1] > errors[2]


def test_batch_split_does_not_change_codes(fitted, data):
    whole = fitted.encode(data, top_k=4)
    parts = [fitted.encode(chunk, top_k=4) for chunk in np.array_split(data, 7)]
    assert np.array_equal(whole.codes, np.concatenate([part.codes for part in parts]))
    assert np.array_equal(whole.candidate_codes, np.concatenate([part.candidate_codes for part in parts]))


def test_fit_is_deterministic(data):
    first = ResidualKMeans(codebook_sizes=[16, 8], seed=5).fit(data)
    second = ResidualKMeans(codebook_sizes=[16, 8], seed=5).fit(data)
    for left, right in zip(first.codebooks, second.codebooks):
        assert np.array_equal(left, right)


def test_save_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "q")
    loaded = ResidualKMeans.load(tmp_path / "q")
    for left, right in zip(fitted.codebooks, loaded.codebooks):
        assert np.array_equal(left, right)
    assert np.array_equal(fitted.encode(data[:50]).codes, loaded.encode(data[:50]).codes)


def test_load_rejects_other_method(fitted, tmp_path):
    fitted.save(tmp_path / "q")
    meta = tmp_path / "q" / "quantizer.json"
    meta.write_text(meta.read_text().replace("residual_kmeans", "rqvae"))
    with pytest.raises(QuantizerError, match="method='rqvae'"):
        ResidualKMeans.load(tmp_path / "q")


def test_decode_is_sum_of_codewords(fitted):
    codes = np.array([[1, 2, 3]])
    expected = fitted.codebooks[0][1] + fitted.codebooks[1][2] + fitted.codebooks[2][3]
    np.testing.assert_allclose(fitted.decode(codes)[0], expected, rtol=1e-6)


def test_fewer_vectors_than_codes():
    with pytest.raises(QuantizerError, match="10 training vectors are fewer than the 16 codes"):
        ResidualKMeans(codebook_sizes=[16]).fit(np.ones((10, 4), dtype=np.float32))


def test_nan_vectors_rejected():
    data = clustered(n=100)
    data[7, 2] = np.nan
    with pytest.raises(QuantizerError, match="NaN or infinite values in 1 rows \\(first row 7\\)"):
        ResidualKMeans(codebook_sizes=[4]).fit(data)


def test_wrong_dimension_on_encode(fitted):
    with pytest.raises(QuantizerError, match="dimension 8 but the codebooks expect 16"):
        fitted.encode(np.zeros((3, 8), dtype=np.float32))


def test_dead_codes_reported(caplog):
    # Two distinct points cannot fill eight codes: the level reports its dead codes.
    data = np.repeat(np.array([[0.0, 0.0], [10.0, 10.0]], dtype=np.float32), 20, axis=0)
    quantizer = ResidualKMeans(codebook_sizes=[8], seed=0).fit(data)
    assert quantizer.fit_stats_["level_0/dead_codes"] >= 6
    assert "dead_codes" in caplog.text


def test_encode_ties_pick_lowest_index():
    codebooks = [np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]], dtype=np.float32)]
    result = encode_residual(np.zeros((1, 2), dtype=np.float32), codebooks, top_k=3)
    assert result.candidate_codes[0, 0].tolist() == [0, 1, 2]


def test_decode_rejects_out_of_range_codes(fitted):
    with pytest.raises(QuantizerError, match=r"level 1 must lie in \[0, 16\)"):
        decode_residual(np.array([[0, 16, 0]]), fitted.codebooks)
