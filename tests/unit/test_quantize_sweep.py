"""Sweep candidates from config, their scores and the choice of the best."""

import numpy as np
import pytest

from sid.config import load_config
from sid.errors import ConfigError
from sid.quantize import ResidualKMeans, best_candidate, build_quantizer, score_quantizer


def clustered(n=1200, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(16, dim))
    return (means[rng.integers(0, 16, size=n)] + rng.normal(size=(n, dim))).astype(np.float32)


def test_candidates_inherit_the_quantize_section():
    config = load_config(overrides={
        "quantize.levels": 2,
        "quantize.rqvae": {"epochs": 7},
        "quantize.sweep": {"candidates": [{"name": "a"}, {"name": "b", "method": "rqvae", "rqvae": {"beta": 0.5}}]},
    })
    (name_a, first), (name_b, second) = config.quantize.candidates()
    assert (name_a, first.method, first.levels) == ("a", "residual_kmeans", 2)
    assert (name_b, second.method, second.rqvae.beta, second.rqvae.epochs) == ("b", "rqvae", 0.5, 7)


@pytest.mark.parametrize("candidate, message", [
    ({"method": "rqvae"}, "needs a non-empty string name"),
    ({"name": "x", "codebook_sise": 8}, "unknown config key.*codebook_sise"),
    ({"name": "x", "method": "vq"}, "method='vq' is invalid"),
    ({"name": "x", "rqvae": {"epochs": 0}}, "rqvae.epochs=0 must be >= 1"),
])
def test_bad_candidate_rejected(candidate, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides={"quantize.sweep": {"candidates": [candidate]}})


def test_duplicate_candidate_names_rejected():
    with pytest.raises(ConfigError, match="used by another candidate"):
        load_config(overrides={"quantize.sweep": {"candidates": [{"name": "a"}, {"name": "a"}]}})


def test_build_quantizer_dispatches_on_method():
    config = load_config(overrides={"quantize.method": "rqvae", "quantize.rqvae": {"latent_dim": 5}})
    quantizer = build_quantizer(config.quantize, seed=3)
    assert (type(quantizer).__name__, quantizer.latent_dim, quantizer.seed) == ("RQVAE", 5, 3)


def test_score_matches_definitions():
    data = clustered()
    quantizer = ResidualKMeans(codebook_sizes=[4, 4], seed=0, kmeans_iterations=5).fit(data)
    scores = score_quantizer(quantizer, data)
    codes = quantizer.encode(data).codes
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    assert scores["collision_rate"] == pytest.approx(np.mean(counts[inverse.ravel()] > 1))
    error = ((data.astype(np.float64) - quantizer.decode(codes)) ** 2).sum(axis=1).mean()
    assert scores["reconstruction_relative"] == pytest.approx(error / (data.astype(np.float64) ** 2).sum(axis=1).mean())


def test_sweep_picks_best_by_metric():
    data = clustered(n=400)
    small = score_quantizer(ResidualKMeans(codebook_sizes=[4], seed=0, kmeans_iterations=5).fit(data), data)
    large = score_quantizer(ResidualKMeans(codebook_sizes=[16, 16, 16], seed=0, kmeans_iterations=5).fit(data), data)
    scores = {"small": small, "large": large}
    assert best_candidate(scores, "collision_rate") == "large"
    assert best_candidate(scores, "reconstruction_relative") == "large"


def test_sweep_maximizes_utilization():
    scores = {"low": {"utilization": 0.4}, "high": {"utilization": 0.9}, "mid": {"utilization": 0.6}}
    assert best_candidate(scores, "utilization") == "high"


def test_sweep_ties_go_to_first():
    scores = {"first": {"gini": 0.1}, "second": {"gini": 0.1}}
    assert best_candidate(scores, "gini") == "first"


def test_sweep_unknown_metric_rejected():
    with pytest.raises(ValueError, match="metric='speed' is invalid"):
        best_candidate({"a": {"gini": 0.0}}, "speed")
