"""FaissResidualQuantizer: beam search against a brute-force reference and against faiss."""

import itertools

import numpy as np
import pytest

from sid.errors import QuantizerError
from sid.quantize import FaissResidualQuantizer, ResidualKMeans, beam_search_codes, load_quantizer


def clustered(n=1500, dim=8, centers=16, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(centers, dim))
    return (means[rng.integers(0, centers, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered()


@pytest.fixture(scope="module")
def fitted(data):
    return FaissResidualQuantizer(codebook_sizes=[8, 8], beam_size=4, kmeans_iterations=10, seed=0).fit(data)


def exhaustive_codes(vectors, codebooks):
    """Slow reference: the code tuple with the smallest reconstruction error over all tuples."""
    tuples = list(itertools.product(*[range(len(codebook)) for codebook in codebooks]))
    sums = np.array([sum(codebooks[level][code].astype(np.float64) for level, code in enumerate(t)) for t in tuples])
    errors = ((vectors.astype(np.float64)[:, None, :] - sums[None]) ** 2).sum(axis=2)
    return np.array(tuples)[np.argmin(errors, axis=1)]


def test_full_beam_equals_exhaustive_search(fitted, data):
    sample = data[:100]
    codes = beam_search_codes(sample, fitted.codebooks, beam_size=8)
    assert np.array_equal(codes, exhaustive_codes(sample, fitted.codebooks))


def test_beam_one_equals_greedy(fitted, data):
    greedy = ResidualKMeans.from_codebooks(fitted.codebooks).encode(data).codes
    assert np.array_equal(beam_search_codes(data, fitted.codebooks, beam_size=1), greedy)


def test_wider_beam_lowers_error(fitted, data):
    errors = []
    for beam in (1, 4):
        codes = beam_search_codes(data, fitted.codebooks, beam_size=beam)
        errors.append(float(np.mean((data - fitted.decode(codes)) ** 2)))
    assert errors[1] <= errors[0]


def test_codes_agree_with_faiss_encoder(fitted, data):
    import faiss

    quantizer = faiss.ResidualQuantizer(8, 2, 3)
    quantizer.max_beam_size = fitted.beam_size
    faiss.copy_array_to_vector(np.concatenate(fitted.codebooks).ravel(), quantizer.codebooks)
    quantizer.is_trained = True
    packed = quantizer.compute_codes(data)
    # faiss packs the 3-bit codes least significant bit first.
    bits = np.unpackbits(packed, axis=1, bitorder="little")
    faiss_codes = np.stack([bits[:, level * 3:(level + 1) * 3] @ (1 << np.arange(3)) for level in range(2)], axis=1)
    assert np.mean(np.all(faiss_codes == fitted.encode(data).codes, axis=1)) > 0.99


def test_candidates_start_with_beam_code(fitted, data):
    result = fitted.encode(data[:200], top_k=3)
    assert np.array_equal(result.candidate_codes[:, :, 0], result.codes)
    assert np.all(np.diff(result.candidate_distances[:, :, 1:], axis=2) >= 0)


def test_batch_split_does_not_change_codes(fitted, data):
    whole = fitted.encode(data).codes
    parts = np.concatenate([fitted.encode(part).codes for part in np.array_split(data, 5)])
    assert np.array_equal(whole, parts)


def test_save_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "rq")
    loaded = load_quantizer(tmp_path / "rq")
    assert isinstance(loaded, FaissResidualQuantizer)
    assert np.array_equal(loaded.encode(data).codes, fitted.encode(data).codes)


def test_sizes_must_be_powers_of_two():
    with pytest.raises(QuantizerError, match="powers of two"):
        FaissResidualQuantizer(codebook_sizes=[8, 12])
