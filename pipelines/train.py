"""Train stage: fit the quantizer inside a Ray actor on a seeded sample of embeddings.

Spark writes the sample (at most ``quantize.train_sample_size`` items, those with the
smallest seeded hash of item_id) as Parquet; the actor reads it directly, so item vectors
never pass through the driver. On a cluster, ``run.work_dir`` must be storage that the Ray
workers can read.
"""

from __future__ import annotations

import logging
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np

from sid.config import PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["TrainResult", "train_quantizer", "write_training_sample"]

logger = logging.getLogger(__name__)


class TrainResult:
    """Fitted codebooks (float32 (K_l, dim) per level) and the fit statistics."""

    def __init__(self, codebooks: list[np.ndarray], stats: dict[str, float], sample_size: int) -> None:
        self.codebooks = codebooks
        self.stats = stats
        self.sample_size = sample_size


def write_training_sample(embeddings: DataFrame, config: PipelineConfig, folder: pathlib.Path) -> int:
    """Write the seeded training sample (priority_hash, embedding) to Parquet; return its size."""
    sample = (
        embeddings.select("priority_hash", "embedding")
        .orderBy("priority_hash")
        .limit(config.quantize.train_sample_size)
    )
    sample.write.mode("overwrite").parquet(str(folder))
    return embeddings.sparkSession.read.parquet(str(folder)).count()


def train_quantizer(sample_folder: pathlib.Path, config: PipelineConfig) -> TrainResult:
    """Fit the configured quantizer in a Ray actor on the Parquet sample in ``sample_folder``."""
    import ray

    quantize = config.quantize
    actor_class = ray.remote(num_cpus=quantize.num_cpus, num_gpus=quantize.num_gpus)(_QuantizerTrainer)
    actor = actor_class.remote()
    try:
        result = ray.get(actor.fit.remote(str(sample_folder), _quantizer_options(config)))
    finally:
        ray.kill(actor)
    codebooks = [np.asarray(codebook, dtype=np.float32) for codebook in result["codebooks"]]
    return TrainResult(codebooks, result["stats"], result["sample_size"])


def _quantizer_options(config: PipelineConfig) -> dict[str, Any]:
    return {
        "method": config.quantize.method,
        "codebook_sizes": list(config.codebook_sizes()),
        "kmeans_iterations": config.quantize.kmeans_iterations,
        "seed": config.run.seed,
        "num_threads": config.quantize.num_cpus,
    }


class _QuantizerTrainer:
    """Ray actor that loads a Parquet sample and fits a quantizer on it."""

    def fit(self, sample_folder: str, options: dict[str, Any]) -> dict[str, Any]:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        from sid.quantize import ResidualKMeans

        table = ds.dataset(sample_folder, format="parquet").to_table()
        # Sort by the seeded hash: the fit sees the same row order whatever Spark wrote.
        table = table.take(pc.sort_indices(table, sort_keys=[("priority_hash", "ascending")]))
        column = table.column("embedding").combine_chunks()
        flat = np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=np.float32)
        vectors = flat.reshape(len(table), -1)

        quantizer = ResidualKMeans(
            codebook_sizes=options["codebook_sizes"],
            kmeans_iterations=options["kmeans_iterations"],
            seed=options["seed"],
            num_threads=options["num_threads"],
        ).fit(vectors)
        return {"codebooks": quantizer.codebooks, "stats": quantizer.fit_stats_, "sample_size": len(vectors)}
