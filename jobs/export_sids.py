"""Export SIDs as tokens, offset ids and a vocabulary for generative recommenders.

Run from the repository root after a build:

    bash scripts/spark-submit.sh jobs/export_sids.py --config conf/beauty.yaml --output exports/beauty

Writes ``items/`` (Parquet or JSON Lines: item_id, codebook_version, sid, tokens, token_ids),
``vocab.txt`` (line n is the token with id n) and ``vocab.json`` (per level: letter, size,
offset). Exit codes: 0 on success, 2 for invalid configuration or input, 4 when another job
has locked the local warehouse, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.session import exit_code, job_logger, job_session
from sid.errors import SidError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Export SID tokens and vocabulary for generative models.")
    parser.add_argument("--config", help="YAML config of the build (for the warehouse, MLflow and table names)")
    parser.add_argument("--output", required=True, help="folder to write items/, vocab.txt and vocab.json into")
    parser.add_argument("--version", help="codebook version to export (default: the active one)")
    parser.add_argument("--format", default="parquet", choices=("parquet", "jsonl"), help="items file format")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value (YAML syntax)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    log = job_logger("export_sids")
    args = parse_args(sys.argv[1:] if argv is None else argv)

    from build_sids import overrides_from_args
    from pipelines.export import export_sids
    from sid.config import load_config

    try:
        args.catalog_path = args.catalog_format = None
        config = load_config(args.config, overrides=overrides_from_args(args))
        with job_session(config, holder="export_sids") as spark:
            result = export_sids(spark, config, args.output, version=args.version, output_format=args.format)
        log.info("exported codebook_version=%s items=%d vocabulary=%d tokens to %s", result.version, result.items,
                 sum(result.sizes), result.output)
        return 0
    except SidError as error:
        log.error("%s", error)
        return exit_code(error)


if __name__ == "__main__":
    sys.exit(main())
