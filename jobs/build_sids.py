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
import sys

from pipelines.build import MODES, STAGES
from pipelines.session import exit_code, job_logger, job_session
from sid.errors import SidError


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
    log = job_logger("build_sids")
    args = parse_args(sys.argv[1:] if argv is None else argv)

    from pipelines.build import check_run_id, new_run_id, run_build
    from sid.config import load_config

    try:
        config = load_config(args.config, overrides=overrides_from_args(args))
        stages = STAGES if args.stage == "all" else (args.stage,)
        if args.run_id is None and args.stage != "all":
            log.error("--stage %s needs --run-id, so that the later stages find this stage's output", args.stage)
            return 2
        run_id = check_run_id(args.run_id) if args.run_id else new_run_id()
        with job_session(config, holder=f"build_sids run_id={run_id} stage={args.stage}", with_ray=True) as spark:
            run_build(spark, config, run_id=run_id, mode=args.mode, stages=stages)
        return 0
    except SidError as error:
        log.error("%s", error)
        return exit_code(error)
    finally:
        _shutdown_ray()


def _shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
