"""Train stage: fit the quantizer inside a Ray actor on a seeded sample of embeddings.

Spark writes the sample (at most ``quantize.train_sample_size`` items, those with the
smallest seeded hash of item_id) as Parquet; the actor reads it directly, so item vectors
never pass through the driver. An RQ-VAE with ``rqvae.num_workers > 1`` trains
data-parallel with Ray Train instead, streaming the same Parquet files with Ray Data. On a
cluster, ``run.work_dir`` must be storage that the Ray workers can read.
"""

from __future__ import annotations

import logging
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np

from sid.config import PipelineConfig, QuantizeConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["HOLDOUT_BUCKETS", "TrainResult", "train_quantizer", "write_training_sample"]

logger = logging.getLogger(__name__)

# The sample's holdout_bucket column is a seeded hash of the item in [0, HOLDOUT_BUCKETS);
# an RQ-VAE holds out the rows whose bucket is below holdout_fraction * HOLDOUT_BUCKETS.
HOLDOUT_BUCKETS = 10_000


class TrainResult:
    """The fitted quantizer, its fit statistics and the number of training vectors.

    ``quantizer`` follows the quantizer contract (to_latent, encode, decode, codebooks,
    save) and holds only NumPy arrays, so Spark can broadcast it. ``scores`` are
    :func:`sid.quantize.score_quantizer` values on the training sample.
    """

    def __init__(self, quantizer, stats: dict[str, float], sample_size: int,
                 scores: dict[str, float] | None = None) -> None:
        self.quantizer = quantizer
        self.stats = stats
        self.sample_size = sample_size
        self.scores = scores or {}

    @property
    def codebooks(self) -> list[np.ndarray]:
        return self.quantizer.codebooks


def write_training_sample(vectors: DataFrame, keys: DataFrame, config: PipelineConfig, folder: pathlib.Path) -> int:
    """Write the seeded training sample (priority_hash, embedding, holdout_bucket) to Parquet.

    ``vectors`` has item_id and embedding, ``keys`` item_id and priority_hash. The sample is
    the ``quantize.train_sample_size`` items of both frames with the lowest priority_hash.
    Returns the number of rows written.
    """
    from pyspark.sql import functions as F

    # The items are chosen on the keys, and only their ids and hashes are broadcast (an
    # estimated 40 bytes per sampled item), so the embeddings are not shuffled.
    chosen = (
        keys.select("item_id", "priority_hash")
        .join(vectors.select("item_id"), "item_id", "left_semi")
        .orderBy("priority_hash")
        .limit(config.quantize.train_sample_size)
    )
    bucket = F.pmod(F.xxhash64(F.lit(f"holdout:{config.run.seed}"), F.col("priority_hash")), F.lit(HOLDOUT_BUCKETS))
    sample = (
        vectors.select("item_id", "embedding").join(F.broadcast(chosen), "item_id")
        .select("priority_hash", "embedding")
        .withColumn("holdout_bucket", bucket.cast("int"))
    )
    sample.write.mode("overwrite").parquet(str(folder))
    return vectors.sparkSession.read.parquet(str(folder)).count()


def train_quantizer(sample_folder: pathlib.Path, config: PipelineConfig, *,
                    quantize: QuantizeConfig | None = None, pairs_folder: pathlib.Path | None = None) -> TrainResult:
    """Fit ``quantize`` (default ``config.quantize``) on the Parquet sample in ``sample_folder``.

    ``pairs_folder``: Parquet of co-occurring pairs for the RQ-VAE's InfoNCE term, used
    only when ``quantize.rqvae.contrastive`` is set.
    """
    quantize = quantize or config.quantize
    if quantize.method == "rqvae" and quantize.rqvae.num_workers > 1:
        from pipelines._ray_train import train_rqvae_data_parallel

        quantizer, stats = train_rqvae_data_parallel(sample_folder, config, quantize=quantize,
                                                     pairs_folder=pairs_folder)
        return score_in_actor(quantizer, stats, sample_folder, quantize)

    future = start_fit(sample_folder, config, quantize=quantize, pairs_folder=pairs_folder)
    return finish_fit(future)


def start_fit(sample_folder: pathlib.Path, config: PipelineConfig, *, quantize: QuantizeConfig,
              pairs_folder: pathlib.Path | None = None):
    """Start a trainer actor on ``quantize`` and return (actor, future) for :func:`finish_fit`."""
    import ray

    actor_class = ray.remote(num_cpus=quantize.num_cpus, num_gpus=quantize.num_gpus)(_QuantizerTrainer)
    actor = actor_class.remote()
    options = _fit_options(config, quantize, pairs_folder)
    return actor, actor.fit.remote(str(sample_folder), options)


