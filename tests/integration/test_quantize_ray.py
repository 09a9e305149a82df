"""Quantizer training on Ray: data-parallel RQ-VAE with Ray Train, and a candidate sweep."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.sweep import run_sweep
from pipelines.train import HOLDOUT_BUCKETS, train_quantizer
from sid.config import load_config
from sid.quantize import RQVAE

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def write_sample(folder, n=1200, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(12, dim))
    vectors = (means[rng.integers(0, 12, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    hashes = [f"{index:064x}" for index in range(n)]
    table = pa.table({
        "priority_hash": hashes,
        "embedding": pa.array(list(vectors), type=pa.list_(pa.float32())),
        "holdout_bucket": pa.array(rng.integers(0, HOLDOUT_BUCKETS, size=n), type=pa.int32()),
    })
    folder.mkdir(parents=True)
    # Two files, as Spark would write them.
    pq.write_table(table.slice(0, n // 2), folder / "part-0.parquet")
    pq.write_table(table.slice(n // 2), folder / "part-1.parquet")
    pairs_folder = folder.parent / "pairs"
    pairs_folder.mkdir()
    left, right = rng.integers(0, n, size=400), rng.integers(0, n, size=400)
    pq.write_table(pa.table({
        "left_hash": [hashes[i] for i in left], "right_hash": [hashes[i] for i in right],
        "left_embedding": pa.array(list(vectors[left]), type=pa.list_(pa.float32())),
        "right_embedding": pa.array(list(vectors[right]), type=pa.list_(pa.float32())),
    }), pairs_folder / "part-0.parquet")
    return vectors, pairs_folder


def test_rqvae_trains_on_two_ray_workers(ray_runtime, tmp_path):
    vectors, pairs_folder = write_sample(tmp_path / "sample")
    config = load_config(overrides={
        "run.work_dir": str(tmp_path / "work"),
        "quantize.method": "rqvae", "quantize.levels": 2, "quantize.codebook_size": 8,
        "quantize.rqvae": {"hidden_dims": [16], "latent_dim": 4, "epochs": 2, "batch_size": 128,
                           "num_workers": 2, "contrastive": True, "kmeans_init_batches": 2},
    })
    result = train_quantizer(tmp_path / "sample", config, pairs_folder=pairs_folder)
    assert isinstance(result.quantizer, RQVAE)
    assert [codebook.shape for codebook in result.codebooks] == [(8, 4), (8, 4)]
    assert result.sample_size == len(vectors)
    assert result.stats["epochs_run"] == 2
    assert 0 < result.scores["utilization"] <= 1
    assert result.quantizer.encode(vectors[:10]).codes.shape == (10, 2)


def test_sweep_trains_candidates_side_by_side(ray_runtime, tmp_path):
    vectors, pairs_folder = write_sample(tmp_path / "sample")
    config = load_config(overrides={
        "run.work_dir": str(tmp_path / "work"),
        "quantize.levels": 2, "quantize.codebook_size": 8,
        "quantize.sweep": {"metric": "reconstruction_relative", "candidates": [
            {"name": "tiny", "codebook_size": 2},
            {"name": "kmeans", "init": "kmeans++"},
            {"name": "vae", "method": "rqvae", "rqvae": {"hidden_dims": [16], "latent_dim": 4, "epochs": 1,
                                                         "batch_size": 128, "contrastive": True}},
        ]},
    })
    winner, results = run_sweep(tmp_path / "sample", config, pairs_folder=pairs_folder)
    assert list(results) == ["tiny", "kmeans", "vae"]
    errors = {name: result.scores["reconstruction_relative"] for name, result in results.items()}
    assert winner == min(errors, key=errors.get)
    assert errors["kmeans"] < errors["tiny"]
