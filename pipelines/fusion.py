"""Fusion of the modality vectors in Spark: weights, concat or projection, PCA, contrastive head.

Input rows hold one nullable array column per modality (null: the item lacks it). The
fused ``embedding`` is computed row by row in float64 (:func:`sid.embed.fusion.fuse`), so
it does not depend on Spark's partitioning. PCA is fitted on the driver from a seeded
sample. FORGE's contrastive alignment (Fu et al., arXiv 2509.20904) trains a linear head
in a Ray actor on Parquet pairs of co-occurring items, and Spark then applies the head.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sid.config import MODALITIES, FusionConfig, PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["apply_vector_map", "fuse_modalities", "fit_pca_on_sample", "train_head_on_ray"]

logger = logging.getLogger(__name__)

PART_COLUMNS = {modality: f"{modality}_embedding" for modality in MODALITIES}
# Hash buckets of the pairs; a pair is held out when its bucket < holdout_fraction * PAIR_BUCKETS.
PAIR_BUCKETS = 10_000


def fuse_modalities(parts: DataFrame, fusion: FusionConfig, *, dims: dict[str, int], seed: int) -> DataFrame:
    """Add ``embedding`` (fused, float32) and ``usable`` to ``parts`` (item_id and *_embedding columns).

    ``dims`` gives the size of each modality in fusion; a modality absent from ``dims`` is
    left out. ``usable`` is False for rows with no present modality of positive weight.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    order = [modality for modality in MODALITIES if modality in dims]
    weights = {modality: fusion.weights.get(modality, 0.0) for modality in order}
    projections = None
    if fusion.mode == "project":
        from sid.embed.fusion import projection_matrix

        projections = {modality: projection_matrix(dims[modality], fusion.projection_dim, seed=seed,
                                                   modality=modality) for modality in order}
    schema = T.StructType(parts.schema.fields + [
        T.StructField("embedding", T.ArrayType(T.FloatType())), T.StructField("usable", T.BooleanType()),
    ])
    mode = fusion.mode

    def fuse_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from sid.embed.fusion import fuse

        for batch in batches:
            arrays, masks = {}, {}
            for modality in order:
                column = batch[PART_COLUMNS[modality]]
                masks[modality] = column.notna().to_numpy()
                arrays[modality] = _stack_present(column, masks[modality], dims[modality])
            fused, usable = fuse(arrays, masks, weights, mode=mode, projections=projections, order=order)
            yield batch.assign(embedding=list(fused), usable=usable)

    return parts.mapInPandas(fuse_batches, schema=schema).withColumn("usable", F.coalesce("usable", F.lit(False)))


def apply_vector_map(frame: DataFrame, transform, column: str = "embedding") -> DataFrame:
    """Replace ``column`` (array<float>) with ``transform(float64 (n, d)) -> float32 (n, k)`` per batch.

    ``transform`` must be picklable (a PcaModel or ContrastiveHead method) and row-wise.
    """
    schema = frame.schema

    def map_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if len(batch) == 0:
                yield batch
                continue
            vectors = np.stack([np.asarray(value, dtype=np.float64) for value in batch[column]])
            yield batch.assign(**{column: list(transform(vectors))})

    return frame.mapInPandas(map_batches, schema=schema)


def fit_pca_on_sample(fused: DataFrame, fusion: FusionConfig):
    """Fit PCA on the ``pca_sample_size`` usable rows with the smallest priority_hash; return it."""
    from sid.embed.fusion import fit_pca

    sample = (
        fused.where("usable").select("priority_hash", "embedding")
        .orderBy("priority_hash").limit(fusion.pca_sample_size).toPandas()
    )
    model = fit_pca(np.stack(sample["embedding"].to_numpy()), fusion.pca_dim)
    logger.info("embed pca dim=%d sample=%d explained_variance_ratio=%.4f", fusion.pca_dim, len(sample),
                model.explained_variance_ratio)
    return model


