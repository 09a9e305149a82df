"""Embedding hit rate and neighbour recall of SIDs, ranked on the driver.

Embedding hit rate@K follows the project's reading of FORGE's metric (Fu et al., arXiv
2509.20904), implemented in :mod:`sid.metrics.hit_rate`. Pairs (i, j) are consecutive items
of user sequences. Every item is represented by its SID's reconstruction, all other items
are ranked by cosine similarity to i, and a hit is j among the first K. The same ranking on
the raw embeddings is the ceiling.

Spark picks the pairs (seeded hash, whole interactions table) and the candidate items; the
ranking itself needs every candidate's vector in one place, so candidates are collected to
the driver.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sid.config import EvaluateConfig
from sid.metrics import neighbour_recall, target_ranks

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["RetrievalResult", "drop_held_out_pairs", "held_out_pairs", "retrieval_metrics", "training_pairs"]

logger = logging.getLogger(__name__)

# Points of the hit rate against K curve that the report plots.
CURVE_POINTS = 40


@dataclasses.dataclass
class RetrievalResult:
    """Hit rate and neighbour recall metrics, the hit-rate curves and notes for the report.

    curves: {"sid" or "raw": (int64 cutoffs, float64 hit rates)}.
    """

    metrics: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    notes: list[str]


def retrieval_metrics(
    covered: DataFrame,
    interactions: DataFrame | None,
    decode: Callable[[np.ndarray], np.ndarray],
    config: EvaluateConfig,
    *,
    levels: int,
    seed: int,
) -> RetrievalResult:
    """Return hit_rate/{sid,raw}/at_<K>, hit_rate/pairs, hit_rate/candidate_items and
    neighbour_recall/at_<k> over ``covered`` (item_id, codes, embedding, popularity, priority_hash).

    A cutoff of at least the number of candidates minus one is skipped with a note, because
    every target would be a hit.
    """
    notes: list[str] = []
    pairs = _sample_pairs(covered, interactions, max_pairs=config.hit_rate_pairs, seed=seed)
    if pairs.empty:
        notes.append("no consecutive pair of covered items in the interactions; hit rate not computed")
    candidates, sampled = _collect_candidates(covered, pairs, config.max_driver_items)
    if sampled:
        # NOTE: above evaluate.max_driver_items the items are ranked among a sample (pair
        # items first, then the smallest priority hashes), which raises hit rate and recall
        # compared with ranking the whole catalog.
        notes.append(
            f"the catalog exceeds evaluate.max_driver_items={config.max_driver_items}; hit rate and "
            f"neighbour recall rank {len(candidates)} sampled candidate items"
        )

    # Row-indexed arrays of the candidates: raw vectors, decoded SIDs and the tie order.
    n_items = len(candidates)
    raw = np.stack(candidates["embedding"].to_numpy()).astype(np.float32)
    codes = np.stack([np.asarray(row[:levels]) for row in candidates["codes"]]).astype(np.int64)
    reconstructions = np.asarray(decode(codes), dtype=np.float32)
    popularity = candidates["popularity"].to_numpy(dtype=np.int64)
    priority = candidates["priority_hash"].to_numpy().astype(str)
    metrics = {"hit_rate/candidate_items": float(n_items)}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # Embedding hit rate on SID reconstructions and on raw embeddings (the ceiling).
    row_of = pd.Series(np.arange(n_items), index=candidates["item_id"].to_numpy())
    pair_rows = _pair_rows(pairs, row_of)
    ks = [k for k in sorted(set(config.hit_rate_ks)) if k < n_items - 1]
    skipped = sorted(set(config.hit_rate_ks) - set(ks))
    if skipped and len(pair_rows):
        notes.append(f"hit rate at K={skipped} skipped: K must be below {n_items - 1}, the candidates per query")
    if len(pair_rows) and ks:
        metrics["hit_rate/pairs"] = float(len(pair_rows))
        for name, vectors, sids in (("sid", reconstructions, codes), ("raw", raw, None)):
            positions = target_ranks(vectors, pair_rows, popularity=popularity, priority_hash=priority, sids=sids)
            for k in ks:
                metrics[f"hit_rate/{name}/at_{k}"] = float(np.mean(positions < k))
            curves[name] = _hit_rate_curve(positions, n_items)

    # Neighbour recall on the first query items in priority-hash order.
    k = config.neighbour_k
    if k < n_items:
        queries = np.argsort(priority)[: config.neighbour_queries]
        metrics[f"neighbour_recall/at_{k}"] = neighbour_recall(
            raw, reconstructions, k=k, popularity=popularity, priority_hash=priority, sids=codes, queries=queries,
        )
        metrics["neighbour_recall/queries"] = float(len(queries))
    else:
        notes.append(f"neighbour recall skipped: evaluate.neighbour_k={k} needs more than {n_items} items")
    logger.info("retrieval candidates=%d pairs=%d ks=%s", n_items, len(pair_rows), ks)
    return RetrievalResult(metrics=metrics, curves=curves, notes=notes)


def _sample_pairs(covered: DataFrame, interactions: DataFrame | None, *, max_pairs: int, seed: int) -> pd.DataFrame:
    """Return the :func:`held_out_pairs` of the covered items as pandas (item_id, next_item_id)."""
    if interactions is None:
        return pd.DataFrame({"item_id": [], "next_item_id": []})
    return held_out_pairs(interactions, covered, max_pairs=max_pairs, seed=seed).toPandas()


def held_out_pairs(interactions: DataFrame, items: DataFrame, *, max_pairs: int, seed: int) -> DataFrame:
    """Return the consecutive pairs (item_id, next_item_id) that the embedding hit rate scores.

    The candidates are the distinct ordered pairs of neighbouring items in each user's
    sequence (ordered by position, then item_id), with i != j and both items in ``items``
    (an item_id column). The ``max_pairs`` candidates with the smallest sha256 of
    "seed:item_id:next_item_id" are held out. Training that uses co-occurring pairs (the
    RQ-VAE's InfoNCE term, the contrastive fusion head) removes them with
    :func:`drop_held_out_pairs`, so the hit rate is measured on pairs the training never saw.

    NOTE: the selection depends on ``items``. A build trains and evaluates on the same
    embedded items, so both sides select the same pairs. An evaluation restricted to fewer
    items can select pairs beyond the ones its training left out. The collaborative
    vectors (SVD or Word2Vec) still count every interaction, held-out pairs included.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("user_id").orderBy("position", "item_id")
    ids = items.select("item_id")
    pairs = (
        interactions.select("user_id", "item_id", "position")
        .withColumn("next_item_id", F.lead("item_id").over(order))
        .where(F.col("next_item_id").isNotNull() & (F.col("item_id") != F.col("next_item_id")))
        .select("item_id", "next_item_id")
        .distinct()
        .join(ids, "item_id", "left_semi")
        .join(ids.withColumnRenamed("item_id", "next_item_id"), "next_item_id", "left_semi")
    )
    key = F.sha2(F.concat_ws(":", F.lit(str(seed)), F.col("item_id"), F.col("next_item_id")), 256)
    return pairs.withColumn("_key", key).orderBy("_key").limit(max_pairs).select("item_id", "next_item_id")


def training_pairs(pairs: DataFrame, interactions: DataFrame, items: DataFrame, *, max_pairs: int,
                   seed: int) -> DataFrame:
    """Return ``pairs`` (left_id, right_id) without the hit rate's held-out pairs.

    When the held-out pairs are all the pairs there are (a catalog with fewer consecutive
    pairs than ``max_pairs``), nothing would be left to train on. Then every pair is kept,
    and a warning states that the hit rate of this build is measured on training pairs.
    """
    held_out = held_out_pairs(interactions, items, max_pairs=max_pairs, seed=seed)
    kept = drop_held_out_pairs(pairs, held_out).cache()
    if kept.limit(1).count() == 0:
        kept.unpersist()
        logger.warning(
            "every co-occurring pair is among the %d pairs the embedding hit rate holds out; training uses "
            "them all, so this build's hit rate is measured on training pairs (lower evaluate.hit_rate_pairs "
            "to keep some out)", max_pairs)
        return pairs
    return kept


def drop_held_out_pairs(pairs: DataFrame, held_out: DataFrame, *, left: str = "left_id",
                        right: str = "right_id") -> DataFrame:
    """Return the rows of ``pairs`` whose items (``left``, ``right``) are not a held-out pair.

    ``held_out`` is a :func:`held_out_pairs` frame. A held-out pair matches in either order,
    because training pairs are unordered.
    """
    from pyspark.sql import functions as F

    unordered = held_out.select(
        F.least("item_id", "next_item_id").alias("_low"), F.greatest("item_id", "next_item_id").alias("_high")
    ).distinct()
    low = F.least(F.col(left), F.col(right))
    high = F.greatest(F.col(left), F.col(right))
    return (
        pairs.withColumn("_low", low).withColumn("_high", high)
        .join(unordered, ["_low", "_high"], "left_anti")
        .drop("_low", "_high")
    )


def _collect_candidates(covered: DataFrame, pairs: pd.DataFrame, max_items: int) -> tuple[pd.DataFrame, bool]:
    """Return (candidates, sampled): at most ``max_items`` covered items with their vectors.

    Items of the sampled pairs come first, then the smallest priority hashes, so a catalog
    under the limit is collected whole and a larger one keeps as many pairs as fit.
    """
    from pyspark.sql import functions as F

    spark = covered.sparkSession
    pair_ids = sorted(set(pairs["item_id"]) | set(pairs["next_item_id"]))
    needed = spark.createDataFrame([(item_id,) for item_id in pair_ids], "item_id STRING").withColumn("_pair", F.lit(1))
    ranked = covered.join(F.broadcast(needed), "item_id", "left").fillna(0, ["_pair"])
    chosen = (
        ranked.orderBy(F.col("_pair").desc(), F.col("priority_hash"))
        .limit(max_items)
        .select("item_id", "codes", "embedding", "popularity", "priority_hash")
    )
    candidates = chosen.toPandas().sort_values("priority_hash", kind="stable").reset_index(drop=True)
    return candidates, len(candidates) < covered.count()


def _pair_rows(pairs: pd.DataFrame, row_of: pd.Series) -> np.ndarray:
    """Return int64 (n, 2) candidate rows of the pairs whose both items are candidates."""
    if pairs.empty:
        return np.empty((0, 2), dtype=np.int64)
    known = pairs["item_id"].isin(row_of.index) & pairs["next_item_id"].isin(row_of.index)
    kept = pairs[known]
    return np.stack([row_of[kept["item_id"]].to_numpy(), row_of[kept["next_item_id"]].to_numpy()], axis=1)


def _hit_rate_curve(positions: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (cutoffs, hit rates) on a log-spaced grid of K from 1 to n_items - 1."""
    top = max(n_items - 1, 1)
    cutoffs = np.unique(np.geomspace(1, top, CURVE_POINTS).astype(np.int64))
    rates = np.array([np.mean(positions < k) for k in cutoffs], dtype=np.float64)
    return cutoffs, rates
