"""Train stage entry: one quantizer, or a sweep of candidates trained side by side.

``train_candidates`` writes the co-occurring pairs that an RQ-VAE's InfoNCE term needs,
then trains the quantize section alone or, when ``quantize.sweep.candidates`` lists
configs, one Ray actor per candidate at the same time. Each candidate is scored on the
training sample (collision rate, utilization, reconstruction error, Gini) and logged as a
nested MLflow run. The best by ``quantize.sweep.metric`` becomes the run's quantizer, and the
chosen quantizer is saved as the MLflow artifact ``quantizer/`` of the active run.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile
from typing import TYPE_CHECKING

from pipelines.retrieval import training_pairs
from pipelines.train import TrainResult, finish_fit, start_fit, train_quantizer
from sid.config import PipelineConfig, QuantizeConfig
from sid.quantize import best_candidate

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["choose_candidate", "run_sweep", "train_candidates", "write_training_pairs"]

logger = logging.getLogger(__name__)


def train_candidates(embedded: DataFrame, sample_folder: pathlib.Path, config: PipelineConfig) -> TrainResult:
    """Train the configured quantizer or sweep, on the sample Spark wrote to ``sample_folder``.

    ``embedded`` (item_id, embedding, priority_hash) supplies the pair embeddings. Scratch
    files go next to ``sample_folder``.
    """
    candidates = config.quantize.candidates() or [("quantize", config.quantize)]
    pairs_folder = None
    if any(quantize.method == "rqvae" and quantize.rqvae.contrastive for _, quantize in candidates):
        pairs_folder = sample_folder.parent / "train_pairs"
        pair_count = write_training_pairs(embedded, sample_folder, config, pairs_folder)
        logger.info("stage=train pairs=%d folder=%s", pair_count, pairs_folder)

    if not config.quantize.sweep.candidates:
        result = train_quantizer(sample_folder, config, pairs_folder=pairs_folder)
        _log_quantizer_artifact(result)
        return result

    winner, results = run_sweep(sample_folder, config, pairs_folder=pairs_folder)
    _log_sweep(results, dict(candidates), winner, config)
    _log_quantizer_artifact(results[winner])
    return results[winner]


def run_sweep(sample_folder: pathlib.Path, config: PipelineConfig, *,
              pairs_folder: pathlib.Path | None = None) -> tuple[str, dict[str, TrainResult]]:
    """Train every sweep candidate on the sample; return (winner name, results by name)."""
    results = _train_side_by_side(sample_folder, config, config.quantize.candidates(), pairs_folder)
    winner = choose_candidate({name: result.scores for name, result in results.items()}, config.quantize.sweep.metric)
    return winner, results


def choose_candidate(scores: dict[str, dict[str, float]], metric: str) -> str:
    """Return the candidate name with the best ``metric`` (ties go to the first listed)."""
    winner = best_candidate(scores, metric)
    logger.info("sweep metric=%s winner=%s %s", metric, winner,
                " ".join(f"{name}={values[metric]:.5f}" for name, values in scores.items()))
    return winner


def write_training_pairs(embedded: DataFrame, sample_folder: pathlib.Path, config: PipelineConfig,
                         folder: pathlib.Path) -> int:
    """Write co-occurring pairs of sampled items to Parquet and return their number.

    Pairs are consecutive items of each user's sequence (by position, then item_id),
    unordered and distinct, with both sides in the training sample. The pairs that the
    embedding hit rate holds out (:func:`pipelines.retrieval.held_out_pairs` over the items
    of ``embedded``, with ``evaluate.hit_rate_pairs`` and ``run.seed``) are left out. At most
    ``quantize.train_sample_size`` pairs are kept, those with the smallest seeded hash.
    Columns: left_hash, right_hash (priority hashes), left_embedding, right_embedding.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from sid.catalog import read_catalog

    spark = embedded.sparkSession
    interactions = read_catalog(spark, config.catalog).interactions
    if interactions is None:
        # NOTE: without interactions the contrastive step has no pairs and is skipped.
        logger.warning("rqvae.contrastive is set but catalog.path has no interactions; training without pairs")
        spark.createDataFrame([], "left_hash STRING, right_hash STRING, left_embedding ARRAY<FLOAT>, "
                                  "right_embedding ARRAY<FLOAT>").write.mode("overwrite").parquet(str(folder))
        return 0

    order = Window.partitionBy("user_id").orderBy(F.col("position").asc_nulls_last(), F.col("item_id"))
    consecutive = (
        interactions.withColumn("next_item", F.lead("item_id").over(order))
        .where(F.col("next_item").isNotNull() & (F.col("next_item") != F.col("item_id")))
        .select(F.least("item_id", "next_item").alias("left_id"), F.greatest("item_id", "next_item").alias("right_id"))
        .distinct()
    )
    consecutive = training_pairs(consecutive, interactions, embedded, max_pairs=config.evaluate.hit_rate_pairs,
                                 seed=config.run.seed)
    sampled = spark.read.parquet(str(sample_folder)).select("priority_hash")
    vectors = embedded.select("item_id", "priority_hash", "embedding").join(sampled, "priority_hash", "left_semi")
    left = vectors.select(F.col("item_id").alias("left_id"), F.col("priority_hash").alias("left_hash"),
                          F.col("embedding").alias("left_embedding"))
    right = vectors.select(F.col("item_id").alias("right_id"), F.col("priority_hash").alias("right_hash"),
                           F.col("embedding").alias("right_embedding"))
    pair_hash = F.sha2(F.concat_ws(":", F.lit(str(config.run.seed)), "left_hash", "right_hash"), 256)
    pairs = (
        consecutive.join(left, "left_id").join(right, "right_id")
        .withColumn("_order", pair_hash)
        .orderBy("_order")
        .limit(config.quantize.train_sample_size)
        .select("left_hash", "right_hash", "left_embedding", "right_embedding")
    )
    pairs.write.mode("overwrite").parquet(str(folder))
    return spark.read.parquet(str(folder)).count()


