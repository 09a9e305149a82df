#!/usr/bin/env bash
# Install everything, then give every item of the Amazon Beauty catalog a Semantic ID.
#   bash scripts/run_beauty.sh [CATALOG_DIR]
# CATALOG_DIR defaults to ../shared/data/amazon-beauty-2014 (see README, "Data").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CATALOG="${1:-$ROOT/../shared/data/amazon-beauty-2014}"
bash "$ROOT/scripts/install.sh"
cd "$ROOT"
exec bash scripts/spark-submit.sh jobs/build_sids.py --config conf/beauty.yaml --catalog-path "$CATALOG"
