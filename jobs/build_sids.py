"""Build Semantic IDs for every item of a catalog and publish them as Delta tables.

Runbook (from the repository root, after ``bash scripts/install.sh``):

    # Amazon Beauty with the embedded defaults (local Spark, local Ray, SQLite MLflow):
    bash scripts/spark-submit.sh jobs/build_sids.py --config conf/beauty.yaml

    # Another catalog folder or file:
    bash scripts/spark-submit.sh jobs/build_sids.py --config conf/beauty.yaml \
        --catalog-path /data/amazon-beauty-2014

    # Add the catalog's new items to the active version (published SIDs never move):
    bash scripts/spark-submit.sh jobs/build_sids.py --config conf/beauty.yaml --mode incremental

    # One stage of a run, as an Airflow task does (stages: embed, train, resolve, publish):
    bash scripts/spark-submit.sh jobs/build_sids.py --config conf/beauty.yaml \
        --run-id nightly-20261204 --stage embed

    # Plain spark-submit on a machine that reaches Maven Central:
    spark-submit --packages io.delta:delta-spark_4.2_2.13:4.4.0 jobs/build_sids.py --config conf/cluster.yaml

A rerun with the same ``--run-id`` replaces that run's rows, so it is safe to retry a
failed or killed run. Exit codes: 0 on success, 2 for invalid configuration or input (the message names the value
and the fix), 3 when the new version fails the quality gate (``gate.thresholds``; its tables
and metrics are written but the previous active version stays), 4 when another job holds the
local warehouse or concurrent commits kept conflicting (nothing changed; retry later with the
same run id), 1 for any other failure.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipelines.build import MODES, STAGES
from sid.errors import BusyError, QualityGateError, SidError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Assign a unique Semantic ID to every catalog item.")
    parser.add_argument("--config", help="YAML config merged over the embedded defaults (e.g. conf/beauty.yaml)")
    parser.add_argument("--catalog-path", help="catalog location; overrides catalog.path")
    parser.add_argument("--catalog-format", help="recbole, parquet, jsonl or delta; overrides catalog.format")
    parser.add_argument("--mode", default="full", choices=MODES,
                        help="full: train codebooks and publish a new version; incremental: add new items "
                             "to the active version (default full)")
    parser.add_argument("--run-id", help="id of this run (letters, digits, _ . -); the same id makes a rerun "
                                         "idempotent and links the stages of one run; default: a new one")
    parser.add_argument("--stage", default="all", choices=("all", *STAGES),
                        help="run one stage of the run id (embed, train, resolve, publish) or all (default)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (YAML syntax), e.g. --set quantize.levels=4")
    return parser.parse_args(argv)


def overrides_from_args(args: argparse.Namespace) -> dict:
    import yaml

    from sid.errors import ConfigError

    overrides = {}
    if args.catalog_path:
        overrides["catalog.path"] = args.catalog_path
    if args.catalog_format:
        overrides["catalog.format"] = args.catalog_format
    for item in args.set:
        key, separator, value = item.partition("=")
        if not separator:
            raise ConfigError(f"--set {item!r} must be written SECTION.KEY=VALUE, e.g. --set run.seed=7")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    # Libraries log at WARNING; the pipeline's own stage and summary lines at INFO.
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, stream=sys.stderr, force=True)
    for name in ("sid", "pipelines", "build_sids"):
        logging.getLogger(name).setLevel(logging.INFO)
    log = logging.getLogger("build_sids")
    args = parse_args(sys.argv[1:] if argv is None else argv)

    from pipelines.build import check_run_id, new_run_id, run_build
    from pipelines.session import build_spark, init_ray, metastore_lock
    from sid.config import load_config

    spark = None
    try:
        config = load_config(args.config, overrides=overrides_from_args(args))
        stages = STAGES if args.stage == "all" else (args.stage,)
        if args.run_id is None and args.stage != "all":
            log.error("--stage %s needs --run-id, so that the later stages find this stage's output", args.stage)
            return 2
        run_id = check_run_id(args.run_id) if args.run_id else new_run_id()
        with metastore_lock(config.spark, holder=f"build_sids run_id={run_id} stage={args.stage}"):
            try:
                # Ray first: starting it after the Spark JVM resets py4j's idle connections.
                init_ray(config.ray)
                spark = build_spark(config.spark)
                run_build(spark, config, run_id=run_id, mode=args.mode, stages=stages)
            finally:
                # Stop Spark while the lock is held, so the next job finds Derby free.
                if spark is not None:
                    spark.stop()
                    spark = None
        return 0
    except QualityGateError as error:
        log.error("%s", error)
        return 3
    except BusyError as error:
        log.error("%s", error)
        return 4
    except SidError as error:
        log.error("%s", error)
        return 2
    finally:
        if spark is not None:
            spark.stop()
        _shutdown_ray()


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