def finish_fit(started) -> TrainResult:
    """Wait for a fit begun by :func:`start_fit`, then stop its actor."""
    import ray

    actor, future = started
    try:
        result = ray.get(future)
    finally:
        ray.kill(actor)
    return TrainResult(result["quantizer"], result["stats"], result["sample_size"], result["scores"])


def score_in_actor(quantizer, stats: dict[str, float], sample_folder: pathlib.Path,
                   quantize: QuantizeConfig) -> TrainResult:
    """Score an already fitted quantizer on the sample inside an actor (vectors stay off the driver)."""
    import ray

    actor = ray.remote(num_cpus=quantize.num_cpus)(_QuantizerTrainer).remote()
    try:
        result = ray.get(actor.score.remote(str(sample_folder), quantizer))
    finally:
        ray.kill(actor)
    return TrainResult(quantizer, {**result["stats"], **stats}, result["sample_size"], result["scores"])


def _fit_options(config: PipelineConfig, quantize: QuantizeConfig, pairs_folder: pathlib.Path | None) -> dict[str, Any]:
    use_pairs = quantize.method == "rqvae" and quantize.rqvae.contrastive
    return {
        "quantize": quantize,
        "seed": config.run.seed,
        "num_threads": quantize.num_cpus,
        "use_gpu": quantize.num_gpus > 0,
        "pairs_folder": str(pairs_folder) if use_pairs and pairs_folder is not None else None,
    }


def read_sample(sample_folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (sorted priority hashes, float32 (n, dim) vectors, int holdout buckets) of a sample."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(sample_folder, format="parquet").to_table()
    # Sort by the seeded hash: the fit sees the same row order whatever Spark wrote.
    table = table.take(pc.sort_indices(table, sort_keys=[("priority_hash", "ascending")]))
    column = table.column("embedding").combine_chunks()
    flat = np.asarray(pc.list_flatten(column).to_numpy(zero_copy_only=False), dtype=np.float32)
    hashes = np.asarray(table.column("priority_hash").to_pylist(), dtype=object)
    buckets = table.column("holdout_bucket").to_numpy()
    return hashes, flat.reshape(len(table), -1), buckets


def read_pair_indices(pairs_folder: str, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return int64 row indices into the sorted sample of both sides of every stored pair."""
    import pyarrow.dataset as ds

    table = ds.dataset(pairs_folder, format="parquet").to_table(columns=["left_hash", "right_hash"])
    left = np.asarray(table.column("left_hash").to_pylist(), dtype=object)
    right = np.asarray(table.column("right_hash").to_pylist(), dtype=object)
    order = np.lexsort((right, left))
    return np.searchsorted(hashes, left[order]).astype(np.int64), np.searchsorted(hashes, right[order]).astype(np.int64)


class _QuantizerTrainer:
    """Ray actor that loads a Parquet sample and fits or scores a quantizer on it."""

    def __init__(self) -> None:
        # Ray forwards the actor's stderr to the driver, so the per-epoch lines reach the job
        # log. Ray's own handler drops INFO when ray.init sets logging_level=WARNING.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        quantize_logger = logging.getLogger("sid.quantize")
        quantize_logger.addHandler(handler)
        quantize_logger.setLevel(logging.INFO)
        quantize_logger.propagate = False

    def fit(self, sample_folder: str, options: dict[str, Any]) -> dict[str, Any]:
        from sid.quantize import build_quantizer, score_quantizer

        hashes, vectors, buckets = read_sample(sample_folder)
        quantize: QuantizeConfig = options["quantize"]
        quantizer = build_quantizer(quantize, seed=options["seed"], num_threads=options["num_threads"],
                                    use_gpu=options["use_gpu"], show_progress=False)
        if quantize.method == "rqvae":
            holdout = buckets < quantize.rqvae.holdout_fraction * HOLDOUT_BUCKETS
            pairs = read_pair_indices(options["pairs_folder"], hashes) if options["pairs_folder"] else None
            quantizer.fit(vectors, pairs=pairs, holdout=holdout)
        else:
            quantizer.fit(vectors)
        return {"quantizer": quantizer, "stats": quantizer.fit_stats_, "sample_size": len(vectors),
                "scores": score_quantizer(quantizer, vectors)}

    def score(self, sample_folder: str, quantizer) -> dict[str, Any]:
        from sid.quantize import score_quantizer

        _, vectors, _ = read_sample(sample_folder)
        stats = quantizer.training_stats(vectors) if hasattr(quantizer, "training_stats") else {}
        return {"stats": stats, "sample_size": len(vectors), "scores": score_quantizer(quantizer, vectors)}