def write_pairs(fused: DataFrame, sequences: DataFrame, config: PipelineConfig, folder: pathlib.Path) -> int:
    """Write consecutive co-occurring pairs with their fused vectors to Parquet; return the count.

    Pairs are unordered and distinct, both items usable; at most ``max_pairs``, those with
    the smallest seeded hash. The pairs that the embedding hit rate holds out
    (:func:`pipelines.retrieval.held_out_pairs` over the usable items, with
    ``evaluate.hit_rate_pairs`` and ``run.seed``) are left out. Columns: left_embedding,
    right_embedding, bucket (int).
    """
    from pyspark.sql import functions as F

    from pipelines.retrieval import training_pairs
    from sid.catalog import read_catalog

    contrastive = config.embed.fusion.contrastive
    seed = config.run.seed
    consecutive = (
        sequences.select(F.arrays_zip(F.slice("sequence", 1, F.size("sequence") - 1),
                                      F.slice("sequence", 2, F.size("sequence"))).alias("_pairs"))
        .select(F.explode("_pairs").alias("_pair"))
        .select(F.col("_pair")["0"].alias("a"), F.col("_pair")["1"].alias("b"))
        .where(F.col("a") != F.col("b"))
        .select(F.least("a", "b").alias("left_id"), F.greatest("a", "b").alias("right_id")).distinct()
    )
    vectors = fused.where("usable").select("item_id", "embedding")
    interactions = read_catalog(fused.sparkSession, config.catalog).interactions
    if interactions is not None:
        consecutive = training_pairs(consecutive, interactions, vectors, max_pairs=config.evaluate.hit_rate_pairs,
                                     seed=seed)
    key = F.sha2(F.concat_ws(":", F.lit(str(seed)), "left_id", "right_id"), 256)
    pairs = (
        consecutive.join(vectors.toDF("left_id", "left_embedding"), "left_id")
        .join(vectors.toDF("right_id", "right_embedding"), "right_id")
        .withColumn("_key", key).orderBy("_key").limit(contrastive.max_pairs)
        .withColumn("bucket", F.pmod(F.xxhash64(F.lit(f"pairs:{seed}"), "_key"), F.lit(PAIR_BUCKETS)).cast("int"))
        .select("_key", "left_embedding", "right_embedding", "bucket")
    )
    pairs.write.mode("overwrite").parquet(str(folder))
    return fused.sparkSession.read.parquet(str(folder)).count()


def train_head_on_ray(pairs_folder: pathlib.Path, config: PipelineConfig):
    """Train the contrastive head in a Ray actor on the Parquet pairs; return (head, stats)."""
    import ray

    contrastive = config.embed.fusion.contrastive
    actor = ray.remote(num_cpus=contrastive.num_cpus)(_ContrastiveTrainer).remote()
    options = {"contrastive": contrastive, "seed": config.run.seed,
               "holdout_buckets": int(contrastive.holdout_fraction * PAIR_BUCKETS)}
    try:
        result = ray.get(actor.fit.remote(str(pairs_folder), options))
    finally:
        ray.kill(actor)
    return result["head"], result["stats"]


class _ContrastiveTrainer:
    """Ray actor: read the pairs, train the head on the training share, score the held-out share."""

    def fit(self, pairs_folder: str, options: dict[str, Any]) -> dict[str, Any]:
        import pyarrow.compute as pc
        import pyarrow.dataset as ds

        from sid.embed.contrastive import similarity_gap, train_contrastive_head

        table = ds.dataset(pairs_folder, format="parquet").to_table()
        # Sorting by the seeded pair hash gives training the same order whatever Spark wrote.
        table = table.take(pc.sort_indices(table, sort_keys=[("_key", "ascending")]))
        left, right = (_stack(table.column(name)) for name in ("left_embedding", "right_embedding"))
        held_out = table.column("bucket").to_numpy() < options["holdout_buckets"]
        if held_out.sum() < 2 or (~held_out).sum() < 2:
            raise ValueError(
                f"the contrastive head needs at least 2 training and 2 held-out pairs, got {int((~held_out).sum())} "
                f"and {int(held_out.sum())}; add interactions or raise embed.fusion.contrastive.holdout_fraction"
            )
        contrastive = options["contrastive"]
        seed = options["seed"]
        head, stats = train_contrastive_head(
            left[~held_out], right[~held_out], output_dim=contrastive.output_dim,
            temperature=contrastive.temperature, epochs=contrastive.epochs, batch_size=contrastive.batch_size,
            learning_rate=contrastive.learning_rate, weight_decay=contrastive.weight_decay, seed=seed,
        )
        stats["gap_before"] = similarity_gap(left[held_out], right[held_out], seed=seed)
        stats["gap_after"] = similarity_gap(head.apply(left[held_out]), head.apply(right[held_out]), seed=seed)
        stats["held_out_pairs"] = float(held_out.sum())
        return {"head": head, "stats": stats}


def _stack(column) -> np.ndarray:
    import pyarrow.compute as pc

    chunked = column.combine_chunks()
    flat = np.asarray(pc.list_flatten(chunked).to_numpy(zero_copy_only=False), dtype=np.float64)
    return flat.reshape(len(chunked), -1)


def _stack_present(column: pd.Series, mask: np.ndarray, dim: int) -> np.ndarray:
    """Return float64 (n, dim) rows of ``column``; rows under a False mask are zeros the mask hides."""
    rows = np.zeros((len(column), dim))
    for row in np.flatnonzero(mask):
        rows[row] = np.asarray(column.iloc[row], dtype=np.float64)
    return rows
