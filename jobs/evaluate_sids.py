"""Evaluate an item-to-SID mapping against the catalog's embeddings, like a build does.

Runbook (from the repository root, after a build has filled item_embeddings):

    # Your own SIDs: CSV, JSON Lines or Parquet with item_id and codes (17,203,5) or sid
    # (<a_17><b_203><c_5>):
    bash scripts/spark-submit.sh jobs/evaluate_sids.py --config conf/beauty.yaml --mapping my_sids.csv

    # A published version of item_sids, decoded with its own codebooks:
    bash scripts/spark-submit.sh jobs/evaluate_sids.py --config conf/beauty.yaml \
        --version 20261204T120000Z-1a2b3c

The metrics go to sid_metrics under --label (default ``external:<file name>`` or the
version), to MLflow with the plots and report.md, and to the log, one line per metric. The
quality gate of the config is checked and reported, but nothing is activated.

External SIDs have no decoder, so each level's codewords are fitted as the mean residual of
the items holding each code (``pipelines.mapping.fit_codebooks``); --codebooks VERSION
decodes with a published version's residual k-means codebooks instead. Items of the
mapping without an embedding and catalog items without a SID are left out, and the
coverage/* metrics report how many.

Exit codes: 0 on success, 2 for invalid configuration or input (the message names the
value and the fix), 1 for any other failure.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from pipelines.session import exit_code, job_logger, job_session
from sid.errors import SidError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compute SID quality metrics of an item-to-SID mapping.")
    parser.add_argument("--config", help="YAML config merged over the embedded defaults (e.g. conf/beauty.yaml)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--mapping", help="CSV, JSON Lines or Parquet file (or folder) of item_id and codes or sid")
    source.add_argument("--version", help="codebook_version of the item_sids table to evaluate")
    parser.add_argument("--format", choices=("csv", "json", "parquet"), help="mapping format; default: file suffix")
    parser.add_argument("--label", help="sid_metrics key and MLflow run name; default external:<file name> or --version")
    parser.add_argument("--embedding-version", help="item_embeddings version to compare with; default: the newest")
    parser.add_argument("--codebooks", help="decode with this codebook_version's codebooks instead of fitted ones")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (YAML syntax), e.g. --set evaluate.hit_rate_pairs=2000")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    log = job_logger("evaluate_sids")
    args = parse_args(sys.argv[1:] if argv is None else argv)

    from build_sids import overrides_from_args
    from sid.config import load_config

    try:
        args.catalog_path = args.catalog_format = None
        config = load_config(args.config, overrides=overrides_from_args(args))
        with job_session(config, holder="evaluate_sids") as spark:
            evaluate(spark, config, args, log)
        return 0
    except SidError as error:
        log.error("%s", error)
        return exit_code(error)


def evaluate(spark, config, args: argparse.Namespace, log: logging.Logger) -> None:
    """Load the mapping and the catalog side, evaluate, and publish the metrics."""
    from pyspark.sql import functions as F

    from pipelines.evaluate import EvaluationInputs, evaluate_mapping
    from pipelines.gate import publish_evaluation
    from pipelines.ingest import priority_hash_column
    from pipelines.mapping import codebook_decoder, fit_codebooks, read_mapping
    from sid import tables
    from sid.catalog import read_catalog
    from sid.errors import MappingError
    from sid.tracking import MlflowRun

    # The mapping: a file, or a published version of item_sids.
    if args.mapping:
        mapping = read_mapping(spark, args.mapping, file_format=args.format)
        label = args.label or f"external:{pathlib.Path(args.mapping).name}"
    else:
        item_sids = tables.qualified_name(config.tables, "item_sids")
        mapping = spark.table(item_sids).where(F.col("codebook_version") == args.version).select("item_id", "codes")
        if mapping.isEmpty():
            raise MappingError(f"{item_sids} has no rows of codebook_version={args.version}; check the version")
        label = args.label or args.version

    # The catalog side: embeddings of one version, categories, popularity and priority.
    embeddings = _embeddings(spark, config, args.embedding_version)
    catalog = read_catalog(spark, config.catalog)
    popularity = (
        catalog.interactions.groupBy("item_id").agg(F.count(F.lit(1)).cast("bigint").alias("popularity"))
        if catalog.interactions is not None else spark.createDataFrame([], "item_id STRING, popularity BIGINT")
    )
    items = (
        embeddings.join(catalog.items.select("item_id", "categories").dropDuplicates(["item_id"]), "item_id", "left")
        .join(popularity, "item_id", "left").fillna(0, ["popularity"])
        .withColumn("priority_hash", priority_hash_column(config.run.seed))
    )

    # The decoder: published residual codebooks when asked (or for a version), else fitted ones.
    length = mapping.select(F.max(F.size("codes"))).collect()[0][0]
    decoder = None
    decode_version = args.codebooks or args.version
    if decode_version:
        decoder = codebook_decoder(spark, tables.qualified_name(config.tables, "codebooks"), decode_version)
        if decoder is None and args.codebooks:
            raise MappingError(f"no residual k-means codebooks of codebook_version={args.codebooks}; check the version")
    if decoder is not None:
        decode, sizes = decoder
        levels = len(sizes)
    else:
        levels, sizes = length, None
        decode = _fitted_decoder(fit_codebooks(mapping.join(items, "item_id"), levels))
    log.info("evaluate label=%s levels=%d decoder=%s", label, levels, "published" if decoder else "fitted")

    inputs = EvaluationInputs(sids=mapping, items=items, interactions=catalog.interactions,
                              decode=decode, levels=levels, codebook_sizes=sizes)
    evaluation = evaluate_mapping(spark, inputs, config.evaluate, seed=config.run.seed)
    with MlflowRun(config.mlflow, config, run_name=f"evaluate-{label}") as tracking:
        tracking.set_tags({"evaluated": label})
        failures = publish_evaluation(spark, config, evaluation, key=label, tracking=tracking,
                                      metrics=evaluation.metrics)
    for note in evaluation.notes:
        log.warning("%s", note)
    log.info("evaluation label=%s quality_gate=%s covered_items=%d", label, "passed" if not failures else "failed",
             int(evaluation.metrics["coverage/covered_items"]))


def _embeddings(spark, config, version: str | None):
    """Return item_id and embedding of one item_embeddings version (default: the newest)."""
    from pyspark.sql import functions as F

    from sid import tables
    from sid.errors import MappingError

    table = tables.qualified_name(config.tables, "item_embeddings")
    if not spark.catalog.tableExists(table):
        raise MappingError(f"table {table} does not exist; run jobs/build_sids.py first to embed the catalog")
    frame = spark.table(table)
    if version is None:
        newest = frame.orderBy(F.col("created_at").desc()).select("embedding_version").first()
        if newest is None:
            raise MappingError(f"table {table} is empty; run jobs/build_sids.py first to embed the catalog")
        version = newest["embedding_version"]
    chosen = frame.where(F.col("embedding_version") == version).select("item_id", "embedding")
    if chosen.isEmpty():
        raise MappingError(f"{table} has no rows of embedding_version={version}; check the version")
    return chosen


def _fitted_decoder(codebooks):
    import functools

    from sid.quantize import decode_residual

    return functools.partial(decode_residual, codebooks=codebooks)


if __name__ == "__main__":
    sys.exit(main())
