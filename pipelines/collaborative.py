"""Collaborative modality: item vectors from user interactions, computed in Spark and Ray.

Two methods (``embed.collaborative.method``):

- ``svd``: Spark counts how often two items occur within ``window`` positions of each
  other in a user's sequence. A Ray task factorizes the weighted count matrix with a seeded
  randomized SVD (:mod:`sid.embed.collaborative`) and writes the vectors back as Parquet.
  Counts are exact integers, so the vectors do not depend on Spark's partitioning.
- ``word2vec``: item2vec, Spark MLlib ``Word2Vec`` over the user sequences. MLlib builds
  its vocabulary and its training order from the order in which partitions deliver the
  sequences, so the sequences are first moved into one partition in a fixed order; the
  result then depends only on the data and the seed.

Users with a single interaction carry no co-occurrence and are dropped; items without any
co-occurring interaction get no vector (masked). Both are counted in the returned stats.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import TYPE_CHECKING, Any

from sid.config import CollaborativeConfig, PipelineConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["CollaborativeResult", "collaborative_vectors", "cooccurrence_counts", "user_sequences",
           "word2vec_vectors"]

logger = logging.getLogger(__name__)

VECTOR_SCHEMA = "item_id STRING, collaborative_embedding ARRAY<FLOAT>"


@dataclasses.dataclass
class CollaborativeResult:
    """``vectors``: item_id, collaborative_embedding (only items with a vector); ``stats``.

    ``sequences``: (user_id, sequence) of users with >= 2 catalog interactions, cached, or
    None without interactions; the contrastive head takes its pairs from them.
    """

    vectors: DataFrame
    stats: dict[str, float]
    sequences: DataFrame | None = None


def user_sequences(interactions: DataFrame, items: DataFrame) -> tuple[DataFrame, dict[str, float]]:
    """Return (user_id, sequence array<string>) of users with >= 2 catalog interactions, and counts.

    Interactions with items outside ``items`` are dropped. A sequence is ordered by
    position, then item_id, so ties in position cannot change the order.
    """
    from pyspark.sql import functions as F

    known = interactions.join(items.select("item_id"), "item_id", "left_semi")
    ordered = F.array_sort(F.collect_list(F.struct(F.col("position"), F.col("item_id"))))
    sequences = known.groupBy("user_id").agg(ordered.alias("_events")).select(
        "user_id", F.transform("_events", lambda event: event["item_id"]).alias("sequence")
    ).cache()
    counts = sequences.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum(F.when(F.size("sequence") == 1, 1).otherwise(0)).alias("single"),
    ).collect()[0]
    stats = {
        "interactions": float(interactions.count()),
        "interactions_outside_catalog": float(interactions.count() - known.count()),
        "users": float(counts["users"] or 0),
        "single_interaction_users": float(counts["single"] or 0),
    }
    return sequences.where(F.size("sequence") >= 2), stats


def cooccurrence_counts(sequences: DataFrame, window: int) -> DataFrame:
    """Return (left_id, right_id, count) with left_id < right_id: co-occurrences within ``window``."""
    from pyspark.sql import functions as F

    events = sequences.select("user_id", F.posexplode("sequence").alias("rank", "item_id"))
    left = events.select("user_id", F.col("rank").alias("left_rank"), F.col("item_id").alias("left_item"))
    right = events.select("user_id", F.col("rank").alias("right_rank"), F.col("item_id").alias("right_item"))
    near = (F.col("right_rank") > F.col("left_rank")) & (F.col("right_rank") - F.col("left_rank") <= window)
    return (
        left.join(right, "user_id").where(near & (F.col("left_item") != F.col("right_item")))
        .select(F.least("left_item", "right_item").alias("left_id"),
                F.greatest("left_item", "right_item").alias("right_id"))
        .groupBy("left_id", "right_id").agg(F.count(F.lit(1)).cast("bigint").alias("count"))
    )


def word2vec_vectors(sequences: DataFrame, collaborative: CollaborativeConfig, *, seed: int) -> DataFrame:
    """Train MLlib Word2Vec on ``sequences`` and return (item_id, collaborative_embedding).

    The sequences go into one partition ordered by a hash of user_id, because MLlib's
    vocabulary order and sentence order follow the partitions' delivery order.
    """
    from pyspark.ml.feature import Word2Vec
    from pyspark.sql import functions as F

    ordered = (
        sequences.withColumn("_order", F.sha2(F.concat(F.lit(f"{seed}:"), F.col("user_id")), 256))
        .repartition(1).sortWithinPartitions("_order", "user_id").select("sequence")
    )
    model = Word2Vec(
        vectorSize=collaborative.dim, windowSize=collaborative.window, minCount=1, numPartitions=1,
        maxIter=collaborative.iterations, stepSize=collaborative.step_size, seed=seed,
        inputCol="sequence", outputCol="_vector",
    ).fit(ordered)
    to_array = F.udf(lambda vector: [float(x) for x in vector.toArray()], "array<float>")
    return model.getVectors().select(F.col("word").alias("item_id"),
                                     to_array("vector").alias("collaborative_embedding"))


def collaborative_vectors(items: DataFrame, config: PipelineConfig, *, work_dir: pathlib.Path) -> CollaborativeResult:
    """Return the collaborative vectors of ``items`` and the stats of the step.

    Stats keys: interactions, users, single_interaction_users, items_with_vector,
    items_without_interactions, seconds (and pairs for svd).
    """
    from sid.catalog import read_catalog

    spark = items.sparkSession
    collaborative = config.embed.collaborative
    started = time.perf_counter()
    interactions = read_catalog(spark, config.catalog).interactions
    if interactions is None:
        # NOTE: a catalog without interactions masks the collaborative modality of every item.
        logger.warning("embed.collaborative.method=%s but the catalog has no interactions; "
                       "every item's collaborative modality is masked", collaborative.method)
        return CollaborativeResult(spark.createDataFrame([], VECTOR_SCHEMA), {"interactions": 0.0}, None)

    sequences, stats = user_sequences(interactions, items)
    if collaborative.method == "word2vec":
        vectors = word2vec_vectors(sequences, collaborative, seed=config.run.seed)
    else:
        vectors, pairs = _svd_vectors(sequences, config, work_dir)
        stats["pairs"] = float(pairs)
    vectors = vectors.join(items.select("item_id"), "item_id", "left_semi").cache()
    with_vector = vectors.count()
    stats["items_with_vector"] = float(with_vector)
    stats["seconds"] = time.perf_counter() - started
    logger.info("embed collaborative method=%s users=%d single_interaction_users=%d items_with_vector=%d "
                "seconds=%.1f", collaborative.method, stats["users"], stats["single_interaction_users"],
                with_vector, stats["seconds"])
    return CollaborativeResult(vectors, stats, sequences)


def _svd_vectors(sequences: DataFrame, config: PipelineConfig, work_dir: pathlib.Path) -> tuple[DataFrame, int]:
    """Write the co-occurrence counts, factorize them in a Ray task, read the vectors back."""
    import ray

    spark = sequences.sparkSession
    counts_folder = work_dir / "cooccurrence_counts"
    vectors_folder = work_dir / "collaborative_vectors"
    cooccurrence_counts(sequences, config.embed.collaborative.window).write.mode("overwrite").parquet(
        str(counts_folder))
    collaborative = config.embed.collaborative
    options = {"dim": collaborative.dim, "seed": config.run.seed, "weighting": collaborative.weighting,
               "oversampling": collaborative.oversampling, "power_iterations": collaborative.power_iterations}
    pairs = ray.get(ray.remote(num_cpus=1)(_factorize).remote(str(counts_folder), str(vectors_folder), options))
    return spark.read.parquet(str(vectors_folder)), pairs


def _factorize(counts_folder: str, vectors_folder: str, options: dict[str, Any]) -> int:
    """Ray task: read the counts, run the seeded SVD, write (item_id, vector) Parquet; return pairs."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from sid.embed.collaborative import item_vectors_from_counts

    table = ds.dataset(counts_folder, format="parquet").to_table()
    left = np.asarray(table.column("left_id").to_pylist(), dtype=object)
    right = np.asarray(table.column("right_id").to_pylist(), dtype=object)
    counts = table.column("count").to_numpy()
    pathlib.Path(vectors_folder).mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("item_id", pa.string()), ("collaborative_embedding", pa.list_(pa.float32()))])
    if len(left) == 0:
        pq.write_table(schema.empty_table(), str(pathlib.Path(vectors_folder) / "part-0.parquet"))
        return 0
    # Rows of the matrix are item_ids in sorted order, whatever order Spark wrote the files in.
    ids, inverse = np.unique(np.concatenate([left, right]).astype(str), return_inverse=True)
    rows, cols = inverse[:len(left)], inverse[len(left):]
    vectors, has_signal = item_vectors_from_counts(rows, cols, counts, len(ids), **options)
    kept = np.flatnonzero(has_signal)
    output = pa.table({
        "item_id": pa.array(ids[kept].tolist(), pa.string()),
        "collaborative_embedding": pa.array([vectors[i].tolist() for i in kept], pa.list_(pa.float32())),
    }, schema=schema)
    pq.write_table(output, str(pathlib.Path(vectors_folder) / "part-0.parquet"))
    return len(left)
