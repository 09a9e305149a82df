"""CUDA paths of the quantizers; skipped where torch finds no CUDA device."""

import numpy as np
import pytest
import torch

from sid.quantize import RQVAE, ResidualKMeans

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def clustered(n=4000, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(32, dim))
    return (means[rng.integers(0, 32, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


def test_rqvae_trains_on_cuda_with_bf16():
    data = clustered()
    quantizer = RQVAE(codebook_sizes=[16, 16], hidden_dims=(32,), latent_dim=8, epochs=3, batch_size=512,
                      device="cuda", precision="bf16", seed=0, show_progress=False).fit(data)
    assert all(codebook.dtype == np.float32 for codebook in quantizer.codebooks)
    assert np.isfinite(quantizer.fit_stats_["reconstruction_mse"])


def test_residual_kmeans_gpu_flag_matches_cpu_shapes():
    data = clustered()
    gpu = ResidualKMeans(codebook_sizes=[16, 16], seed=0, use_gpu=True).fit(data)
    cpu = ResidualKMeans(codebook_sizes=[16, 16], seed=0).fit(data)
    assert [c.shape for c in gpu.codebooks] == [c.shape for c in cpu.codebooks]
    assert gpu.fit_stats_["reconstruction_mse"] < 2 * cpu.fit_stats_["reconstruction_mse"]