def _train_side_by_side(sample_folder: pathlib.Path, config: PipelineConfig,
                        candidates: list[tuple[str, QuantizeConfig]],
                        pairs_folder: pathlib.Path | None) -> dict[str, TrainResult]:
    """Start one actor per single-process candidate, then train data-parallel ones in turn."""
    results: dict[str, TrainResult] = {}
    started = {}
    for name, quantize in candidates:
        if not (quantize.method == "rqvae" and quantize.rqvae.num_workers > 1):
            logger.info("sweep candidate=%s method=%s status=started", name, quantize.method)
            started[name] = start_fit(sample_folder, config, quantize=quantize, pairs_folder=pairs_folder)
    for name, quantize in candidates:
        if name not in started:
            logger.info("sweep candidate=%s method=%s status=started workers=%d", name, quantize.method,
                        quantize.rqvae.num_workers)
            results[name] = train_quantizer(sample_folder, config, quantize=quantize, pairs_folder=pairs_folder)
    for name, future in started.items():
        results[name] = finish_fit(future)
        logger.info("sweep candidate=%s status=finished collision_rate=%.4f utilization=%.4f "
                    "reconstruction_relative=%.4f", name, results[name].scores["collision_rate"],
                    results[name].scores["utilization"], results[name].scores["reconstruction_relative"])
    # Keep the listed order, so that ties go to the first candidate.
    return {name: results[name] for name, _ in candidates}


def _log_sweep(results: dict[str, TrainResult], candidates: dict[str, QuantizeConfig], winner: str,
               config: PipelineConfig) -> None:
    """Log every candidate as a nested MLflow run, and the winner on the parent run."""
    import dataclasses

    import mlflow

    if mlflow.active_run() is None:
        return
    for name, result in results.items():
        with mlflow.start_run(run_name=f"candidate-{name}", nested=True):
            params = {f"quantize.{key}": str(value) for key, value in dataclasses.asdict(candidates[name]).items()
                      if key != "sweep"}
            mlflow.log_params({key: value[:6000] for key, value in params.items()})
            mlflow.set_tags({"sweep_candidate": name, "sweep_winner": str(name == winner)})
            mlflow.log_metrics({f"sweep/{key}": float(value) for key, value in result.scores.items()})
            mlflow.log_metrics({f"train/{key}": float(value) for key, value in result.stats.items()
                                if isinstance(value, (int, float))})
    mlflow.set_tags({"sweep_winner": winner, "sweep_metric": config.quantize.sweep.metric})
    mlflow.log_metrics({f"sweep/{name}/{config.quantize.sweep.metric}": result.scores[config.quantize.sweep.metric]
                        for name, result in results.items()})


def _log_quantizer_artifact(result: TrainResult) -> None:
    """Save the chosen quantizer as artifact ``quantizer/`` of the active MLflow run, if any."""
    import mlflow

    if mlflow.active_run() is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        result.quantizer.save(folder)
        mlflow.log_artifacts(folder, artifact_path="quantizer")
