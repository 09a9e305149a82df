"""RQVAE: NumPy inference against a torch reference, training properties, persistence, bad input."""

import json

import numpy as np
import pytest
import torch

from sid.errors import QuantizerError
from sid.quantize import RQVAE, encode_residual, load_quantizer
from sid.quantize._rqvae_net import RqvaeNet, sinkhorn_codes, Collective

SMALL = {"hidden_dims": (16,), "latent_dim": 4, "batch_size": 128, "kmeans_init_batches": 2,
         "show_progress": False, "num_threads": 1, "device": "cpu"}


def clustered(n=800, dim=8, centers=12, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(centers, dim))
    return (means[rng.integers(0, centers, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return clustered()


@pytest.fixture(scope="module")
def fitted(data):
    return RQVAE(codebook_sizes=[8, 8], epochs=4, seed=0, **SMALL).fit(data)


def test_numpy_encoder_matches_torch(fitted, data):
    net = RqvaeNet(8, (16,), 4, (8, 8))
    state = fitted.state_
    with torch.no_grad():
        net.encoder[0].weight.copy_(torch.as_tensor(state["encoder_weight_0"].T))
        net.encoder[0].bias.copy_(torch.as_tensor(state["encoder_bias_0"]))
        net.encoder[2].weight.copy_(torch.as_tensor(state["encoder_weight_1"].T))
        net.encoder[2].bias.copy_(torch.as_tensor(state["encoder_bias_1"]))
        expected = net.encoder(torch.as_tensor(data[:50])).numpy()
    np.testing.assert_allclose(fitted.to_latent(data[:50]), expected, rtol=1e-4, atol=1e-5)


def test_encode_equals_greedy_reference_in_latent(fitted, data):
    latent = fitted.to_latent(data[:100])
    reference = np.zeros((100, 2), dtype=np.int64)
    for row, vector in enumerate(latent.astype(np.float64)):
        residual = vector.copy()
        for level, codebook in enumerate(fitted.codebooks):
            reference[row, level] = int(np.argmin(((residual - codebook.astype(np.float64)) ** 2).sum(axis=1)))
            residual -= codebook[reference[row, level]]
    assert np.array_equal(fitted.encode(data[:100]).codes, reference)


def test_decode_runs_decoder_on_codeword_sum(fitted):
    codes = np.array([[1, 2]])
    total = fitted.codebooks[0][1] + fitted.codebooks[1][2]
    hidden = np.maximum(total @ fitted.state_["decoder_weight_0"] + fitted.state_["decoder_bias_0"], 0)
    expected = hidden @ fitted.state_["decoder_weight_1"] + fitted.state_["decoder_bias_1"]
    np.testing.assert_allclose(fitted.decode(codes)[0], expected, rtol=1e-4, atol=1e-5)


def test_batch_split_does_not_change_codes(fitted, data):
    whole = fitted.encode(data, top_k=3)
    parts = [fitted.encode(part, top_k=3) for part in np.array_split(data, 6)]
    assert np.array_equal(whole.codes, np.concatenate([part.codes for part in parts]))
    assert np.array_equal(whole.candidate_codes, np.concatenate([part.candidate_codes for part in parts]))


def test_fit_is_deterministic(data, fitted):
    again = RQVAE(codebook_sizes=[8, 8], epochs=4, seed=0, **SMALL).fit(data)
    for left, right in zip(fitted.codebooks, again.codebooks):
        assert np.array_equal(left, right)


def test_save_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "rqvae")
    loaded = load_quantizer(tmp_path / "rqvae")
    assert isinstance(loaded, RQVAE)
    assert set(loaded.state_) == set(fitted.state_)
    for name, value in fitted.state_.items():
        assert np.array_equal(loaded.state_[name], value)
    assert np.array_equal(loaded.encode(data).codes, fitted.encode(data).codes)
    assert np.array_equal(loaded.decode(fitted.encode(data).codes), fitted.decode(fitted.encode(data).codes))


def test_saved_folder_has_no_pickle(fitted, tmp_path):
    fitted.save(tmp_path / "rqvae")
    with np.load(tmp_path / "rqvae" / "arrays.npz", allow_pickle=False) as arrays:
        assert all(arrays[name].dtype == np.float32 for name in arrays.files)
    assert json.loads((tmp_path / "rqvae" / "quantizer.json").read_text())["method"] == "rqvae"


def test_more_levels_lower_reconstruction_error(data):
    errors = []
    for levels in (1, 3):
        quantizer = RQVAE(codebook_sizes=[8] * levels, epochs=6, seed=1, **SMALL).fit(data)
        errors.append(quantizer.fit_stats_["reconstruction_mse"])
    assert errors[1] < errors[0]


def test_kmeans_init_fewer_dead_codes_than_random(data):
    options = dict(SMALL, restart_unused_steps=0, epochs=1, learning_rate=1e-6, warmup_epochs=0)
    plain = RQVAE(codebook_sizes=[32], kmeans_init=False, seed=0, **options).fit(data)
    initialized = RQVAE(codebook_sizes=[32], kmeans_init=True, seed=0, **options).fit(data)
    assert initialized.fit_stats_["level_0/dead_codes"] < plain.fit_stats_["level_0/dead_codes"]


def test_restart_revives_dead_codes(data):
    options = dict(SMALL, kmeans_init=False, epochs=3, warmup_epochs=0)
    without = RQVAE(codebook_sizes=[32], restart_unused_steps=0, seed=0, **options).fit(data)
    with_restart = RQVAE(codebook_sizes=[32], restart_unused_steps=2, seed=0, **options).fit(data)
    assert with_restart.fit_stats_["code_restarts"] > 0
    assert with_restart.fit_stats_["level_0/dead_codes"] < without.fit_stats_["level_0/dead_codes"]


def test_sinkhorn_contrastive_and_bf16_train(data):
    rng = np.random.default_rng(0)
    pairs = (rng.integers(0, len(data), 300), rng.integers(0, len(data), 300))
    quantizer = RQVAE(codebook_sizes=[8, 8], epochs=2, sinkhorn=True, precision="bf16", seed=0, **SMALL)
    quantizer.fit(data, pairs=pairs)
    assert np.isfinite(quantizer.fit_stats_["reconstruction_mse"])
    assert all(codebook.dtype == np.float32 for codebook in quantizer.codebooks)


def test_sinkhorn_codes_stay_int64_under_autocast():
    distances = torch.rand(64, 8)
    distances[:, 0] -= 1.0
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        codes = sinkhorn_codes(distances, iterations=5, epsilon=0.1, collective=Collective())
    assert codes.dtype == torch.int64
    assert np.bincount(codes.numpy(), minlength=8).max() < 64


def test_early_stopping_stops_before_epochs(data):
    quantizer = RQVAE(codebook_sizes=[8], epochs=40, patience=1, learning_rate=0.5, warmup_epochs=0, seed=0, **SMALL)
    quantizer.fit(data)
    assert quantizer.fit_stats_["epochs_run"] < 40


def test_fewer_vectors_than_codes():
    with pytest.raises(QuantizerError, match="10 training vectors are fewer than the 16 codes"):
        RQVAE(codebook_sizes=[16], **SMALL).fit(np.ones((10, 4), dtype=np.float32))


def test_nan_vectors_rejected(data):
    bad = data.copy()
    bad[2, 1] = np.nan
    with pytest.raises(QuantizerError, match="NaN or infinite"):
        RQVAE(codebook_sizes=[8], **SMALL).fit(bad)


def test_wrong_dimension_against_saved_model(fitted, tmp_path):
    fitted.save(tmp_path / "rqvae")
    with pytest.raises(QuantizerError, match="dimension 3 but the codebooks expect 8"):
        load_quantizer(tmp_path / "rqvae").encode(np.ones((2, 3), dtype=np.float32))


def test_other_version_rejected(fitted, tmp_path):
    fitted.save(tmp_path / "rqvae")
    meta_path = tmp_path / "rqvae" / "quantizer.json"
    meta_path.write_text(meta_path.read_text().replace('"format_version": 1', '"format_version": 9'))
    with pytest.raises(QuantizerError, match="format_version=9"):
        RQVAE.load(tmp_path / "rqvae")


def test_bad_pairs_rejected(data):
    with pytest.raises(QuantizerError, match="pair indices must lie in"):
        RQVAE(codebook_sizes=[8], **SMALL).fit(data, pairs=(np.array([0, 1]), np.array([1, len(data)])))


def test_unfitted_quantizer_raises():
    with pytest.raises(QuantizerError, match="not fitted"):
        RQVAE(codebook_sizes=[8]).encode(np.ones((1, 4), dtype=np.float32))


def test_zero_vectors_encode(fitted):
    result = fitted.encode(np.zeros((3, 8), dtype=np.float32))
    assert np.all(result.codes == result.codes[0])
    assert np.array_equal(result.codes, encode_residual(fitted.to_latent(np.zeros((3, 8))), fitted.codebooks).codes)


def test_unit_norm_embeddings_do_not_collapse():
    # Unit-norm 64-d vectors have per-element errors near 1/64; the reconstruction term must
    # still outweigh the codebook terms, or every item ends on one code.
    rng = np.random.default_rng(0)
    means = rng.normal(size=(16, 64))
    data = means[rng.integers(0, 16, size=800)] + 0.2 * rng.normal(size=(800, 64))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    quantizer = RQVAE(codebook_sizes=[16, 16], epochs=4, seed=0, **dict(SMALL, latent_dim=8)).fit(data)
    assert quantizer.fit_stats_["level_0/utilization"] >= 0.5
    assert quantizer.fit_stats_["level_1/utilization"] >= 0.5


@pytest.mark.parametrize("pair_count, expected", [(0, 10), (2000, 20), (450, 15), (401, 14)])
def test_steps_per_epoch_counts_pair_batches(pair_count, expected):
    from sid.quantize._rqvae_training import ArrayBatchSource, _interleave

    vectors = np.zeros((1000, 4), dtype=np.float32)
    pairs = None if pair_count == 0 else (np.zeros((pair_count, 4), np.float32), np.zeros((pair_count, 4), np.float32))
    source = ArrayBatchSource(vectors, vectors[:10], batch_size=100, seed=0, pairs=pairs)
    steps = sum(1 for _ in _interleave(source, 0, Collective(), torch.device("cpu")))
    assert source.steps_per_epoch == expected
    assert steps == expected
